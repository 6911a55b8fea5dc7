"""`/ocpp/{charge_point_id}`: the chargers' OCPP 1.6J WebSocket (API.md, Chargers).

HTTP Basic auth is checked before the upgrade is accepted: an unknown id or a wrong
password gets a 401 instead of a WebSocket (or a close before accept where the server
cannot send a denial response).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import signal
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any, Final

from litestar import Litestar, WebSocket, websocket
from litestar.datastructures import State
from litestar.params import FromPath
from redis.exceptions import RedisError

from app.chargers import service
from app.chargers.central import (
    CentralSystemCharger,
    CommandRouter,
    OcppHub,
    SocketAdapter,
    SocketClosed,
)
from app.core.clientaddr import client_address
from app.core.settings import Settings

SUBPROTOCOL: Final = "ocpp1.6"
log = logging.getLogger("app.chargers")


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    settings: Settings = app.state.settings
    hub = OcppHub(app.state.pool, grace_s=settings.ocpp_offline_grace_s)
    app.state.ocpp = hub
    # Commands ride on Redis, and on PostgreSQL NOTIFY while Redis cannot carry them.
    router = CommandRouter(
        hub,
        settings.redis_url,
        settings.redis_namespace,
        pool=app.state.pool,
        database_url=settings.database_url,
    )
    try:
        await router.start()
    except (OSError, RedisError) as exc:  # PostgreSQL carries them; resubscribed later
        log.warning("OCPP command routing over Redis unavailable: %r", exc)
    app.state.ocpp_commands = router
    # `app/run.py` drains the sockets with SIGUSR1 before it stops the server (see drain).
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread
        loop.add_signal_handler(signal.SIGUSR1, hub.drain)
    try:
        yield
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGUSR1)
        await hub.close()
        await router.close()


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an HTTP Basic `Authorization` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


async def _refuse(socket: WebSocket[Any, Any, State], status: int, text: str) -> None:
    """Refuse the upgrade: an HTTP response where the server supports it, else a close
    before accept (which servers turn into a 403)."""
    with contextlib.suppress(Exception):
        await socket.receive()  # websocket.connect
    extensions = socket.scope.get("extensions") or {}
    try:
        if "websocket.http.response" in extensions:
            headers = [(b"content-type", b"text/plain; charset=utf-8")]
            if status == 401:
                headers.append((b"www-authenticate", b'Basic realm="ocpp"'))
            await socket.send(
                {"type": "websocket.http.response.start", "status": status, "headers": headers}
            )
            await socket.send(
                {"type": "websocket.http.response.body", "body": text.encode(), "more_body": False}
            )
        else:
            await socket.close(code=1008, reason=text)
    except Exception as exc:  # the client went away meanwhile
        log.debug("refusing an OCPP upgrade failed: %r", exc)


@websocket(
    "/ocpp/{charge_point_id:str}",
    name="ocpp",
    summary="OCPP 1.6J WebSocket of a charger (subprotocol ocpp1.6, HTTP Basic auth)",
    tags=["chargers"],
)
async def ocpp_socket(
    socket: WebSocket[Any, Any, State], state: State, charge_point_id: FromPath[str]
) -> None:
    """Authenticate, accept with `ocpp1.6`, then serve the charger until it goes away."""
    hub: OcppHub = state.ocpp
    settings: Settings = state.settings
    if hub.draining:  # this process is stopping: the charger comes back to another one
        await _refuse(socket, 503, "server shutting down")
        return
    address = client_address(socket)
    if hub.auth_throttle.blocked_for(charge_point_id, address) > 0:
        await _refuse(socket, 429, "too many failed authentications")
        return
    credentials = basic_credentials(socket.headers.get("authorization"))
    charger = None
    if credentials is not None and credentials[0] == charge_point_id:
        charger = await service.authenticate(state.pool, charge_point_id, credentials[1])
    if charger is None:
        log.warning("OCPP authentication failed for %r from %s", charge_point_id, address)
        hub.auth_throttle.failed(charge_point_id, address)
        await _refuse(socket, 401, "unauthorized")
        return
    offered = socket.scope.get("subprotocols") or []
    if SUBPROTOCOL not in offered:
        await _refuse(socket, 400, "subprotocol ocpp1.6 required")
        return
    await socket.accept(subprotocols=SUBPROTOCOL)
    adapter = SocketAdapter(socket)
    cp = CentralSystemCharger(
        charger,
        adapter,
        pool=state.pool,
        writer=hub.writer,
        heartbeat_interval_s=settings.ocpp_heartbeat_interval_s,
        max_frame_bytes=settings.ocpp_max_frame_bytes,
    )
    await hub.attach(cp)
    try:
        await cp.start()
    except SocketClosed:
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not hub.draining or task is None:
            raise
        task.uncancel()  # OcppHub.drain ended us: return, and the server closes the socket
        return
    finally:
        await hub.detach(cp)
    await adapter.close()


ROUTES: list[Any] = [ocpp_socket]
