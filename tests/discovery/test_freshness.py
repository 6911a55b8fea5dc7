"""Freshness across processes: a status or connectivity change written to PostgreSQL is
visible in search from both API worker processes within 1 s."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.factories import bring_online
from tests.servers import granian_app, seconds_until_everywhere

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
    async with granian_app(db_url, redis_url) as base:
        yield base


async def _statuses(c: httpx.AsyncClient) -> list[tuple[str, str]]:
    r = await c.get("/v1/chargers/nearby", params={"lat": 52.52, "lon": 13.405})
    return [(s["name"], s["connectors"][0]["status"]) for s in r.json()["items"]]


async def _time_until_everywhere(c: httpx.AsyncClient, expected: object) -> float:
    return await seconds_until_everywhere(lambda: _statuses(c), expected)


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
