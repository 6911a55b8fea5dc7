"""A charger loses its socket mid-transaction, keeps MeterValues and StopTransaction in
its queue while offline, reconnects and delivers them: the session closes once, with
the right energy, and a repeated StopTransaction changes nothing (INTEGRATIONS.md §1)."""

from __future__ import annotations

import base64
import json

import asyncpg
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from app.core.settings import Settings
from app.sim import SimCharger
from tests.chargers.conftest import PASSWORD, Server, fast_sim, onboard
from tests.factories import make_driver, make_held_session


async def _session(db: asyncpg.Connection, transaction_id: int) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT status, energy_wh, meter_start_wh, meter_stop_wh, ended_at, stop_reason "
        "FROM charging_sessions WHERE transaction_id = $1",
        transaction_id,
    )
    assert row is not None
    return row


async def _energy_samples(db: asyncpg.Connection, transaction_id: int) -> list[float]:
    rows = await db.fetch(
        "SELECT value FROM meter_samples WHERE transaction_id = $1 "
        "AND measurand = 'Energy.Active.Import.Register' ORDER BY value",
        transaction_id,
    )
    return [r["value"] for r in rows]


async def test_queued_messages_after_a_reconnect_close_the_session_once(
    server: Server, db: asyncpg.Connection, settings: Settings
) -> None:
    await onboard(server)
    driver = await make_driver(db, settings)
    id_tag = await db.fetchval(
        "SELECT id_tag FROM drivers WHERE driver_id = $1::uuid", driver["driver_id"]
    )
    options = fast_sim(meter_start_wh=100_000)
    async with SimCharger(
        server.ocpp_url, "CP-T1", PASSWORD, connectors=[1, 2], options=options
    ) as sim:
        await sim.wait_online(10)
        await make_held_session(db, driver_id=driver["driver_id"], charge_point_id="CP-T1")
        tx = await sim.start_transaction(1, id_tag, charge=False)
        start = tx.meter_start_wh
        assert start == 100_000
        await sim.send_meter_values(1, energy_wh=start + 3_000, power_w=22_000, soc=30)
        assert (await _session(db, tx.transaction_id))["energy_wh"] == 3_000

        # The cable is cut: no close frame, and the charger stays offline for now.
        sim.drop_connection(reconnect=False)
        await sim.wait_until(lambda: not sim.online, 5)
        await sim.send_meter_values(1, energy_wh=start + 6_000, power_w=22_000, wait=False)
        await sim.send_meter_values(1, energy_wh=start + 9_000, power_w=21_000, wait=False)
        await sim.stop_transaction(1, reason="EVDisconnected", wait=False)
        await sim.wait_until(lambda: sim.outbox_size == 3, 5)
        row = await _session(db, tx.transaction_id)
        assert (row["ended_at"], row["energy_wh"]) == (None, 3_000)  # nothing arrived yet

        sim.reconnect()
        await sim.wait_online(10)
        await sim.flush(10)

    row = await _session(db, tx.transaction_id)
    assert row["status"] == "COMPLETED"
    assert row["stop_reason"] == "EVDisconnected"
    assert (row["meter_stop_wh"], row["energy_wh"]) == (start + 9_000, 9_000)
    # Three MeterValues, then Transaction.Begin/End from StopTransaction's transactionData.
    expected = [start, start + 3_000, start + 6_000, start + 9_000, start + 9_000]
    assert await _energy_samples(db, tx.transaction_id) == expected

    # The charger never saw the answer and sends the same StopTransaction again (even with
    # a different meterStop): accepted, but nothing is counted twice.
    token = base64.b64encode(f"CP-T1:{PASSWORD}".encode()).decode()
    stop = {
        "transactionId": tx.transaction_id,
        "meterStop": start + 20_000,
        "timestamp": "2026-01-01T10:00:00.000Z",
        "idTag": id_tag,
        "reason": "EVDisconnected",
        "transactionData": [
            {
                "timestamp": "2026-01-01T10:00:00.000Z",
                "sampledValue": [
                    {"value": str(start + 20_000), "context": "Transaction.End", "unit": "Wh"}
                ],
            }
        ],
    }
    async with ws_connect(
        f"{server.ocpp_url}/CP-T1",
        additional_headers={"Authorization": f"Basic {token}"},
        subprotocols=[Subprotocol("ocpp1.6")],
        open_timeout=5,
    ) as ws:
        for n in range(2):
            await ws.send(json.dumps([2, f"again{n}", "StopTransaction", stop]))
            answer = json.loads(await ws.recv())
            assert answer[:2] == [3, f"again{n}"]
            assert answer[2]["idTagInfo"]["status"] == "Accepted"
    row = await _session(db, tx.transaction_id)
    assert (row["meter_stop_wh"], row["energy_wh"]) == (start + 9_000, 9_000)
    assert await _energy_samples(db, tx.transaction_id) == expected
    assert await db.fetchval("SELECT count(*) FROM charging_sessions") == 1
