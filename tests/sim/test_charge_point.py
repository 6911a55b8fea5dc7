"""SimCharger against a throw-away central system built with the same ocpp library."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from ocpp.v16 import call

from app.sim import SessionPlan, SimCharger, connect
from app.sim.charge_point import ocpp_timestamp
from tests.chargers.conftest import fast_sim
from tests.sim.central_system import PASSWORDS, CentralSystem, running_central_system


@pytest.fixture
async def cs() -> AsyncIterator[CentralSystem]:
    async with running_central_system() as central:
        yield central


# The chargers tests' quick options, with a shorter answer timeout.
fast = functools.partial(fast_sim, response_timeout_s=2.0)


@pytest.fixture
async def sim(cs: CentralSystem) -> AsyncIterator[SimCharger]:
    charger = await connect(
        cs.url, "CP-1", PASSWORDS["CP-1"], connectors=[1, 2], options=fast(), timeout_s=5
    )
    yield charger
    await charger.close()


async def test_boot_heartbeat_and_statuses(cs: CentralSystem) -> None:
    cs.heartbeat_interval = 1
    async with SimCharger(
        cs.url,
        "CP-1",
        PASSWORDS["CP-1"],
        connectors=[1, 2],
        iccid="89882390000012345678",
        imsi="262019876543210",
        options=fast(vendor="ACME", model="Wallbox-22"),
    ) as charger:
        await charger.wait_online(5)
        boot = (await cs.wait_for("BootNotification")).payload
        assert boot["charge_point_vendor"] == "ACME"
        assert boot["charge_point_model"] == "Wallbox-22"
        assert boot["iccid"] == "89882390000012345678"
        assert boot["imsi"] == "262019876543210"
        assert [cs.statuses(n) for n in (0, 1, 2)] == [["Available"]] * 3
        assert charger.heartbeat_interval == 1
        await cs.wait_for("Heartbeat", timeout_s=3)
    assert cs.refused == 0


async def test_heartbeat_override_and_wrong_password(cs: CentralSystem) -> None:
    with pytest.raises(TimeoutError, match="401"):
        await connect(cs.url, "CP-2", "wrong-password-000000", options=fast(), timeout_s=0.5)
    assert cs.refused >= 1
    assert "CP-2" not in cs.connections
    charger = await connect(
        cs.url, "CP-2", PASSWORDS["CP-2"], heartbeat_override=0.1, options=fast()
    )
    try:
        await cs.wait_for("Heartbeat", "CP-2", timeout_s=2)
        assert charger.heartbeat_interval == 0.1
    finally:
        await charger.close()


async def test_full_transaction_with_meter_values(cs: CentralSystem) -> None:
    options = fast(speedup=3000.0, meter_interval_s=60.0, max_power_w=50_000.0)
    charger = await connect(cs.url, "CP-1", PASSWORDS["CP-1"], connectors=[1], options=options)
    try:
        plan = SessionPlan(battery_kwh=10, start_soc=60, car_max_power_w=100_000)
        tx = await charger.start_transaction(1, "DRIVER1", plan=plan)
        assert tx.transaction_id == 1001
        stop = (await cs.wait_for("StopTransaction", timeout_s=5)).payload
        await cs.wait_until(lambda: cs.statuses(1)[-1] == "Available")
    finally:
        await charger.close()

    start = cs.messages("StartTransaction")[0].payload
    assert start["connector_id"] == 1
    assert start["id_tag"] == "DRIVER1"
    assert stop["transaction_id"] == 1001
    assert stop["reason"] == "EVDisconnected"
    # 60 → 100 % of 10 kWh
    assert stop["meter_stop"] - start["meter_start"] == pytest.approx(4_000, abs=1)
    assert [v["sampled_value"][0]["context"] for v in stop["transaction_data"]] == [
        "Transaction.Begin",
        "Transaction.End",
    ]

    samples = []
    for message in cs.messages("MeterValues"):
        assert message.payload["transaction_id"] == 1001
        (meter_value,) = message.payload["meter_value"]
        by_measurand = {s["measurand"]: s for s in meter_value["sampled_value"]}
        assert by_measurand["Energy.Active.Import.Register"]["unit"] == "Wh"
        assert by_measurand["Power.Active.Import"]["unit"] == "W"
        assert by_measurand["SoC"]["unit"] == "Percent"
        samples.append(
            (
                int(by_measurand["Energy.Active.Import.Register"]["value"]),
                float(by_measurand["Power.Active.Import"]["value"]),
                float(by_measurand["SoC"]["value"]),
            )
        )
    assert len(samples) >= 5
    energies, powers, socs = zip(*samples, strict=True)
    assert list(energies) == sorted(energies)
    assert list(socs) == sorted(socs)
    assert socs[0] == 60.0
    assert socs[-1] == 100.0
    assert energies[-1] == stop["meter_stop"]
    assert max(powers) <= 50_000
    assert any(80 < soc < 100 and power < 50_000 for _, power, soc in samples)  # taper
    assert cs.statuses(1) == ["Available", "Preparing", "Charging", "Finishing", "Available"]
    (done,) = charger.completed_transactions
    assert done.stop_reason == "EVDisconnected"


async def test_suspended_ev_then_idle_when_full(cs: CentralSystem) -> None:
    options = fast(speedup=3000.0, meter_interval_s=60.0, max_power_w=50_000.0)
    charger = await connect(cs.url, "CP-1", PASSWORDS["CP-1"], connectors=[1], options=options)
    try:
        plan = SessionPlan(
            battery_kwh=10,
            start_soc=50,
            target_soc=80,
            suspend_at_soc=60,
            suspend_for_s=300,
            when_done="suspend",
        )
        await charger.start_transaction(1, "DRIVER2", plan=plan)
        await cs.wait_until(lambda: cs.statuses(1).count("SuspendedEV") == 2)
        assert cs.statuses(1) == [
            "Available",
            "Preparing",
            "Charging",
            "SuspendedEV",  # paused at 60 %
            "Charging",
            "SuspendedEV",  # full at 80 %, still plugged in
        ]
        assert charger.transaction(1) is not None  # full, but still plugged in
        await charger.stop_transaction(reason="Local")
        stop = cs.messages("StopTransaction")[0].payload
        assert stop["reason"] == "Local"
        assert stop["meter_stop"] == pytest.approx(3_000, abs=1)
    finally:
        await charger.close()


async def test_reconnect_delivers_queued_stop_transaction(
    cs: CentralSystem, sim: SimCharger
) -> None:
    tx = await sim.start_transaction(1, "DRIVER3", charge=False)
    sim.drop_connection(reconnect=False)
    await sim.wait_until(lambda: not sim.online, 2)

    await sim.send_meter_values(1, energy_wh=1_500, power_w=7_000, wait=False)
    stopping = asyncio.ensure_future(sim.stop_transaction(reason="Local"))
    await sim.wait_until(lambda: sim.outbox_size == 2, 2)
    with pytest.raises(TimeoutError):
        await cs.wait_for("StopTransaction", timeout_s=0.2)

    sim.reconnect()
    result = await asyncio.wait_for(stopping, 5)
    assert result == {"id_tag_info": {"status": "Accepted"}}
    stop = cs.messages("StopTransaction")[0]
    assert stop.connection == 2
    assert stop.payload["transaction_id"] == tx.transaction_id
    assert stop.payload["meter_stop"] == 1_500
    second = [m.action for m in cs.received if m.connection == 2]
    assert second[0] == "BootNotification"
    assert second.index("MeterValues") < second.index("StopTransaction")
    await sim.wait_status(1, "Available")
    assert cs.connections["CP-1"] == 2
    assert sim.outbox_size == 0


async def test_unanswered_stop_transaction_is_retried(cs: CentralSystem) -> None:
    options = fast(response_timeout_s=0.2, tx_retry_interval_s=0.05)
    charger = await connect(cs.url, "CP-1", PASSWORDS["CP-1"], options=options)
    try:
        tx = await charger.start_transaction(1, "DRIVER4", charge=False)
        cs.stop_answer_delays = [0.4]
        await charger.stop_transaction()
    finally:
        await charger.close()
    stops = cs.messages("StopTransaction")
    assert len(stops) == 2  # the central system must bill once
    assert {m.payload["transaction_id"] for m in stops} == {tx.transaction_id}
    assert charger.stats.timeouts == 1


async def test_remote_start_accepted_rejected_and_remote_stop(
    cs: CentralSystem, sim: SimCharger
) -> None:
    central = cs.chargers["CP-1"]
    accepted = await central.call(call.RemoteStartTransaction(id_tag="APP1", connector_id=1))
    assert accepted.status == "Accepted"
    start = (await cs.wait_for("StartTransaction")).payload
    assert (start["id_tag"], start["connector_id"]) == ("APP1", 1)
    await sim.wait_status(1, "Charging")

    busy = await central.call(call.RemoteStartTransaction(id_tag="APP2", connector_id=1))
    assert busy.status == "Rejected"
    sim.options.remote_start_policy = "reject"
    refused = await central.call(call.RemoteStartTransaction(id_tag="APP2", connector_id=2))
    assert refused.status == "Rejected"

    tx = sim.transaction(1)
    assert tx is not None
    unknown = await central.call(call.RemoteStopTransaction(transaction_id=999_999))
    assert unknown.status == "Rejected"
    stopped = await central.call(call.RemoteStopTransaction(transaction_id=tx.transaction_id))
    assert stopped.status == "Accepted"
    stop = (await cs.wait_for("StopTransaction")).payload
    assert (stop["transaction_id"], stop["reason"]) == (tx.transaction_id, "Remote")
    await sim.wait_status(1, "Available")


async def test_remote_start_without_connector_charges_the_default_car(cs: CentralSystem) -> None:
    options = fast(
        speedup=3000.0,
        max_power_w=50_000.0,
        remote_start_plan=SessionPlan(battery_kwh=5, start_soc=70),
    )
    charger = await connect(cs.url, "CP-1", PASSWORDS["CP-1"], connectors=[1, 2], options=options)
    try:
        result = await cs.chargers["CP-1"].call(call.RemoteStartTransaction(id_tag="APP3"))
        assert result.status == "Accepted"
        stop = (await cs.wait_for("StopTransaction", timeout_s=5)).payload
        assert stop["reason"] == "EVDisconnected"
        assert stop["meter_stop"] == pytest.approx(1_500, abs=1)
    finally:
        await charger.close()


async def test_reserve_now_then_start_for_that_tag(cs: CentralSystem, sim: SimCharger) -> None:
    central = cs.chargers["CP-1"]
    expiry = ocpp_timestamp(datetime.now(UTC) + timedelta(hours=1))
    reserved = await central.call(
        call.ReserveNow(connector_id=1, expiry_date=expiry, id_tag="RES1", reservation_id=42)
    )
    assert reserved.status == "Accepted"
    await cs.wait_for("StatusNotification", where=lambda p: p["status"] == "Reserved")
    assert sim.connectors[1].status == "Reserved"

    again = await central.call(
        call.ReserveNow(connector_id=1, expiry_date=expiry, id_tag="RES2", reservation_id=43)
    )
    assert again.status == "Occupied"
    zero = await central.call(
        call.ReserveNow(connector_id=0, expiry_date=expiry, id_tag="RES2", reservation_id=44)
    )
    assert zero.status == "Rejected"
    other = await central.call(call.RemoteStartTransaction(id_tag="OTHER", connector_id=1))
    assert other.status == "Rejected"

    mine = await central.call(call.RemoteStartTransaction(id_tag="RES1", connector_id=1))
    assert mine.status == "Accepted"
    start = (await cs.wait_for("StartTransaction")).payload
    assert start["reservation_id"] == 42
    assert start["id_tag"] == "RES1"
    await sim.wait_status(1, "Charging")
    assert sim.connectors[1].reservation is None


async def test_cancel_and_expire_reservations(cs: CentralSystem, sim: SimCharger) -> None:
    central = cs.chargers["CP-1"]
    later = ocpp_timestamp(datetime.now(UTC) + timedelta(hours=1))
    soon = ocpp_timestamp(datetime.now(UTC) + timedelta(seconds=0.3))
    for connector_id, expiry, reservation_id in ((1, later, 7), (2, soon, 8)):
        result = await central.call(
            call.ReserveNow(
                connector_id=connector_id,
                expiry_date=expiry,
                id_tag="RES",
                reservation_id=reservation_id,
            )
        )
        assert result.status == "Accepted"
    assert (await central.call(call.CancelReservation(reservation_id=99))).status == "Rejected"
    assert (await central.call(call.CancelReservation(reservation_id=7))).status == "Accepted"
    await cs.wait_until(lambda: len(cs.statuses(1)) == 3 and len(cs.statuses(2)) == 3)
    assert cs.statuses(1) == ["Available", "Reserved", "Available"]  # cancelled
    assert cs.statuses(2) == ["Available", "Reserved", "Available"]  # expired
    assert sim.connectors[2].reservation is None


async def test_unanswered_calls_let_the_central_system_time_out(
    cs: CentralSystem, sim: SimCharger
) -> None:
    central = cs.chargers["CP-1"]
    central._response_timeout = 0.3
    sim.stop_answering("RemoteStartTransaction")
    with pytest.raises(TimeoutError):
        await central.call(call.RemoteStartTransaction(id_tag="APP1", connector_id=1))
    assert [action for action, _ in sim.ignored_calls] == ["RemoteStartTransaction"]
    sim.resume_answering()
    result = await central.call(call.RemoteStartTransaction(id_tag="APP1", connector_id=1))
    assert result.status == "Accepted"


async def test_authorize_blocked_start_and_set_status(cs: CentralSystem, sim: SimCharger) -> None:
    assert (await sim.authorize("DRIVER1"))["status"] == "Accepted"
    assert (await sim.authorize("UNKNOWN"))["status"] == "Invalid"

    tx = await sim.start_transaction(2, "BLOCKED")
    assert tx.id_tag_status == "Blocked"
    stop = (await cs.wait_for("StopTransaction")).payload
    assert stop["reason"] == "DeAuthorized"
    assert sim.transaction(2) is None

    await sim.set_status(1, "Faulted", "GroundFailure")
    faulted = await cs.wait_for("StatusNotification", where=lambda p: p["status"] == "Faulted")
    assert faulted.payload["error_code"] == "GroundFailure"
    await sim.send_meter_values(1, energy_wh=12_345, power_w=0)
    meter = (await cs.wait_for("MeterValues")).payload
    assert "transaction_id" not in meter
    assert meter["meter_value"][0]["sampled_value"][0]["value"] == "12345"


async def test_other_commands(cs: CentralSystem, sim: SimCharger) -> None:
    central = cs.chargers["CP-1"]
    config = await central.call(call.GetConfiguration(key=["HeartbeatInterval", "Nope"]))
    assert config.configuration_key == [
        {"key": "HeartbeatInterval", "readonly": False, "value": "60"}
    ]
    assert config.unknown_key == ["Nope"]
    changed = await central.call(call.ChangeConfiguration(key="HeartbeatInterval", value="30"))
    assert changed.status == "Accepted"
    assert sim.heartbeat_interval == 30

    triggered = await central.call(
        call.TriggerMessage(requested_message="StatusNotification", connector_id=2)
    )
    assert triggered.status == "Accepted"
    await cs.wait_until(lambda: len(cs.statuses(2)) == 2)

    off = await central.call(call.ChangeAvailability(connector_id=1, type="Inoperative"))
    assert off.status == "Accepted"
    await cs.wait_until(lambda: cs.statuses(1)[-1] == "Unavailable")
    refused = await central.call(call.RemoteStartTransaction(id_tag="APP1", connector_id=1))
    assert refused.status == "Rejected"
    on = await central.call(call.ChangeAvailability(connector_id=1, type="Operative"))
    assert on.status == "Accepted"
    await cs.wait_until(lambda: cs.statuses(1)[-1] == "Available")

    unlocked = await central.call(call.UnlockConnector(connector_id=1))
    assert unlocked.status == "Unlocked"
    data = await central.call(call.DataTransfer(vendor_id="acme"))
    assert data.status == "UnknownVendorId"

    reset = await central.call(call.Reset(type="Soft"))
    assert reset.status == "Accepted"
    await cs.wait_until(
        lambda: cs.connections["CP-1"] == 2 and len(cs.messages("BootNotification")) == 2
    )
