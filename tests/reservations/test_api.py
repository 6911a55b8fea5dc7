"""`/v1/reservations` through real HTTP, with simulated chargers answering ReserveNow."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from app.sim.state import Reservation as SimReservation
from tests.factories import all_pages, auth, eventually
from tests.reservations.conftest import Fleet, running_worker


async def _row(fleet: Fleet, reservation_id: str) -> dict[str, object]:
    row = await fleet.db.fetchrow(
        "SELECT * FROM reservations WHERE reservation_id = $1", uuid.UUID(reservation_id)
    )
    assert row is not None
    return dict(row)


def _refused(r: httpx.Response, code: str, *case: object) -> None:
    """A 409 with this problem `code` (`case` says which, when it fails)."""
    assert r.status_code == 409, (*case, r.text)
    assert r.json()["code"] == code, (*case, r.text)


async def test_a_hold_now_reserves_the_connector_at_the_charger_and_in_search(
    fleet: Fleet,
) -> None:
    driver = await fleet.driver()
    connector_id = fleet.connector("CP-A", 1)
    before = datetime.now(UTC)
    r = await fleet.reserve(driver["access_token"], connector_id)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "CONFIRMED"
    assert body["connector_id"] == connector_id
    assert body["site_id"] == fleet.site_id
    assert body["moved_to"] is None
    assert body["kind"] == "hold"
    start = datetime.fromisoformat(body["start_at"])
    expires = datetime.fromisoformat(body["expires_at"])
    assert before - timedelta(seconds=1) <= start <= datetime.now(UTC)
    assert expires - start == timedelta(minutes=15)

    # the charger got ReserveNow with our integer id, the expiry and the driver's idTag
    row = await _row(fleet, body["reservation_id"])
    id_tag = await fleet.db.fetchval(
        "SELECT id_tag FROM drivers WHERE driver_id = $1", uuid.UUID(driver["driver_id"])
    )
    sim = fleet.sims["CP-A"]
    [(_, payload)] = [c for c in sim.calls_received if c[0] == "ReserveNow"]
    assert payload["connector_id"] == 1
    assert payload["id_tag"] == id_tag
    assert payload["reservation_id"] == row["ocpp_reservation_id"]
    assert datetime.fromisoformat(payload["expiry_date"].replace("Z", "+00:00")) == expires
    await sim.wait_status(1, "Reserved", 5)

    # everyone else sees it RESERVED in nearby search
    assert await fleet.status_of(connector_id) == "RESERVED"
    assert await eventually(lambda: _shows(fleet, connector_id, "RESERVED"))


async def _shows(fleet: Fleet, connector_id: str, status: str) -> bool:
    return await fleet.nearby_status(connector_id) == status


async def test_get_list_and_another_drivers_reservation_is_404(fleet: Fleet) -> None:
    owner, other = await fleet.driver(1), await fleet.driver(2)
    r = await fleet.reserve(owner["access_token"], fleet.connector("CP-A", 2))
    assert r.status_code == 201, r.text
    reservation = r.json()
    rid = reservation["reservation_id"]

    r = await fleet.http.get(f"/v1/reservations/{rid}", headers=auth(owner["access_token"]))
    assert r.status_code == 200
    assert r.json() == reservation
    r = await fleet.http.get("/v1/reservations", headers=auth(owner["access_token"]))
    assert r.status_code == 200
    assert r.json() == {"items": [reservation], "next_cursor": None}

    # another driver: 404 on read and on cancel, and nothing changes (BOLA)
    for method in ("GET", "DELETE"):
        r = await fleet.http.request(
            method, f"/v1/reservations/{rid}", headers=auth(other["access_token"])
        )
        assert r.status_code == 404, (method, r.text)
        assert r.json()["code"] == "not_found"
    r = await fleet.http.get("/v1/reservations", headers=auth(other["access_token"]))
    assert r.json()["items"] == []
    assert (await _row(fleet, rid))["status"] == "CONFIRMED"
    # ids that are not ours or not ids at all are simply not found
    for bad in (str(uuid.uuid4()), "not-a-uuid"):
        r = await fleet.http.get(f"/v1/reservations/{bad}", headers=auth(owner["access_token"]))
        assert r.status_code == 404
    # no token: 401
    assert (await fleet.http.get(f"/v1/reservations/{rid}")).status_code == 401


async def test_the_list_is_newest_first_with_a_cursor(fleet: Fleet) -> None:
    driver = await fleet.driver()
    start = datetime.now(UTC) + timedelta(hours=1)
    ids = []
    for i in range(3):
        r = await fleet.slot(
            driver["access_token"],
            fleet.connector("CP-B", 1),
            start + timedelta(hours=2 * i),
            duration_min=30,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["reservation_id"])
    items = await all_pages(fleet.http, "/v1/reservations", headers=auth(driver["access_token"]))
    assert [item["reservation_id"] for item in items] == ids[::-1]
    r = await fleet.http.get(
        "/v1/reservations", params={"cursor": "nope"}, headers=auth(driver["access_token"])
    )
    assert r.status_code == 422


async def test_cancel_frees_the_connector_and_tells_the_charger(fleet: Fleet) -> None:
    driver = await fleet.driver()
    connector_id = fleet.connector("CP-A", 1)
    r = await fleet.reserve(driver["access_token"], connector_id)
    assert r.status_code == 201, r.text
    rid = r.json()["reservation_id"]
    sim = fleet.sims["CP-A"]
    await sim.wait_status(1, "Reserved", 5)
    async with running_worker(fleet.srv.settings):
        r = await fleet.http.delete(f"/v1/reservations/{rid}", headers=auth(driver["access_token"]))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "CANCELLED"
        assert r.json()["cancel_reason"] == "driver"
        # free in search at once, and the charger receives CancelReservation
        assert await fleet.status_of(connector_id) == "AVAILABLE"
        assert await eventually(lambda: _shows(fleet, connector_id, "AVAILABLE"))
        await sim.wait_status(1, "Available", 5)
        row = await _row(fleet, rid)
        assert ("CancelReservation", {"reservation_id": row["ocpp_reservation_id"]}) in (
            sim.calls_received
        )
        assert await eventually(lambda: _released(fleet, rid), within_s=5)
    # cancelling again answers the same; a cancelled reservation stays cancelled
    r = await fleet.http.delete(f"/v1/reservations/{rid}", headers=auth(driver["access_token"]))
    assert r.status_code == 200
    assert r.json()["status"] == "CANCELLED"
    # and the connector can be held again by someone else
    other = await fleet.driver(7)
    r = await fleet.reserve(other["access_token"], connector_id)
    assert r.status_code == 201, r.text


async def _released(fleet: Fleet, rid: str) -> bool:
    return (await _row(fleet, rid))["charger_released_at"] is not None


async def test_an_idempotency_key_replays_the_first_answer(fleet: Fleet) -> None:
    driver = await fleet.driver()
    key = {"Idempotency-Key": "resv-1"}
    first = await fleet.reserve(driver["access_token"], fleet.connector("CP-B", 2), headers=key)
    assert first.status_code == 201, first.text
    again = await fleet.reserve(driver["access_token"], fleet.connector("CP-B", 2), headers=key)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert await fleet.db.fetchval("SELECT count(*) FROM reservations") == 1
    assert len([c for c in fleet.sims["CP-B"].calls_received if c[0] == "ReserveNow"]) == 1
    # the same key with another body → 422
    other = await fleet.reserve(driver["access_token"], fleet.connector("CP-A", 2), headers=key)
    assert other.status_code == 422


async def test_a_future_slot_is_sized_from_the_vehicle_and_begins_at_the_charger(
    fleet: Fleet,
) -> None:
    driver = await fleet.driver()
    token = driver["access_token"]
    connector_id = fleet.connector("CP-A", 1)
    # without a vehicle: 60 minutes (times are whole seconds)
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    r = await fleet.slot(token, connector_id, start)
    assert r.status_code == 201, r.text
    slot = r.json()
    assert slot["kind"] == "slot"
    assert datetime.fromisoformat(slot["expires_at"]) - start == timedelta(minutes=60)
    # with a vehicle: 60 % of 77 kWh at min(150, 135) kW = 20.5 → 21 minutes
    r = await fleet.http.patch(
        "/v1/me",
        json={
            "vehicle": {
                "battery_kwh": 77,
                "max_ac_kw": 11,
                "max_dc_kw": 135,
                "connector_types": ["CCS2", "TYPE2"],
            }
        },
        headers=auth(token),
    )
    assert r.status_code == 200, r.text
    later = start + timedelta(hours=2)
    r = await fleet.slot(token, connector_id, later)
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["expires_at"]) - later == timedelta(minutes=21)
    # at the TYPE2 connector the on-board charger decides: 46.2 kWh at 11 kW → 252 minutes
    evening = start + timedelta(hours=6)
    r = await fleet.slot(token, fleet.connector("CP-A", 2), evening)
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["expires_at"]) - evening == timedelta(minutes=252)

    # nothing reached the charger yet; the connector stays free for walk-ins now
    assert not [c for c in fleet.sims["CP-A"].calls_received if c[0] == "ReserveNow"]
    assert await fleet.status_of(connector_id) == "AVAILABLE"


async def test_a_slot_that_begins_reserves_the_connector(fleet: Fleet) -> None:
    driver = await fleet.driver()
    connector_id = fleet.connector("CP-B", 1)
    start = datetime.now(UTC) + timedelta(seconds=1)
    r = await fleet.slot(driver["access_token"], connector_id, start, duration_min=20)
    assert r.status_code == 201, r.text
    rid = r.json()["reservation_id"]
    async with running_worker(fleet.srv.settings):
        sim = fleet.sims["CP-B"]
        # the relay hands the begin job to arq at its available_at (sweeps every 5 s)
        await sim.wait_status(1, "Reserved", 20)
        row = await _row(fleet, rid)
        assert row["began_at"] is not None
        assert await eventually(lambda: _reserved_at_charger(fleet, rid), within_s=5)
        assert await fleet.status_of(connector_id) == "RESERVED"
    # a slot that has begun counts as the driver's live hold
    r = await fleet.reserve(driver["access_token"], fleet.connector("CP-A", 1))
    _refused(r, "reservation_limit")


async def _reserved_at_charger(fleet: Fleet, rid: str) -> bool:
    return (await _row(fleet, rid))["charger_reserved_at"] is not None


async def test_invalid_requests_are_422_and_unknown_connectors_404(fleet: Fleet) -> None:
    token = (await fleet.driver())["access_token"]
    cid = fleet.connector("CP-A", 1)
    now = datetime.now(UTC)
    cases = [
        ({"connector_id": cid, "duration_min": 31}, "duration_min"),
        ({"connector_id": cid, "duration_min": 0}, "duration_min"),
        ({"connector_id": cid, "start_at": (now + timedelta(hours=25)).isoformat()}, "start_at"),
        ({"connector_id": cid, "start_at": (now - timedelta(minutes=5)).isoformat()}, "start_at"),
        ({"connector_id": cid, "start_at": "2026-11-24T12:00:00"}, "start_at"),  # no offset
        ({"connector_id": cid, "colour": "red"}, "colour"),
        ({"connector_id": "nope"}, "connector_id"),
        ({}, "connector_id"),
    ]
    for body, field in cases:
        r = await fleet.http.post("/v1/reservations", json=body, headers=auth(token))
        assert r.status_code == 422, (body, r.text)
        problem = r.json()
        assert problem["code"] == "validation_failed"
        assert field in [e["field"] for e in problem["errors"]], (body, problem)
    r = await fleet.reserve(token, str(uuid.uuid4()))
    assert r.status_code == 404
    assert r.json()["code"] == "connector_not_found"
    assert await fleet.db.fetchval("SELECT count(*) FROM reservations") == 0


async def test_the_per_driver_caps(fleet: Fleet) -> None:
    token = (await fleet.driver())["access_token"]
    assert (await fleet.reserve(token, fleet.connector("CP-A", 1))).status_code == 201
    r = await fleet.reserve(token, fleet.connector("CP-B", 1))
    _refused(r, "reservation_limit")
    # future slots count separately: three, not a fourth
    start = datetime.now(UTC) + timedelta(hours=2)
    for i in range(3):
        r = await fleet.slot(
            token, fleet.connector("CP-B", 1), start + timedelta(hours=i), duration_min=30
        )
        assert r.status_code == 201, r.text
    r = await fleet.slot(
        token, fleet.connector("CP-B", 2), start + timedelta(hours=10), duration_min=30
    )
    _refused(r, "reservation_limit")


async def test_one_driver_cannot_be_in_two_places_at_once(fleet: Fleet) -> None:
    token = (await fleet.driver())["access_token"]
    start = datetime.now(UTC) + timedelta(hours=2)
    r = await fleet.slot(token, fleet.connector("CP-A", 1), start, duration_min=60)
    assert r.status_code == 201, r.text
    r = await fleet.slot(
        token, fleet.connector("CP-B", 1), start + timedelta(minutes=30), duration_min=60
    )
    _refused(r, "reservation_limit")


async def test_overlap_offline_and_occupied_are_connector_unavailable(fleet: Fleet) -> None:
    first, second = (await fleet.driver(1))["access_token"], (await fleet.driver(2))["access_token"]
    start = datetime.now(UTC) + timedelta(hours=2)
    r = await fleet.slot(first, fleet.connector("CP-A", 1), start, duration_min=60)
    assert r.status_code == 201, r.text
    r = await fleet.slot(
        second, fleet.connector("CP-A", 1), start + timedelta(minutes=59), duration_min=10
    )
    _refused(r, "connector_unavailable")
    # back to back is fine ([start, end) ranges)
    r = await fleet.slot(
        second, fleet.connector("CP-A", 1), start + timedelta(minutes=60), duration_min=10
    )
    assert r.status_code == 201, r.text

    # occupied now (the charger says so): no hold
    await fleet.sims["CP-B"].set_status(2, "Charging")
    assert await eventually(lambda: _status_is(fleet, fleet.connector("CP-B", 2), "OCCUPIED"))
    third = (await fleet.driver(3))["access_token"]
    r = await fleet.reserve(third, fleet.connector("CP-B", 2))
    _refused(r, "connector_unavailable")

    # offline / quarantined charger: neither a hold nor a slot
    for state in ("offline", "quarantined"):
        await fleet.db.execute(
            """UPDATE charger_connectivity SET state = $1
                WHERE charger_id = (SELECT charger_id FROM chargers WHERE charge_point_id = 'CP-C')""",
            state,
        )
        for extra in ({}, {"start_at": (start + timedelta(hours=5)).isoformat()}):
            r = await fleet.reserve(third, fleet.connector("CP-C", 1), **extra)
            _refused(r, "connector_unavailable", state, extra)


async def _status_is(fleet: Fleet, connector_id: str, status: str) -> bool:
    return await fleet.status_of(connector_id) == status


async def test_a_charger_that_refuses_keeps_nothing(fleet: Fleet) -> None:
    """Rejected / Occupied / Faulted / Unavailable / no answer → 409 and no row; the
    connector stays free and the next driver can hold it."""
    sim = fleet.sims["CP-A"]
    connector_id = fleet.connector("CP-A", 2)
    conn = sim.connectors[2]
    driver = (await fleet.driver(1))["access_token"]

    def reject() -> None:  # a connector the charger does not know: Rejected
        sim.connectors.pop(2)

    def occupied() -> None:
        sim.connectors[2] = conn
        conn.reservation = SimReservation(424242, "SOMEONE", None, None)

    def faulted() -> None:
        conn.reservation = None
        conn.status = "Faulted"

    def unavailable() -> None:
        conn.status = "Available"
        conn.inoperative = True

    def silent() -> None:
        conn.inoperative = False
        sim.stop_answering("ReserveNow")

    for arrange, answer in (
        (reject, "Rejected"),
        (occupied, "Occupied"),
        (faulted, "Faulted"),
        (unavailable, "Unavailable"),
        (silent, "Timeout"),
    ):
        arrange()
        r = await fleet.reserve(driver, connector_id)
        _refused(r, "connector_unavailable", answer)
        assert answer in r.json()["detail"]
        assert await fleet.db.fetchval("SELECT count(*) FROM reservations") == 0
        assert await fleet.status_of(connector_id) == "AVAILABLE"
    sim.resume_answering()
    r = await fleet.reserve(driver, connector_id)
    assert r.status_code == 201, r.text


async def test_a_hold_waiting_for_its_charger_is_invisible_and_refuses_competitors(
    fleet: Fleet,
) -> None:
    """While the charger has not answered, the hold is PENDING: counted by the constraints
    (a competitor is refused at once), shown nowhere (not to its driver, not in search)."""
    sim = fleet.sims["CP-B"]
    sim.stop_answering("ReserveNow")
    first, second = (await fleet.driver(1))["access_token"], (await fleet.driver(2))["access_token"]
    connector_id = fleet.connector("CP-B", 1)
    waiting = asyncio.create_task(fleet.reserve(first, connector_id))
    assert await eventually(lambda: _pending(fleet), within_s=5)
    r = await fleet.http.get("/v1/reservations", headers=auth(first))
    assert r.json()["items"] == []
    assert await fleet.status_of(connector_id) == "AVAILABLE"
    started = time.monotonic()
    r = await fleet.reserve(second, connector_id)
    _refused(r, "connector_unavailable")
    assert time.monotonic() - started < 0.9  # refused at once, not after the charger's timeout
    assert (await waiting).status_code == 409  # no answer within the timeout
    assert await fleet.db.fetchval("SELECT count(*) FROM reservations") == 0
    sim.resume_answering()


async def _pending(fleet: Fleet) -> bool:
    return bool(
        await fleet.db.fetchval("SELECT count(*) FROM reservations WHERE status = 'PENDING'")
    )


async def test_a_pending_hold_left_by_a_dead_process_is_swept(fleet: Fleet) -> None:
    from app.reservations.tasks import expire_reservations

    driver = (await fleet.driver())["driver_id"]
    await fleet.db.execute(
        """INSERT INTO reservations (driver_id, connector_id, charger_id, site_id, connector_no,
                                     kind, status, start_at, expires_at, began_at, created_at)
           SELECT $1, connector_id, charger_id, site_id, connector_no, 'hold', 'PENDING',
                  now() - interval '2 minutes', now() + interval '13 minutes',
                  now() - interval '2 minutes', now() - interval '2 minutes'
             FROM connectors WHERE connector_id = $2""",
        uuid.UUID(driver),
        uuid.UUID(fleet.connector("CP-A", 1)),
    )
    ctx = {
        "pool": fleet.srv.app.state.pool,
        "ocpp_commands": fleet.srv.app.state.ocpp_commands,
        "reservations_config": fleet.srv.app.state.reservations_config,
    }
    await expire_reservations(ctx)
    assert await fleet.db.fetchval("SELECT count(*) FROM reservations") == 0
    # the connector can be held again at once
    token = (await fleet.driver(3))["access_token"]
    assert (await fleet.reserve(token, fleet.connector("CP-A", 1))).status_code == 201
