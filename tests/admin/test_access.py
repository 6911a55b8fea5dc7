"""Function-level access: every admin route, for each role: 401 without a token, 403
without the permission, 2xx/4xx-but-allowed with it. A new admin route without an entry
here fails `test_every_admin_route_is_covered`."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from tests.factories import auth, staff_token

ALL = set(Role)
READ = ALL
FLEET_WRITE = {Role.ADMIN, Role.OPERATOR}
PRICING_WRITE = {Role.ADMIN, Role.PRICING_ADMIN}
NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"

# (method, path as requested, path template, roles allowed, json body)
ROUTES: list[tuple[str, str, str, set[Role], Any]] = [
    ("GET", "/admin/v1/audit-log", "/admin/v1/audit-log", READ, None),
    ("GET", "/admin/v1/fleet/sites", "/admin/v1/fleet/sites", READ, None),
    ("GET", "/admin/v1/fleet/chargers", "/admin/v1/fleet/chargers", READ, None),
    ("GET", "/admin/v1/alerts", "/admin/v1/alerts", READ, None),
    ("POST", "/admin/v1/fleet/import", "/admin/v1/fleet/import", FLEET_WRITE, {"sites": []}),
    (
        "POST",
        f"/admin/v1/fleet/chargers/{NO_SUCH_ID}/release",
        "/admin/v1/fleet/chargers/{charger_id:str}/release",
        FLEET_WRITE,
        None,
    ),
]
TARIFF = {
    "name": "Access check",
    "currency": "EUR",
    "vat_percent": "19",
    "elements": [{"price_components": [{"type": "ENERGY", "price": "0.39", "step_size": 1}]}],
}
ROUTES += [
    ("GET", "/admin/v1/tariffs", "/admin/v1/tariffs", READ, None),
    ("POST", "/admin/v1/tariffs", "/admin/v1/tariffs", PRICING_WRITE, TARIFF),
    (
        "GET",
        f"/admin/v1/tariffs/{NO_SUCH_ID}",
        "/admin/v1/tariffs/{tariff_id:str}",
        READ,
        None,
    ),
    (
        "PUT",
        f"/admin/v1/tariffs/{NO_SUCH_ID}",
        "/admin/v1/tariffs/{tariff_id:str}",
        PRICING_WRITE,
        TARIFF,
    ),
    (
        "GET",
        f"/admin/v1/tariffs/{NO_SUCH_ID}/timeline",
        "/admin/v1/tariffs/{tariff_id:str}/timeline",
        READ,
        None,
    ),
    (
        "POST",
        "/admin/v1/tariff-assignments",
        "/admin/v1/tariff-assignments",
        PRICING_WRITE,
        {"tariff_id": NO_SUCH_ID, "site_id": NO_SUCH_ID, "effective_from": "2026-01-01T00:00:00Z"},
    ),
]
ROUTES += [
    ("GET", "/admin/v1/analytics/usage", "/admin/v1/analytics/usage", READ, None),
    ("GET", "/admin/v1/tariff-assignments", "/admin/v1/tariff-assignments", READ, None),
    (
        "POST",
        "/admin/v1/tariff-previews",
        "/admin/v1/tariff-previews",
        READ,
        {
            "tariff": TARIFF,
            "timezone": "UTC",
            "from": "2026-01-01T00:00:00Z",
            "to": "2026-01-02T00:00:00Z",
        },
    ),
]
ROUTES += [
    (
        "POST",
        "/admin/v1/alerts/999999/acknowledge",
        "/admin/v1/alerts/{alert_id:int}/acknowledge",
        FLEET_WRITE,
        None,
    ),
]
# Sessions with their payment state: operators, admins and viewers (API.md), not pricing.
SESSION_READ = {Role.ADMIN, Role.OPERATOR, Role.VIEWER}
ROUTES += [("GET", "/admin/v1/sessions", "/admin/v1/sessions", SESSION_READ, None)]
# Refunds: admins and operators (API.md "Admin: sessions and refunds").
ROUTES += [
    (
        "POST",
        f"/admin/v1/sessions/{NO_SUCH_ID}/refund",
        "/admin/v1/sessions/{session_id:str}/refund",
        FLEET_WRITE,
        {"amount_minor": 100, "reason": "access check"},
    ),
]
PUBLIC = {("POST", "/admin/v1/auth/login")}


def test_every_admin_route_is_covered(app: Litestar) -> None:
    covered = {(m, t) for m, _, t, _, _ in ROUTES} | PUBLIC
    for route in app.routes:
        if not route.path.startswith("/admin/v1"):
            continue
        for method in getattr(route, "methods", set()) - {"OPTIONS", "HEAD"}:
            assert (method, route.path) in covered, f"no access test for {method} {route.path}"


@pytest.mark.parametrize(("method", "path", "template", "allowed", "body"), ROUTES)
async def test_route_access_per_role(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    method: str,
    path: str,
    template: str,
    allowed: set[Role],
    body: Any,
) -> None:
    r = await client.request(method, path, json=body)
    assert r.status_code == 401, f"{method} {path} without a token"
    for role in Role:
        token = staff_token(settings, roles=(role,))
        r = await client.request(method, path, json=body, headers=auth(token))
        if role in allowed:
            # A path naming an entity that does not exist gets past the guard to a 404.
            # So does a body naming one (a tariff assignment to a tariff that is not there).
            names_missing = path != template or NO_SUCH_ID in str(body)
            ok = r.status_code < 300 or (names_missing and r.status_code == 404)
            assert ok, f"{role} on {method} {path}: {r.status_code} {r.text}"
        else:
            assert r.status_code == 403, f"{role} on {method} {path}: {r.status_code}"
            assert r.json()["code"] == "forbidden"
