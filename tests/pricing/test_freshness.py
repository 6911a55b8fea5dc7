"""A price change made through the admin API reaches nearby search in BOTH API worker
processes within 1 s (PostgreSQL NOTIFY on `vw_pricing` → each worker's PriceBook)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from app.core.auth import Role
from app.core.settings import Settings
from tests.factories import auth, bring_online, staff_token
from tests.servers import granian_app, seconds_until_everywhere

TARIFF = {
    "name": "Fresh",
    "currency": "EUR",
    "vat_percent": "19",
    "elements": [{"price_components": [{"type": "ENERGY", "price": "0.40", "step_size": 1}]}],
}


@pytest.fixture
async def server(db_url: str, redis_url: str, db: asyncpg.Connection) -> AsyncIterator[str]:
    site_id = await db.fetchval(
        "INSERT INTO sites (external_id, name, lat, lon, timezone) "
        "VALUES ('price-a', 'price-a', 52.52, 13.405, 'Europe/Berlin') RETURNING site_id"
    )
    charger_id = await db.fetchval(
        "INSERT INTO chargers (site_id, charge_point_id, ocpp_password_hash) "
        "VALUES ($1, 'PRICE-A', 'x') RETURNING charger_id",
        site_id,
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


async def _energy_price(c: httpx.AsyncClient) -> str | None:
    r = await c.get("/v1/chargers/nearby", params={"lat": 52.52, "lon": 13.405})
    items = r.json()["items"]
    if not items or items[0]["price"] is None:
        return None
    price: str = items[0]["price"]["energy_per_kwh"]
    return price


async def _time_until_everywhere(c: httpx.AsyncClient, expected: object) -> float:
    return await seconds_until_everywhere(lambda: _energy_price(c), expected)


@pytest.mark.timeout(90)
async def test_price_changes_reach_both_workers_within_a_second(
    server: str, db: asyncpg.Connection, settings: Settings
) -> None:
    headers = auth(staff_token(settings, roles=(Role.PRICING_ADMIN,)))
    site_id = await db.fetchval("SELECT site_id::text FROM sites WHERE external_id = 'price-a'")
    async with httpx.AsyncClient(
        base_url=server, timeout=2, limits=httpx.Limits(max_keepalive_connections=0)
    ) as c:
        assert await _time_until_everywhere(c, None) < 5  # both workers up, no tariff yet
        r = await c.post("/admin/v1/tariffs", json=TARIFF, headers=headers)
        assert r.status_code == 201, r.text
        tid = r.json()["tariff_id"]
        r = await c.post(
            "/admin/v1/tariff-assignments",
            json={"tariff_id": tid, "site_id": site_id, "effective_from": "2026-01-01T00:00:00Z"},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        took = await _time_until_everywhere(c, "0.40")
        print(f"assignment visible in both workers after {took:.3f} s")
        assert took <= 1.0, f"a new assignment took {took:.2f} s to reach every worker"

        cheaper = {
            **TARIFF,
            "elements": [{"price_components": [{"type": "ENERGY", "price": "0.33"}]}],
        }
        r = await c.put(f"/admin/v1/tariffs/{tid}", json=cheaper, headers=headers)
        assert r.status_code == 200, r.text
        took = await _time_until_everywhere(c, "0.33")
        print(f"new version visible in both workers after {took:.3f} s")
        assert took <= 1.0, f"a new tariff version took {took:.2f} s to reach every worker"
