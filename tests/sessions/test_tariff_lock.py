"""The tariff version a session locks at start is the one the pricing domain says is in
force (charger-level beats site-level, the latest effective_from per level, a later
assignment winning a tie), read in one statement: checked against
`app.pricing.service.tariff_for_session` over a layout of assignments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from app.pricing import service as pricing
from app.sessions import queries
from tests.factories import auth, charger, import_fleet, site, staff_token

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def _tariff(price: str) -> dict[str, object]:
    return {
        "name": f"at {price}",
        "currency": "EUR",
        "vat_percent": "19",
        "elements": [{"price_components": [{"type": "ENERGY", "price": price}]}],
    }


async def test_the_locked_version_is_the_one_in_force(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    admin = auth(staff_token(settings, roles=(Role.ADMIN,)))
    r = await import_fleet(
        client,
        admin["Authorization"][7:],
        [site("S-LOCK", chargers=[charger("CP-L1"), charger("CP-L2")])],
    )
    assert r.status_code == 200, r.text
    ids = {}
    for name, price in (("a", "0.30"), ("b", "0.40"), ("c", "0.50"), ("d", "0.60")):
        r = await client.post("/admin/v1/tariffs", json=_tariff(price), headers=admin)
        ids[name] = r.json()["tariff_id"]
    site_id = str(await db.fetchval("SELECT site_id FROM sites"))
    cp1 = str(await db.fetchval("SELECT charger_id FROM chargers WHERE charge_point_id = 'CP-L1'"))
    layout = [
        ("a", {"site_id": site_id}, T0),
        ("c", {"charger_id": cp1}, T0 + timedelta(hours=1)),
        ("b", {"site_id": site_id}, T0 + timedelta(hours=2)),
        ("d", {"site_id": site_id}, T0 + timedelta(hours=2)),  # the same instant, later: wins
        ("a", {"site_id": site_id}, T0 + timedelta(hours=4)),
    ]
    for name, where, at in layout:
        r = await client.post(
            "/admin/v1/tariff-assignments",
            json={"tariff_id": ids[name], **where, "effective_from": at.isoformat()},
            headers=admin,
        )
        assert r.status_code == 201, r.text
    # a new version of `a` after it was assigned: the current version is what locks
    r = await client.put(f"/admin/v1/tariffs/{ids['a']}", json=_tariff("0.35"), headers=admin)
    assert r.status_code == 200, r.text

    connectors = [r["connector_id"] for r in await db.fetch("SELECT connector_id FROM connectors")]
    seen = set()
    for minutes in range(-60, 6 * 60, 30):
        at = T0 + timedelta(minutes=minutes)
        for connector_id in connectors:
            mine = await queries.tariff_in_force(db, connector_id=connector_id, at=at)
            theirs = await pricing.tariff_for_session(db, str(connector_id), at)
            assert mine == theirs, (at, connector_id)
            if mine is not None:
                seen.add((mine.tariff_id, mine.version))
    # every rule was exercised: `a` at its current version, `c` on CP-L1 only, and `d`
    # beating `b` assigned for the same instant
    assert seen == {(ids["a"], 2), (ids["c"], 1), (ids["d"], 1)}
