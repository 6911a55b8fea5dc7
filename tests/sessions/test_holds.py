"""When the running cost reaches 90 % of what is authorised: a further hold, else the
session is stopped (RemoteStop) and the driver told by SMS (`hold_exhausted`); what the
bill exceeds the holds by is a second payment, shown as such."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from app.core.settings import Settings
from tests.sessions.conftest import Site, charging_site
from tests.sessions.test_billing_once import HALF_EURO_PER_KWH, charging


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
async def holds_site(
    settings: Settings, db: asyncpg.Connection
) -> AsyncIterator[Callable[[int], Awaitable[Site]]]:
    """Opens the charging site with holds of 3.00 € each, at most `max_holds` of them per
    session, at 0.50 €/kWh and nothing else, no VAT (the cost is half the Wh in cents)."""
    async with contextlib.AsyncExitStack() as stack:

        async def open_site(max_holds: int) -> Site:
            site = charging_site(settings, db, payment_hold_minor=300, session_max_holds=max_holds)
            world = await stack.enter_async_context(site)
            await world.use_tariff(HALF_EURO_PER_KWH)
            return world

        yield open_site


async def test_a_further_hold_then_stop_and_sms_when_it_runs_out(
    holds_site: Callable[[int], Awaitable[Site]],
) -> None:
    world = await holds_site(2)
    sim, driver, sid, tx = await charging(world)
    start = tx.meter_start_wh
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


async def test_what_the_bill_exceeds_the_hold_by_is_a_second_payment(
    holds_site: Callable[[int], Awaitable[Site]],
) -> None:
    world = await holds_site(1)
    sim, driver, sid, tx = await charging(world)
    # The cost ran past the hold before the stop took effect: 4.00 € on a 3.00 € hold.
    await sim.send_meter_values(1, energy_wh=tx.meter_start_wh + 8_000, power_w=40_000)
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
