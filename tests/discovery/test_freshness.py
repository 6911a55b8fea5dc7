"""Freshness across processes: a status or connectivity change written to PostgreSQL is
visible in search from both API worker processes within 1 s."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.core.embedded import free_port
from app.core.settings import ROOT
from tests.conftest import TEST_JWT_SECRET
from tests.factories import bring_online

SITES = [("fresh-a", 52.52, 13.405), ("fresh-b", 52.521, 13.406)]


@pytest.fixture
async def two_workers(db_url: str, redis_url: str, db: asyncpg.Connection) -> AsyncIterator[str]:
    for ext, lat, lon in SITES:
        site_id = await db.fetchval(
            "INSERT INTO sites (external_id, name, lat, lon, timezone) "
            "VALUES ($1, $1, $2, $3, 'Europe/Berlin') RETURNING site_id",
            ext,
            lat,
            lon,
        )
        charger_id = await db.fetchval(
            "INSERT INTO chargers (site_id, charge_point_id, ocpp_password_hash) "
            "VALUES ($1, $2, 'x') RETURNING charger_id",
            site_id,
            ext.upper(),
        )
        await db.execute(
            "INSERT INTO connectors (charger_id, site_id, connector_no, type, power_w) "
            "VALUES ($1, $2, 1, 'CCS2', 150000)",
            charger_id,
            site_id,
        )
    await bring_online(db)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "APP_DEMO": "0",
        "JWT_SECRET": TEST_JWT_SECRET,
        "ACCESS_LOG": "0",
        "LOG_LEVEL": "WARNING",
        "DISCOVERY_RATE_PER_S": "0",
        "PYTHONPATH": str(ROOT),
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "granian"),
        "--interface",
        "asgi",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
        "app.main:create_app",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as c:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if (await c.get("/health/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        await proc.wait()


async def _statuses(c: httpx.AsyncClient) -> list[tuple[str, str]]:
    r = await c.get("/v1/chargers/nearby", params={"lat": 52.52, "lon": 13.405})
    return [(s["name"], s["connectors"][0]["status"]) for s in r.json()["items"]]


async def _time_until_everywhere(c: httpx.AsyncClient, expected: list[tuple[str, str]]) -> float:
    """Seconds from now until the first of 20 consecutive requests (spread over both
    workers) that all show `expected`."""
    start = time.monotonic()
    streak, streak_began = 0, start
    while time.monotonic() - start < 5:
        sent = time.monotonic()
        if await _statuses(c) == expected:
            if streak == 0:
                streak_began = sent
            streak += 1
        else:
            streak = 0
        if streak >= 20:
            return streak_began - start
    return float("inf")


@pytest.mark.timeout(90)
async def test_changes_visible_in_both_workers_within_a_second(
    two_workers: str, db: asyncpg.Connection
) -> None:
    # fresh connections per request so the load spreads across the two processes
    async with httpx.AsyncClient(
        base_url=two_workers, timeout=2, limits=httpx.Limits(max_keepalive_connections=0)
    ) as c:
        assert (
            await _time_until_everywhere(c, [("fresh-a", "AVAILABLE"), ("fresh-b", "AVAILABLE")])
            < 5
        )
        await db.execute(
            "UPDATE connectors SET status = 'OCCUPIED' WHERE connector_no = 1 "
            "AND site_id = (SELECT site_id FROM sites WHERE external_id = 'fresh-a')"
        )
        took = await _time_until_everywhere(c, [("fresh-a", "OCCUPIED"), ("fresh-b", "AVAILABLE")])
        assert took <= 1.0, f"status change took {took:.2f} s to reach every worker"
        await db.execute(
            "UPDATE charger_connectivity SET state = 'offline' WHERE charger_id = "
            "(SELECT charger_id FROM chargers WHERE charge_point_id = 'FRESH-B')"
        )
        took = await _time_until_everywhere(c, [("fresh-a", "OCCUPIED")])
        assert took <= 1.0, f"connectivity change took {took:.2f} s to reach every worker"
