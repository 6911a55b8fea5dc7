"""The "done when" scenario through HTTP: an admin publishes a peak/off-peak tariff and
assigns it to a site; a driver sees the right price and `valid_until` in nearby search and
site detail, a quote split exactly at the band edge, and the cheapest start. Amounts are
checked by hand arithmetic. "Now" is the PriceBook's clock, fixed here."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.clock import FixedClock
from app.core.settings import Settings
from app.discovery.schemas import NearbyPage, SiteDetail
from tests.factories import (
    auth,
    bring_online,
    charger,
    eventually,
    import_fleet,
    make_driver,
    site,
    staff_token,
)

Client = AsyncTestClient[Litestar]
# Wednesday 25 Nov 2026, 16:30 in Berlin (UTC+1): inside the 16:00–20:00 local peak below,
# which ends at 19:00Z.
NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)
PEAK: dict[str, Any] = {
    "name": "Berlin day/peak",
    "currency": "EUR",
    "vat_percent": "19",
    "elements": [
        {
            "price_components": [{"type": "ENERGY", "price": "0.60", "step_size": 1}],
            "restrictions": {"start_time": "16:00", "end_time": "20:00"},
        },
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.40", "step_size": 1},
                {"type": "PARKING_TIME", "price": "6.00", "step_size": 60},
            ]
        },
    ],
}
FLAT_30: dict[str, Any] = {
    "name": "Depot flat",
    "currency": "EUR",
    "vat_percent": "19",
    "elements": [{"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}]}],
}


class World(msgspec.Struct):
    site_id: str
    other_site_id: str
    ccs150: str  # connector on charger PX-A (site-level tariff)
    type2: str  # 22 kW, charger PX-A
    ccs50: str  # connector on charger PX-B (charger-level tariff)
    charger_b: str
    tariff_id: str


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return auth(staff_token(settings, roles=(Role.PRICING_ADMIN,)))


async def publish(client: Client, admin: dict[str, str], body: dict[str, Any]) -> str:
    r = await client.post("/admin/v1/tariffs", json=body, headers=admin)
    assert r.status_code == 201, r.text
    tid: str = r.json()["tariff_id"]
    return tid


async def assign(
    client: Client, admin: dict[str, str], tariff_id: str, at: datetime, **target: str
) -> None:
    body = {"tariff_id": tariff_id, "effective_from": at.isoformat(), **target}
    r = await client.post("/admin/v1/tariff-assignments", json=body, headers=admin)
    assert r.status_code == 201, r.text


@pytest.fixture
async def world(
    client: Client, app: Litestar, admin: dict[str, str], settings: Settings, db: asyncpg.Connection
) -> World:
    app.state.prices.clock = FixedClock(NOW)
    ops = staff_token(settings, roles=(Role.OPERATOR,))
    sites = [
        site(
            "px-1",
            chargers=[
                charger("PX-A"),  # CCS2 150 kW + TYPE2 22 kW
                charger("PX-B", connectors=[{"connector_no": 1, "type": "CCS2", "power_kw": 50}]),
            ],
        ),
        site("px-2", lat=52.53, chargers=[charger("PX-C")]),
    ]
    r = await import_fleet(client, ops, sites)
    assert r.status_code == 200, r.text
    assert r.json()["failed"] == [], r.text
    await bring_online(db)
    rows = await db.fetch(
        """SELECT s.external_id, c.charge_point_id, k.type, k.power_w, k.connector_id::text AS id,
                  s.site_id::text AS site_id, c.charger_id::text AS charger_id
           FROM connectors k JOIN chargers c USING (charger_id) JOIN sites s ON s.site_id = k.site_id"""
    )
    by = {(r["charge_point_id"], r["type"]): r for r in rows}
    tid = await publish(client, admin, PEAK)
    site_id = by[("PX-A", "CCS2")]["site_id"]
    await assign(client, admin, tid, NOW - timedelta(days=1), site_id=site_id)
    return World(
        site_id=site_id,
        other_site_id=by[("PX-C", "CCS2")]["site_id"],
        ccs150=by[("PX-A", "CCS2")]["id"],
        type2=by[("PX-A", "TYPE2")]["id"],
        ccs50=by[("PX-B", "CCS2")]["id"],
        charger_b=by[("PX-B", "CCS2")]["charger_id"],
        tariff_id=tid,
    )


async def nearby_prices(client: Client) -> dict[str, Any]:
    r = await client.get("/v1/chargers/nearby", params={"lat": 52.52, "lon": 13.405})
    assert r.status_code == 200, r.text
    msgspec.json.decode(r.content, type=NearbyPage)  # the contract, strictly
    return {s["site_id"]: s["price"] for s in r.json()["items"]}


async def prices_until(client: Client, predicate: Any, within_s: float = 2.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        prices = await nearby_prices(client)
        return prices if predicate(prices) else None

    got: dict[str, Any] | None = await eventually(check, within_s=within_s)
    assert got is not None, "nearby search never showed the expected prices"
    return got


def peak_price(tid: str, valid_until: str) -> dict[str, Any]:
    return {
        "tariff_id": tid,
        "currency": "EUR",
        "energy_per_kwh": "0.60",
        "time_per_hour": None,
        "flat": None,
        "idle_per_hour": "6.00",
        "vat_percent": "19",
        "valid_until": valid_until,
    }


async def test_price_now_and_valid_until_in_search_and_site_detail(
    client: Client, world: World
) -> None:
    prices = await prices_until(client, lambda p: p.get(world.site_id) is not None)
    # 16:30 Berlin is in the 16:00–20:00 peak, which ends at 20:00 local = 19:00Z.
    assert prices[world.site_id] == peak_price(world.tariff_id, "2026-11-25T19:00:00Z")
    assert prices[world.other_site_id] is None  # no tariff assigned there

    r = await client.get(f"/v1/sites/{world.site_id}")
    assert r.status_code == 200, r.text
    msgspec.json.decode(r.content, type=SiteDetail)
    detail = r.json()
    assert detail["price"] == prices[world.site_id]
    timeline = [(b["from"], b["to"], b["energy_per_kwh"]) for b in detail["price_timeline"]]
    assert timeline == [
        ("2026-11-25T15:30:00Z", "2026-11-25T19:00:00Z", "0.60"),
        ("2026-11-25T19:00:00Z", "2026-11-26T15:00:00Z", "0.40"),
        ("2026-11-26T15:00:00Z", "2026-11-26T15:30:00Z", "0.60"),
    ]
    r = await client.get(f"/v1/sites/{world.other_site_id}")
    assert r.json()["price"] is None
    assert r.json()["price_timeline"] == []


async def test_quote_splits_exactly_at_the_band_edge(client: Client, world: World) -> None:
    # 75 kWh at 150 kW take 30 min: 18:45Z–19:15Z, half in the peak, half after it.
    r = await client.get(
        f"/v1/sites/{world.site_id}/quote",
        params={
            "connector_id": world.ccs150,
            "start_at": "2026-11-25T19:45:00+01:00",
            "energy_kwh": 75,
        },
    )
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["currency"] == "EUR"
    assert q["lines"] == [
        {
            "component": "ENERGY",
            "band_from": "2026-11-25T18:45:00Z",
            "band_to": "2026-11-25T19:00:00Z",
            "quantity": 37.5,
            "unit": "kWh",
            "unit_price": "0.60",
            "amount_minor": 2250,  # 37.5 × 0.60 = 22.50
        },
        {
            "component": "ENERGY",
            "band_from": "2026-11-25T19:00:00Z",
            "band_to": "2026-11-25T19:15:00Z",
            "quantity": 37.5,
            "unit": "kWh",
            "unit_price": "0.40",
            "amount_minor": 1500,  # 37.5 × 0.40 = 15.00
        },
    ]
    assert q["vat_minor"] == 713  # 3750 × 19 % = 712.5 → half-up
    assert q["total_minor"] == 4463
    assert q["tariff_id"] == world.tariff_id
    assert q["end_at"] == "2026-11-25T19:15:00Z"

    # By duration on the 22 kW connector, from now (in the peak): 11 kWh × 0.60.
    r = await client.get(
        f"/v1/sites/{world.site_id}/quote",
        params={"connector_id": world.type2, "duration_min": 30},
    )
    assert r.status_code == 200, r.text
    q = r.json()
    assert [(x["quantity"], x["amount_minor"]) for x in q["lines"]] == [(11.0, 660)]
    assert (q["vat_minor"], q["total_minor"]) == (125, 785)  # 125.4 → 125


async def test_cheapest_start_and_saving(client: Client, world: World) -> None:
    r = await client.get(
        f"/v1/sites/{world.site_id}/cheapest-start",
        params={"connector_id": world.ccs150, "energy_kwh": 75},
    )
    assert r.status_code == 200, r.text
    best = r.json()
    # Now: 75 × 0.60 = 45.00 + 19 % = 53.55. From 19:00Z: 75 × 0.40 = 30.00 + 19 % = 35.70.
    assert best["start_at"] == "2026-11-25T19:00:00Z"
    assert best["total_minor"] == 3570
    assert best["now_total_minor"] == 5355
    assert best["saving_minor_vs_now"] == 1785

    # Within 2 h nothing beats the peak end (19:00Z is 3.5 h away): start now, save 0.
    r = await client.get(
        f"/v1/sites/{world.site_id}/cheapest-start",
        params={"connector_id": world.ccs150, "energy_kwh": 75, "within_h": 2},
    )
    assert r.json()["start_at"] == "2026-11-25T15:30:00Z"
    assert r.json()["saving_minor_vs_now"] == 0


async def test_signed_in_driver_vehicle_sets_energy_and_caps_power(
    client: Client, world: World, db: asyncpg.Connection, settings: Settings
) -> None:
    driver = await make_driver(db, settings)
    await db.execute(
        "UPDATE drivers SET vehicle_battery_wh = 60000, vehicle_max_ac_w = 11000, "
        "vehicle_max_dc_w = 50000 WHERE driver_id = $1::uuid",
        driver["driver_id"],
    )
    headers = auth(driver["access_token"])
    r = await client.get(
        f"/v1/sites/{world.site_id}/cheapest-start",
        params={"connector_id": world.ccs150},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    best = r.json()
    # 20 → 80 % of 60 kWh = 36 kWh at min(150, 50) kW.
    assert (best["energy_kwh"], best["power_kw"]) == (36.0, 50.0)
    # Now: 36 × 0.60 = 21.60 + 4.104 VAT → 2570; later: 36 × 0.40 = 14.40 + 2.736 → 1714.
    assert (best["now_total_minor"], best["total_minor"]) == (2570, 1714)
    assert best["saving_minor_vs_now"] == 856

    # AC connector: capped at the car's 11 kW, so 11 kWh take an hour.
    r = await client.get(
        f"/v1/sites/{world.site_id}/quote",
        params={"connector_id": world.type2, "energy_kwh": 11, "start_at": "2026-11-25T16:00:00Z"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["power_kw"] == 11.0
    assert r.json()["end_at"] == "2026-11-25T17:00:00Z"

    # A quote the car would need more than two days for is refused, not computed.
    r = await client.get(
        f"/v1/sites/{world.site_id}/quote",
        params={"connector_id": world.type2, "energy_kwh": 600},
        headers=headers,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "energy_kwh"

    # Without a token the energy must be given; a bad token is refused.
    r = await client.get(
        f"/v1/sites/{world.site_id}/cheapest-start", params={"connector_id": world.ccs150}
    )
    assert r.status_code == 422
    r = await client.get(
        f"/v1/sites/{world.site_id}/cheapest-start",
        params={"connector_id": world.ccs150},
        headers=auth("not-a-token"),
    )
    assert r.status_code == 401


async def test_charger_level_tariff_and_future_assignments(
    client: Client, world: World, admin: dict[str, str]
) -> None:
    flat = await publish(client, admin, FLAT_30)
    await assign(client, admin, flat, NOW - timedelta(hours=1), charger_id=world.charger_b)
    # The charger-level tariff prices that charger's connector; the site block stays.
    r = await client.get(
        f"/v1/sites/{world.site_id}/quote",
        params={"connector_id": world.ccs50, "energy_kwh": 10},
    )
    assert r.status_code == 200, r.text
    assert [x["unit_price"] for x in r.json()["lines"]] == ["0.30"]
    r = await client.get(
        f"/v1/sites/{world.site_id}/quote",
        params={"connector_id": world.ccs150, "energy_kwh": 10},
    )
    assert [x["unit_price"] for x in r.json()["lines"]] == ["0.60"]

    # A site-level switch an hour from now: search shows it as the end of today's price…
    later = NOW + timedelta(hours=1)
    await assign(client, admin, flat, later, site_id=world.site_id)
    prices = await prices_until(
        client, lambda p: (p.get(world.site_id) or {}).get("valid_until") == "2026-11-25T16:30:00Z"
    )
    assert prices[world.site_id]["energy_per_kwh"] == "0.60"
    # …quotes starting after it use the new tariff, before it the old one…
    r = await client.get(
        f"/v1/sites/{world.site_id}/quote",
        params={"connector_id": world.ccs150, "energy_kwh": 10, "start_at": "2026-11-25T16:45:00Z"},
    )
    assert [x["unit_price"] for x in r.json()["lines"]] == ["0.30"]
    # …and the charger-level tariff still beats the newer site-level one.
    r = await client.get(
        f"/v1/sites/{world.site_id}/cheapest-start",
        params={"connector_id": world.ccs50, "energy_kwh": 10},
    )
    assert r.json()["saving_minor_vs_now"] == 0
    # Once the switch has happened, search shows the new tariff with no end.
    app_clock = FixedClock(later + timedelta(minutes=1))
    client.app.state.prices.clock = app_clock
    prices = await nearby_prices(client)
    assert prices[world.site_id]["tariff_id"] == flat
    assert prices[world.site_id]["energy_per_kwh"] == "0.30"
    assert prices[world.site_id]["valid_until"] is None


async def test_a_new_version_shows_in_search_within_a_second(
    client: Client, world: World, admin: dict[str, str]
) -> None:
    await prices_until(client, lambda p: p.get(world.site_id) is not None)
    cheaper = msgspec.json.decode(msgspec.json.encode(PEAK))
    cheaper["elements"][0]["price_components"][0]["price"] = "0.55"
    r = await client.put(f"/admin/v1/tariffs/{world.tariff_id}", json=cheaper, headers=admin)
    assert r.status_code == 200, r.text
    sent = time.monotonic()
    prices = await prices_until(
        client, lambda p: p[world.site_id]["energy_per_kwh"] == "0.55", within_s=1.0
    )
    took = time.monotonic() - sent
    assert took <= 1.0, f"the new price took {took:.2f} s to reach search"
    assert prices[world.site_id]["valid_until"] == "2026-11-25T19:00:00Z"
    # The quote uses the new version too, and says which one.
    r = await client.get(
        f"/v1/sites/{world.site_id}/quote",
        params={"connector_id": world.ccs150, "energy_kwh": 10},
    )
    assert r.json()["tariff_version"] == 2
    assert r.json()["lines"][0]["unit_price"] == "0.55"


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"energy_kwh": 10, "duration_min": 30}, 422, "validation_failed"),
        ({}, 422, "validation_failed"),
        ({"energy_kwh": -1}, 422, "validation_failed"),
        ({"energy_kwh": 10, "start_at": "2026-11-25T16:00:00"}, 422, "validation_failed"),
        ({"energy_kwh": 10, "start_at": "2026-12-25T16:00:00Z"}, 422, "validation_failed"),
        ({"energy_kwh": 10, "connector_id": "nope"}, 404, "connector_not_found"),
    ],
)
async def test_quote_rejects_bad_input(
    client: Client, world: World, params: dict[str, Any], status: int, code: str
) -> None:
    r = await client.get(
        f"/v1/sites/{world.site_id}/quote", params={"connector_id": world.ccs150, **params}
    )
    assert r.status_code == status, r.text
    assert r.json()["code"] == code


async def test_quote_where_no_tariff_applies(client: Client, world: World, db: Any) -> None:
    other = await db.fetchval(
        "SELECT connector_id::text FROM connectors WHERE site_id = $1::uuid LIMIT 1",
        world.other_site_id,
    )
    r = await client.get(
        f"/v1/sites/{world.other_site_id}/quote", params={"connector_id": other, "energy_kwh": 5}
    )
    assert r.status_code == 404
    assert r.json()["code"] == "no_tariff"
    # a connector of another site is not found at this one
    r = await client.get(
        f"/v1/sites/{world.site_id}/quote", params={"connector_id": other, "energy_kwh": 5}
    )
    assert r.json()["code"] == "connector_not_found"
    r = await client.get(
        f"/v1/sites/{'0' * 32}/quote", params={"connector_id": other, "energy_kwh": 5}
    )
    assert r.json()["code"] == "site_not_found"


async def test_quotes_and_nearby_search_share_one_budget_per_client(settings: Settings) -> None:
    """The public routes draw on one set of token buckets (a core dependency), so a client
    cannot get a second budget by switching from search to quotes."""
    from app.main import create_app

    strict = msgspec.structs.replace(settings, discovery_rate_per_s=0.01, discovery_burst=3.0)
    nowhere = "00000000-0000-4000-8000-000000000000"
    async with AsyncTestClient(app=create_app(strict, run_migrations=False)) as c:
        searched = [
            (await c.get("/v1/chargers/nearby", params={"lat": 1, "lon": 1})).status_code
            for _ in range(2)
        ]
        quoted = await c.get(
            f"/v1/sites/{nowhere}/quote", params={"connector_id": nowhere, "energy_kwh": 10}
        )
        refused = await c.get(
            f"/v1/sites/{nowhere}/quote", params={"connector_id": nowhere, "energy_kwh": 10}
        )
    assert searched == [200, 200]
    assert quoted.status_code == 404  # the third token: answered (no such site)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
