"""When the running cost reaches 90 % of what is authorised: a further hold, else the
session is stopped (RemoteStop) and the driver told by SMS (`hold_exhausted`); what the
bill exceeds the holds by is a second payment, shown as such."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from app.core.settings import Settings
from tests.sessions.conftest import Site, charging_sim, charging_site

# 0.50 €/kWh, nothing else, no VAT: the cost is half the Wh in cents.
HALF_EURO_PER_KWH = [{"price_components": [{"type": "ENERGY", "price": "0.50", "step_size": 1}]}]


async def _charging(world: Site) -> tuple[Any, dict[str, Any], str]:
    await world.use_tariff(HALF_EURO_PER_KWH)
    sim = await world.connect(charging_sim(remote_start_plan=None))  # meter values by hand
    driver = await world.driver()
    r = await world.start(driver)
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    await world.until(driver, sid, lambda v: v["status"] == "CHARGING")
    return sim, driver, sid


async def _holds(world: Site, sid: str) -> list[tuple[str, int, int]]:
    rows = await world.db.fetch(
        "SELECT kind, amount_minor, captured_minor FROM payments WHERE session_id = $1::uuid "
        "ORDER BY created_at",
        sid,
    )
    return [(r["kind"], r["amount_minor"], r["captured_minor"]) for r in rows]


async def _alerts(world: Site, sid: str) -> list[str]:
    rows = await world.db.fetch(
        "SELECT kind FROM notifications WHERE session_id = $1::uuid ORDER BY created_at", sid
    )
    return [r["kind"] for r in rows]


@pytest.fixture
async def small_holds(settings: Settings, db: asyncpg.Connection) -> Any:
    async with charging_site(settings, db, payment_hold_minor=300, session_max_holds=2) as w:
        yield w


async def test_a_further_hold_then_stop_and_sms_when_it_runs_out(small_holds: Site) -> None:
    world = small_holds
    sim, driver, sid = await _charging(world)
    start = sim.transaction(1).meter_start_wh
    await sim.send_meter_values(1, energy_wh=start + 5_000, power_w=40_000)  # 250 of 300
    assert await world.run_jobs("session_hold_low") == []
    await sim.send_meter_values(1, energy_wh=start + 5_500, power_w=40_000)  # 275: ≥ 90 %
    assert await world.run_jobs("session_hold_low") == ["further_hold"]
    view = await world.session(driver, sid)
    assert view["status"] == "CHARGING"
    assert view["payment"]["preauth_minor"] == 600
    assert await _holds(world, sid) == [("hold", 300, 0), ("hold", 300, 0)]

    await sim.send_meter_values(1, energy_wh=start + 11_000, power_w=40_000)  # 550 of 600
    assert await world.run_jobs("session_hold_low") == ["stopped"]
    tx = await world.db.fetchval(
        "SELECT transaction_id FROM charging_sessions WHERE session_id = $1::uuid", sid
    )
    assert ("RemoteStopTransaction", {"transaction_id": tx}) in sim.calls_received
    done = await world.until(driver, sid, lambda v: v["receipt"] is not None)
    assert done["status"] == "COMPLETED"
    assert done["receipt"]["total_minor"] == 550
    assert [(p["kind"], p["amount_minor"]) for p in done["receipt"]["payments"]] == [
        ("hold", 300),
        ("hold", 250),
    ]
    assert (await _alerts(world, sid)).count("hold_exhausted") == 1
    await world.run_jobs()
    assert await _holds(world, sid) == [("hold", 300, 300), ("hold", 300, 250)]
    paid = await world.session(driver, sid)
    assert (paid["payment"]["status"], paid["payment"]["captured_minor"]) == ("captured", 550)
    # Running the job again changes nothing (one alert, one stop, no further hold).
    assert await world.run_jobs("session_hold_low") == []
    assert (await _alerts(world, sid)).count("hold_exhausted") == 1


@pytest.fixture
async def one_hold(settings: Settings, db: asyncpg.Connection) -> Any:
    async with charging_site(settings, db, payment_hold_minor=300, session_max_holds=1) as w:
        yield w


async def test_what_the_bill_exceeds_the_hold_by_is_a_second_payment(one_hold: Site) -> None:
    world = one_hold
    sim, driver, sid = await _charging(world)
    start = sim.transaction(1).meter_start_wh
    # The cost ran past the hold before the stop took effect: 4.00 € on a 3.00 € hold.
    await sim.send_meter_values(1, energy_wh=start + 8_000, power_w=40_000)
    assert await world.run_jobs("session_hold_low") == ["stopped"]
    done = await world.until(driver, sid, lambda v: v["receipt"] is not None)
    assert done["receipt"]["total_minor"] == 400
    assert [(p["kind"], p["amount_minor"]) for p in done["receipt"]["payments"]] == [
        ("hold", 300),
        ("extra", 100),
    ]
    await world.run_jobs()
    assert await _holds(world, sid) == [("hold", 300, 300), ("extra", 100, 100)]
    paid = await world.session(driver, sid)
    assert paid["payment"]["captured_minor"] == 400
    assert paid["payment"]["extra_minor"] == 100
    assert "hold_exhausted" in await _alerts(world, sid)
