"""`GET /admin/v1/tariff-assignments`: which sites and chargers a tariff applies to, and
whether each assignment is scheduled, in force or superseded now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from tests.factories import auth, import_fleet, site, staff_token

TARIFF: dict[str, Any] = {
    "name": "Flat",
    "currency": "EUR",
    "vat_percent": "19",
    "elements": [{"price_components": [{"type": "ENERGY", "price": "0.39"}]}],
}


async def test_list_by_tariff_site_and_charger(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    admin = auth(staff_token(settings, roles=(Role.PRICING_ADMIN,)))
    r = await import_fleet(
        client, staff_token(settings, roles=(Role.ADMIN,)), [site("x", name="Xanadu")]
    )
    assert r.status_code == 200, r.text
    site_id = str(await db.fetchval("SELECT site_id FROM sites"))
    charger_id = str(await db.fetchval("SELECT charger_id FROM chargers"))
    t1 = (await client.post("/admin/v1/tariffs", json=TARIFF, headers=admin)).json()["tariff_id"]
    t2 = (await client.post("/admin/v1/tariffs", json=TARIFF, headers=admin)).json()["tariff_id"]
    now = datetime.now(UTC)
    for tariff, target, at in [
        (t1, {"site_id": site_id}, now - timedelta(days=2)),
        (t2, {"site_id": site_id}, now - timedelta(days=1)),
        (t1, {"site_id": site_id}, now + timedelta(days=1)),
        (t2, {"charger_id": charger_id}, now - timedelta(hours=1)),
    ]:
        r = await client.post(
            "/admin/v1/tariff-assignments",
            json={"tariff_id": tariff, "effective_from": at.isoformat(), **target},
            headers=admin,
        )
        assert r.status_code == 201, r.text

    viewer = auth(staff_token(settings, roles=(Role.VIEWER,)))
    r = await client.get("/admin/v1/tariff-assignments", params={"tariff_id": t1}, headers=viewer)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(i["state"], i["site_name"]) for i in items] == [
        ("scheduled", "Xanadu"),
        ("superseded", "Xanadu"),
    ]
    assert items[0]["timezone"] == "Europe/Berlin"

    r = await client.get(
        "/admin/v1/tariff-assignments", params={"site_id": site_id}, headers=viewer
    )
    assert [(i["tariff_id"], i["state"]) for i in r.json()["items"]] == [
        (t1, "scheduled"),
        (t2, "in_force"),
        (t1, "superseded"),
    ]
    r = await client.get(
        "/admin/v1/tariff-assignments", params={"charger_id": charger_id}, headers=viewer
    )
    (only,) = r.json()["items"]
    assert (only["charge_point_id"], only["state"], only["site_name"]) == (
        "CP-x",
        "in_force",
        "Xanadu",
    )

    page = await client.get("/admin/v1/tariff-assignments", params={"limit": 3}, headers=viewer)
    assert len(page.json()["items"]) == 3
    rest = await client.get(
        "/admin/v1/tariff-assignments",
        params={"limit": 3, "cursor": page.json()["next_cursor"]},
        headers=viewer,
    )
    assert len(rest.json()["items"]) == 1
    assert rest.json()["next_cursor"] is None


async def test_malformed_filters_are_422(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    viewer = auth(staff_token(settings, roles=(Role.VIEWER,)))
    for name in ("tariff_id", "site_id", "charger_id"):
        r = await client.get("/admin/v1/tariff-assignments", params={name: "nope"}, headers=viewer)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == name
    r = await client.get(
        "/admin/v1/tariff-assignments",
        params={"tariff_id": "00000000-0000-0000-0000-000000000000"},
        headers=viewer,
    )
    assert r.json() == {"items": [], "next_cursor": None}
