"""The platform sweep against the stand-in: SIM status changes are applied; the platform
down keeps every state and only marks old signals stale."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.connectivity.client import ClientConfig, ControlCenterClient
from app.connectivity.tasks import sweep_connectivity
from app.core.auth import Role
from app.core.db import create_pool
from app.core.settings import Settings
from tests.factories import bring_online, charger, import_fleet, site, staff_token
from tests.standins.control_center import ControlCenterStandIn, make_iccid

ICCID = make_iccid(7)


@pytest.fixture
def standin() -> ControlCenterStandIn:
    cc = ControlCenterStandIn()
    cc.add_device(ICCID)
    cc.add_devices(5)
    return cc


@pytest.fixture
async def ctx(settings: Settings, standin: ControlCenterStandIn) -> AsyncIterator[dict[str, Any]]:
    pool = await create_pool(settings)
    client = ControlCenterClient(
        "http://cc.test",
        standin.username,
        standin.api_key,
        config=ClientConfig(requests_per_s=0, max_tries=1),
        transport=httpx.ASGITransport(app=standin),
    )
    yield {"settings": settings, "pool": pool, "control_center_client": client}
    await client.aclose()
    await pool.close()


async def onboard(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    token = staff_token(settings, roles=(Role.OPERATOR,))
    r = await import_fleet(client, token, [site("w", chargers=[charger("W1", iccid=ICCID)])])
    assert r.status_code == 200, r.text
    await bring_online(db)


async def state(db: asyncpg.Connection) -> asyncpg.Record:
    row = await db.fetchrow("SELECT state, reason, stale, sim_status FROM charger_connectivity")
    assert row is not None
    return row


async def test_sweep_applies_sim_status(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    ctx: dict[str, Any],
    standin: ControlCenterStandIn,
) -> None:
    await onboard(client, settings, db)
    result = await sweep_connectivity(ctx)
    assert result["ok"] is True
    assert result["fleet"] == 1
    row = await state(db)
    assert (row["state"], row["sim_status"], row["stale"]) == ("online", "ACTIVATED", False)

    standin.set_status(ICCID, "DEACTIVATED")
    assert (await sweep_connectivity(ctx))["changed"] == 1
    row = await state(db)
    assert (row["state"], row["reason"]) == ("offline", "sim_not_activated")
    assert await db.fetchval("SELECT source FROM connectivity_changes") == "sweep"

    standin.set_status(ICCID, "ACTIVATED")
    await sweep_connectivity(ctx)
    assert (await state(db))["state"] == "online"


async def test_platform_down_keeps_state_and_marks_stale_after_bound(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    db: asyncpg.Connection,
    ctx: dict[str, Any],
    standin: ControlCenterStandIn,
) -> None:
    await onboard(client, settings, db)
    assert (await sweep_connectivity(ctx))["ok"] is True
    standin.down = True
    result = await sweep_connectivity(ctx)
    assert result["ok"] is False
    row = await state(db)
    assert (row["state"], row["stale"]) == ("online", False)  # recent signals: not stale yet

    old = datetime.now(UTC) - timedelta(seconds=settings.control_center_stale_after_s + 60)
    await db.execute("UPDATE charger_connectivity SET platform_last_ok_at = $1", old)
    result = await sweep_connectivity(ctx)
    assert result == {"ok": False, "error": result["error"], "marked_stale": 1}
    row = await state(db)
    assert (row["state"], row["reason"], row["stale"]) == ("online", "ok", True)

    standin.down = False
    assert (await sweep_connectivity(ctx))["ok"] is True
    assert (await state(db))["stale"] is False
