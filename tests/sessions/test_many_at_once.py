"""Many drivers starting at chargers at the same moment (holds placed while each charger
waits) on a small connection pool: every start gets its answer (no connection is held
while a hold is placed, so the pool cannot run dry)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.chargers import service as chargers
from app.chargers.commands import CommandClient
from app.chargers.service import ChargerIdentity
from app.core.auth import Role
from app.core.db import create_pool
from app.core.settings import Settings
from app.payments.stripe_client import Gateway
from app.sessions import service as sessions
from tests.factories import auth, charger, import_fleet, site, staff_token
from tests.payments.fixtures import driver_with_card
from tests.sessions.conftest import TARIFF


async def test_starts_at_many_chargers_at_once_on_a_small_pool(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings, gateway: Gateway
) -> None:
    token = staff_token(settings, roles=(Role.ADMIN,))
    chargers_ = [charger(f"CP-M{n}") for n in range(6)]
    r = await import_fleet(client, token, [site("S-MANY", chargers=chargers_)])
    assert r.status_code == 200, r.text
    r = await client.post("/admin/v1/tariffs", json=TARIFF, headers=auth(token))
    site_id = await db.fetchval("SELECT site_id::text FROM sites")
    r = await client.post(
        "/admin/v1/tariff-assignments",
        json={
            "tariff_id": r.json()["tariff_id"],
            "site_id": site_id,
            "effective_from": "2020-01-01T00:00:00Z",
        },
        headers=auth(token),
    )
    assert r.status_code == 201, r.text
    connectors = await db.fetch(
        "SELECT c.charger_id, c.charge_point_id, k.connector_no FROM connectors k "
        "JOIN chargers c USING (charger_id) ORDER BY 2, 3"
    )
    drivers = [
        await driver_with_card(client, db, settings, phone=f"+49151666{n:05d}")
        for n in range(len(connectors))
    ]
    tags = [
        await db.fetchval("SELECT id_tag FROM drivers WHERE driver_id = $1::uuid", d["driver_id"])
        for d in drivers
    ]
    small = msgspec.structs.replace(settings, db_pool_min=1, db_pool_max=3)
    pool = await create_pool(small)
    commands = CommandClient(settings.redis_url, settings.redis_namespace)
    sessions.register(pool, sessions.Runtime(settings=small, gateway=gateway, commands=commands))
    start = datetime.now(UTC) - timedelta(minutes=1)
    try:
        async with asyncio.timeout(40):
            answers = await asyncio.gather(
                *(
                    chargers.start_transaction(
                        pool,
                        ChargerIdentity(k["charger_id"], k["charge_point_id"], None),
                        connector_no=k["connector_no"],
                        id_tag=tag,
                        meter_start=0,
                        started_at=start,
                        reservation_id=None,
                    )
                    for k, tag in zip(connectors, tags, strict=True)
                )
            )
    finally:
        sessions.unregister(pool)
        await commands.close()
        await pool.close()
    assert [status for _, status in answers] == ["Accepted"] * len(connectors)
    assert len({tx for tx, _ in answers}) == len(connectors)
