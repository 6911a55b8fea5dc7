"""A StopTransaction that arrives late (queued while the charger was offline, with
`transactionData`) or twice bills once; a price change during a session does not touch
its bill."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from app.chargers import service as chargers
from app.chargers.service import ChargerIdentity
from app.sim import SimCharger, Transaction
from tests.factories import auth
from tests.sessions.conftest import CPID, Site, charging_sim

HALF_EURO_PER_KWH = [{"price_components": [{"type": "ENERGY", "price": "0.50", "step_size": 1}]}]


async def charging(world: Site) -> tuple[SimCharger, dict[str, Any], str, Transaction]:
    """A session CHARGING on connector 1 of a charger whose meter values go by hand: the
    charger, the driver, the session id and the charger's transaction."""
    sim = await world.connect(charging_sim(remote_start_plan=None))
    driver = await world.driver()
    r = await world.start(driver)
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    await world.until(driver, sid, lambda v: v["status"] == "CHARGING")
    tx = sim.transaction(1)
    assert tx is not None
    return sim, driver, sid, tx


async def _charger(world: Site) -> ChargerIdentity:
    charger_id = await world.db.fetchval(
        "SELECT charger_id FROM chargers WHERE charge_point_id = $1", CPID
    )
    return ChargerIdentity(charger_id, CPID, None)


async def _stop(
    world: Site,
    charger: ChargerIdentity,
    transaction_id: int,
    meter_stop: int,
    *,
    reason: str = "Local",
    transaction_data: list[dict[str, Any]] | None = None,
) -> str | None:
    """A StopTransaction of `charger`, handed to the chargers' service as the OCPP link
    does (stopped now)."""
    return await chargers.stop_transaction(
        world.srv.app.state.pool,
        charger,
        transaction_id=transaction_id,
        meter_stop=meter_stop,
        stopped_at=datetime.now(UTC),
        reason=reason,
        transaction_data=transaction_data,
    )


async def _bills(world: Site, sid: str) -> int:
    return int(
        await world.db.fetchval(
            "SELECT count(*) FROM session_bills WHERE session_id = $1::uuid", sid
        )
    )


async def _capture_decisions(world: Site, sid: str) -> list[int]:
    rows = await world.db.fetch(
        "SELECT c.amount_minor FROM payment_captures c JOIN payments p USING (payment_intent_id) "
        "WHERE p.session_id = $1::uuid",
        sid,
    )
    return [r["amount_minor"] for r in rows]


async def test_a_late_stop_after_a_reconnect_and_a_repeated_one_bill_once(world: Site) -> None:
    await world.use_tariff(HALF_EURO_PER_KWH)
    sim, driver, sid, tx = await charging(world)
    start = tx.meter_start_wh
    await sim.send_meter_values(1, energy_wh=start + 2_000, power_w=22_000)

    # The cable to the network is cut; the charger keeps charging and queues its messages.
    sim.drop_connection(reconnect=False)
    await sim.wait_until(lambda: not sim.online, 5)
    await sim.send_meter_values(1, energy_wh=start + 4_000, power_w=22_000, wait=False)
    await sim.send_meter_values(1, energy_wh=start + 6_000, power_w=22_000, wait=False)
    await sim.stop_transaction(1, reason="EVDisconnected", wait=False)
    view = await world.session(driver, sid)
    assert (view["status"], view["receipt"]) == ("CHARGING", None)

    sim.reconnect()
    await sim.wait_online(10)
    await sim.flush(10)
    done = await world.until(driver, sid, lambda v: v["receipt"] is not None)
    assert done["status"] == "COMPLETED"
    assert done["energy_kwh"] == 6.0
    assert done["receipt"]["total_minor"] == 300
    assert await _bills(world, sid) == 1
    assert await _capture_decisions(world, sid) == [300]

    # The same StopTransaction again, twice at once (the charger never saw the answer).
    charger = await _charger(world)
    again = [
        _stop(
            world,
            charger,
            tx.transaction_id,
            start + 9_000,  # even with other numbers
            reason="EVDisconnected",
            transaction_data=[
                {
                    "timestamp": datetime.now(UTC).isoformat(),
                    "sampled_value": [{"value": str(start + 9_000)}],
                }
            ],
        )
        for _ in range(2)
    ]
    assert await asyncio.gather(*again) == ["Accepted", "Accepted"]
    after = await world.session(driver, sid)
    assert after["receipt"] == done["receipt"]
    assert after["energy_kwh"] == 6.0
    assert await _bills(world, sid) == 1
    assert await _capture_decisions(world, sid) == [300]
    await world.run_jobs()
    assert (await world.session(driver, sid))["payment"]["captured_minor"] == 300


async def test_two_stops_at_once_bill_once(world: Site) -> None:
    await world.use_tariff(HALF_EURO_PER_KWH)
    _sim, _driver, sid, tx = await charging(world)
    charger = await _charger(world)
    stops = [
        _stop(world, charger, tx.transaction_id, tx.meter_start_wh + 1_000 * n)
        for n in (1, 2, 3, 4)
    ]
    await asyncio.gather(*stops)
    assert await _bills(world, sid) == 1
    assert len(await _capture_decisions(world, sid)) == 1
    total = await world.db.fetchval(
        "SELECT total_minor FROM charging_sessions WHERE session_id = $1::uuid", sid
    )
    assert total in (50, 100, 150, 200)
    assert await _capture_decisions(world, sid) == [total]


async def test_a_price_change_during_the_session_does_not_change_its_bill(world: Site) -> None:
    tariff_id = await world.use_tariff(HALF_EURO_PER_KWH)
    sim, driver, sid, tx = await charging(world)
    await sim.send_meter_values(1, energy_wh=tx.meter_start_wh + 3_000, power_w=22_000)
    # The pricing admin raises the price: version 2 applies to sessions starting from now.
    body = {
        "name": "Test",
        "currency": "EUR",
        "vat_percent": "0",
        "elements": [{"price_components": [{"type": "ENERGY", "price": "0.90", "step_size": 1}]}],
    }
    r = await world.http.put(f"/admin/v1/tariffs/{tariff_id}", json=body, headers=auth(world.admin))
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    await sim.send_meter_values(1, energy_wh=tx.meter_start_wh + 10_000, power_w=22_000)
    live = await world.session(driver, sid)
    assert live["cost_so_far_minor"] == 500
    assert live["tariff_version"] == 1
    await sim.stop_transaction(1, reason="Local")
    done = await world.until(driver, sid, lambda v: v["receipt"] is not None)
    assert done["receipt"]["total_minor"] == 500
    assert {line["unit_price"] for line in done["receipt"]["lines"]} == {"0.50"}
    assert done["receipt"]["tariff_version"] == 1
    # The next session starts on version 2.
    r = await world.start(driver)
    assert r.status_code == 201, r.text
    assert r.json()["tariff_version"] == 2


async def test_a_stop_for_a_transaction_not_started_yet_changes_nothing(world: Site) -> None:
    sim = await world.connect(charging_sim(remote_start_plan=None))
    sim.stop_answering("RemoteStartTransaction")  # the session stays STARTING
    driver = await world.driver()
    r = await world.start(driver)
    started = r.json()
    # The STARTING session's reserved transactionId in a StopTransaction (a confused
    # charger): unknown, nothing billed, the start goes on.
    answer = await _stop(world, await _charger(world), started["transaction_id"], 50_000)
    assert answer is None
    assert await _bills(world, started["session_id"]) == 0
    assert (await world.session(driver, started["session_id"]))["status"] == "STARTING"


async def test_the_cost_so_far_of_an_ended_session_is_its_bill(world: Site) -> None:
    """An alert written the moment the car stops (80 % and unplugged at once) quotes the
    cost so far; once the charger ended the session nothing accrues after its end, so
    that figure is the bill's total (it said 10.31 € against a 10.19 € receipt: the
    parking time between the stop and the alert, rounded up to a whole minute)."""
    from datetime import timedelta

    from app.sessions import queries as session_queries
    from app.sessions.service import running_cost

    per_minute = {"type": "PARKING_TIME", "price": "6.00", "step_size": 60}
    await world.use_tariff(
        [{"price_components": [{"type": "ENERGY", "price": "0.50", "step_size": 1}, per_minute]}]
    )
    sim, driver, sid, tx = await charging(world)
    await sim.send_meter_values(1, energy_wh=tx.meter_start_wh + 4_000, power_w=22_000)
    await sim.stop_transaction(1, reason="EVDisconnected")
    done = await world.until(driver, sid, lambda v: v["receipt"] is not None)
    row = await session_queries.session(world.db, session_id=uuid.UUID(sid))
    assert row is not None
    assert row.ended_at is not None
    for later in (timedelta(0), timedelta(milliseconds=50), timedelta(minutes=5)):
        assert (
            await running_cost(world.db, row, row.ended_at + later)
            == (done["receipt"]["total_minor"])
        )
