"""Every route that takes the `driver` dependency is guarded by `requires_driver`.

Litestar resolves a handler's dependencies concurrently and, when one raises after `db`
has opened its transaction, never cleans `db` up: the connection stays checked out and
the pool hangs at shutdown. Refusing in a guard, before any dependency, avoids that."""

from __future__ import annotations

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from app.core.auth import requires_driver


def test_every_driver_route_is_guarded(app: Litestar) -> None:
    checked = 0
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            if "driver" not in handler.parsed_fn_signature.parameters:
                continue
            checked += 1
            assert requires_driver in handler.resolve_guards(), f"{route.path} lacks the guard"
    assert checked >= 3  # /v1/me GET and PATCH, /v1/auth/logout at least
