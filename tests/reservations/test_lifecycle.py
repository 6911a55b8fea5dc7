"""After the booking: expiry, who decides RESERVED in search, charging on a reservation
(ACTIVE → FULFILLED), and a charger that reconnects after missing a cancel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app.reservations import service
from app.reservations.tasks import expire_reservations, resync_charger_reservations
from tests.factories import auth, eventually
from tests.reservations.conftest import Fleet


async def _row(fleet: Fleet, rid: str) -> dict[str, Any]:
    row = await fleet.db.fetchrow(
        "SELECT * FROM reservations WHERE reservation_id = $1", uuid.UUID(rid)
    )
    assert row is not None
    return dict(row)


async def _shows(fleet: Fleet, connector_id: str, status: str) -> bool:
    return await fleet.nearby_status(connector_id) == status


async def _is(fleet: Fleet, connector_id: str, status: str) -> bool:
    return await fleet.status_of(connector_id) == status


async def test_an_unused_hold_expires_and_the_connector_is_free_in_search_at_once(
    fleet: Fleet,
) -> None:
    token = (await fleet.driver())["access_token"]
    connector_id = fleet.connector("CP-A", 1)
    r = await fleet.reserve(token, connector_id, duration_min=5)
    assert r.status_code == 201, r.text
    rid = r.json()["reservation_id"]
    assert await eventually(lambda: _shows(fleet, connector_id, "RESERVED"))
    expires = datetime.fromisoformat(r.json()["expires_at"])

    # before its expiry nothing happens; at it, EXPIRED (and a second run changes nothing)
    async with fleet.srv.app.state.pool.acquire() as conn, conn.transaction():
        assert await service.expire(conn, now=expires - timedelta(seconds=1)) == 0
    async with fleet.srv.app.state.pool.acquire() as conn, conn.transaction():
        assert await service.expire(conn, now=expires) == 1
    async with fleet.srv.app.state.pool.acquire() as conn, conn.transaction():
        assert await service.expire(conn, now=expires + timedelta(seconds=5)) == 0
    r = await fleet.http.get(f"/v1/reservations/{rid}", headers=auth(token))
    assert r.json()["status"] == "EXPIRED"
    assert await fleet.status_of(connector_id) == "AVAILABLE"
    assert await eventually(lambda: _shows(fleet, connector_id, "AVAILABLE"))
    # the charger ends its own copy at expiryDate: nothing left to cancel there
    assert (await _row(fleet, rid))["charger_released_at"] is not None


async def test_the_expiry_cron_job_runs_twice_safely(fleet: Fleet) -> None:
    token = (await fleet.driver())["access_token"]
    r = await fleet.reserve(token, fleet.connector("CP-B", 2), duration_min=1)
    rid = r.json()["reservation_id"]
    # move it into the past, as if its minute were over
    await fleet.db.execute(
        """UPDATE reservations SET start_at = start_at - interval '2 minutes',
                  expires_at = expires_at - interval '2 minutes'
            WHERE reservation_id = $1""",
        uuid.UUID(rid),
    )
    ctx = {"pool": fleet.srv.app.state.pool}
    assert await expire_reservations(ctx) == 1
    assert await expire_reservations(ctx) == 0
    assert (await _row(fleet, rid))["status"] == "EXPIRED"
    assert await fleet.status_of(fleet.connector("CP-B", 2)) == "AVAILABLE"


async def test_between_available_and_reserved_the_reservations_decide(fleet: Fleet) -> None:
    """The charger forgetting a live hold (Available) does not free it in search; a
    `Reserved` with no live reservation does not block it; the charger's Occupied,
    Faulted and Unavailable always pass."""
    sim = fleet.sims["CP-A"]
    held, free = fleet.connector("CP-A", 1), fleet.connector("CP-A", 2)
    token = (await fleet.driver())["access_token"]
    assert (await fleet.reserve(token, held)).status_code == 201
    await sim.wait_status(1, "Reserved", 5)

    await sim.set_status(1, "Available")  # e.g. it rebooted and lost the reservation
    await sim.set_status(2, "Reserved")  # e.g. a late message about an old reservation
    assert await fleet.status_of(held) == "RESERVED"
    assert await fleet.status_of(free) == "AVAILABLE"
    assert await eventually(lambda: _shows(fleet, held, "RESERVED"))

    for ocpp, shown in (
        ("Preparing", "OCCUPIED"),
        ("Faulted", "FAULTED"),
        ("Unavailable", "UNAVAILABLE"),
    ):
        await sim.set_status(1, ocpp)
        assert await eventually(lambda s=shown: _is(fleet, held, s)), ocpp  # type: ignore[misc]
    await sim.set_status(1, "Available")
    assert await eventually(lambda: _is(fleet, held, "RESERVED"))


async def _open_session(fleet: Fleet, cpid: str, no: int, driver_id: str, id_tag: str) -> int:
    """The session row the charger's StartTransaction opens (the sessions domain's job;
    a start at the charger needs a card hold there, which is not what is tested here)."""
    return int(
        await fleet.db.fetchval(
            """INSERT INTO charging_sessions (charger_id, connector_id, connector_no, id_tag,
                                              id_tag_status, driver_id, status,
                                              meter_start_wh, started_at)
               SELECT c.charger_id, k.connector_id, k.connector_no, $3, 'Accepted', $4,
                      'CHARGING', 0, now()
                 FROM chargers c JOIN connectors k USING (charger_id)
                WHERE c.charge_point_id = $1 AND k.connector_no = $2
            RETURNING transaction_id""",
            cpid,
            no,
            id_tag,
            uuid.UUID(driver_id),
        )
    )


async def _id_tag(fleet: Fleet, driver_id: str) -> str:
    return str(
        await fleet.db.fetchval(
            "SELECT id_tag FROM drivers WHERE driver_id = $1", uuid.UUID(driver_id)
        )
    )


async def _started(
    fleet: Fleet, cpid: str, no: int, *, reservation_id: int | None, id_tag: str
) -> uuid.UUID | None:
    charger_id = await fleet.db.fetchval(
        "SELECT charger_id FROM chargers WHERE charge_point_id = $1", cpid
    )
    async with fleet.db.transaction():
        return await service.on_transaction_started(
            fleet.db,
            charger_id=charger_id,
            connector_no=no,
            reservation_id=reservation_id,
            id_tag=id_tag,
            now=datetime.now(UTC),
        )


async def test_starting_a_transaction_on_the_reservation_makes_it_active_then_fulfilled(
    fleet: Fleet,
) -> None:
    driver = await fleet.driver()
    token = driver["access_token"]
    r = await fleet.reserve(token, fleet.connector("CP-B", 1))
    rid = r.json()["reservation_id"]
    row = await _row(fleet, rid)
    id_tag = await _id_tag(fleet, driver["driver_id"])
    other = await fleet.driver(5)
    # someone else's StartTransaction on that connector, or a wrong reservationId: nothing
    assert (
        await _started(
            fleet, "CP-B", 1, reservation_id=None, id_tag=await _id_tag(fleet, other["driver_id"])
        )
        is None
    )
    assert (
        await _started(fleet, "CP-B", 2, reservation_id=row["ocpp_reservation_id"], id_tag="X")
        is None
    )

    transaction_id = await _open_session(fleet, "CP-B", 1, driver["driver_id"], id_tag)
    started = await _started(
        fleet, "CP-B", 1, reservation_id=row["ocpp_reservation_id"], id_tag=id_tag
    )
    assert started == uuid.UUID(rid)
    r = await fleet.http.get(f"/v1/reservations/{rid}", headers=auth(token))
    assert r.json()["status"] == "ACTIVE"
    active = await _row(fleet, rid)
    assert active["transaction_id"] == transaction_id
    # the charger ends its reservation itself when the transaction starts on it
    assert active["charger_released_at"] is not None
    # an ACTIVE reservation is not cancelled by the driver, nor expired
    r = await fleet.http.delete(f"/v1/reservations/{rid}", headers=auth(token))
    assert r.status_code == 409
    assert r.json()["code"] == "reservation_not_cancellable"
    async with fleet.db.transaction():
        await service.expire(fleet.db, now=datetime.now(UTC) + timedelta(hours=1))
    assert (await _row(fleet, rid))["status"] == "ACTIVE"
    # the session ends: the sessions domain calls on_session_ended; the expiry sweep is
    # the net under it
    await fleet.db.execute(
        "UPDATE charging_sessions SET ended_at = now(), status = 'COMPLETED' WHERE transaction_id = $1",
        transaction_id,
    )
    ctx = {"pool": fleet.srv.app.state.pool}
    await expire_reservations(ctx)
    assert (await _row(fleet, rid))["status"] == "FULFILLED"


async def test_the_drivers_id_tag_alone_activates_the_reservation(fleet: Fleet) -> None:
    driver = await fleet.driver()
    r = await fleet.reserve(driver["access_token"], fleet.connector("CP-A", 2))
    rid = r.json()["reservation_id"]
    id_tag = await _id_tag(fleet, driver["driver_id"])
    await _open_session(fleet, "CP-A", 2, driver["driver_id"], id_tag)
    # StartTransaction without reservationId, idTag in another case (idTags are case-blind)
    assert await _started(
        fleet, "CP-A", 2, reservation_id=None, id_tag=id_tag.lower()
    ) == uuid.UUID(rid)
    assert (await _row(fleet, rid))["status"] == "ACTIVE"
    async with fleet.srv.app.state.pool.acquire() as conn:
        await service.on_session_ended(conn, reservation_uuid=uuid.UUID(rid), now=datetime.now(UTC))
    assert (await _row(fleet, rid))["status"] == "FULFILLED"


async def test_a_reconnecting_charger_is_told_what_holds_and_what_does_not(fleet: Fleet) -> None:
    """CancelReservation that never arrived (the charger was offline) is sent when it
    reconnects; a hold it lost in a reboot is sent again."""
    sim = fleet.sims["CP-A"]
    first, second = await fleet.driver(1), await fleet.driver(2)
    r = await fleet.reserve(first["access_token"], fleet.connector("CP-A", 1))
    cancelled = r.json()["reservation_id"]
    r = await fleet.reserve(second["access_token"], fleet.connector("CP-A", 2))
    kept = r.json()["reservation_id"]
    await sim.wait_status(2, "Reserved", 5)
    sim.stop_answering("CancelReservation")
    r = await fleet.http.delete(
        f"/v1/reservations/{cancelled}", headers=auth(first["access_token"])
    )
    assert r.status_code == 200
    assert (await _row(fleet, cancelled))["charger_released_at"] is None  # no worker ran
    sim.resume_answering()

    sim.connectors[2].clear_reservation()  # the reboot lost it
    sim.connectors[2].status = "Available"
    sim.drop_connection()  # reconnects at once (fast_sim back-off)
    charger_id = await fleet.db.fetchval(
        "SELECT charger_id FROM chargers WHERE charge_point_id = 'CP-A'"
    )
    assert await eventually(lambda: _resync_queued(fleet), within_s=5)
    await sim.wait_online(10)
    outbox_id = await fleet.db.fetchval(
        "SELECT max(outbox_id) FROM outbox WHERE job = 'resync_charger_reservations'"
    )
    ctx = {
        "pool": fleet.srv.app.state.pool,
        "ocpp_commands": fleet.srv.app.state.ocpp_commands,
        "reservations_config": fleet.srv.app.state.reservations_config,
    }
    sent = await resync_charger_reservations(ctx, outbox_id, charger_id=str(charger_id))
    assert sent == {"reserved": 1, "released": 1}
    assert (await _row(fleet, cancelled))["charger_released_at"] is not None
    assert sim.connectors[2].reservation is not None
    assert (
        sim.connectors[2].reservation.reservation_id
        == (await _row(fleet, kept))["ocpp_reservation_id"]
    )


async def _resync_queued(fleet: Fleet) -> bool:
    return bool(
        await fleet.db.fetchval(
            "SELECT count(*) FROM outbox WHERE job = 'resync_charger_reservations'"
        )
    )
