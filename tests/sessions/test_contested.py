"""Contested starts (the database decides: one active session per driver, one start per
connector) and starts on a reserved connector (only its driver; the reservation becomes
ACTIVE, then FULFILLED)."""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.sessions.conftest import Site, charging_sim


async def test_one_driver_tapping_start_many_times_gets_one_session(world: Site) -> None:
    await world.connect(charging_sim(remote_start_plan=None))
    driver = await world.driver()
    answers = await asyncio.gather(*(world.start(driver, connector_no=1 + n % 2) for n in range(6)))
    codes = Counter(r.status_code for r in answers)
    assert codes[201] == 1, [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code != 201} <= {
        "session_active",
        "connector_unavailable",
    }
    active = await world.db.fetchval(
        "SELECT count(*) FROM charging_sessions WHERE driver_id = $1::uuid "
        "AND status NOT IN ('COMPLETED', 'FAILED')",
        driver["driver_id"],
    )
    assert active == 1
    holds = await world.db.fetchval(
        "SELECT count(*) FROM payments WHERE driver_id = $1::uuid", driver["driver_id"]
    )
    assert holds == 1  # the losers placed no hold


async def test_drivers_racing_for_one_connector_one_wins(world: Site) -> None:
    await world.connect(charging_sim(remote_start_plan=None))
    drivers = [await world.driver() for _ in range(5)]
    answers = await asyncio.gather(*(world.start(d, connector_no=1) for d in drivers))
    assert Counter(r.status_code for r in answers) == {201: 1, 409: 4}
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"connector_unavailable"}


async def test_a_reserved_connector_is_its_drivers_only(world: Site) -> None:
    sim = await world.connect(charging_sim(remote_start_plan=None))
    owner, other = await world.driver(), await world.driver()
    r = await world.http.post(
        "/v1/reservations", json={"connector_id": world.connectors[1]}, headers=owner["headers"]
    )
    assert r.status_code == 201, r.text
    reservation_id = r.json()["reservation_id"]

    r = await world.start(other)
    assert (r.status_code, r.json()["code"]) == (409, "connector_unavailable")
    r = await world.http.post(
        "/v1/sessions",
        json={"connector_id": world.connectors[2], "reservation_id": reservation_id},
        headers=owner["headers"],
    )
    assert (r.status_code, r.json()["code"]) == (404, "reservation_not_found")

    r = await world.http.post(
        "/v1/sessions",
        json={"connector_id": world.connectors[1], "reservation_id": reservation_id},
        headers=owner["headers"],
    )
    assert r.status_code == 201, r.text
    sid = r.json()["session_id"]
    view = await world.until(owner, sid, lambda v: v["status"] == "CHARGING")
    assert view["reservation_id"] == reservation_id

    async def reservation_status() -> str:
        r = await world.http.get(f"/v1/reservations/{reservation_id}", headers=owner["headers"])
        status: str = r.json()["status"]
        return status

    assert await reservation_status() == "ACTIVE"
    await sim.stop_transaction(1, reason="Local")
    await world.until(owner, sid, lambda v: v["status"] == "COMPLETED")
    assert await reservation_status() == "FULFILLED"


async def test_the_same_idempotency_key_starts_once(world: Site) -> None:
    await world.connect(charging_sim(remote_start_plan=None))
    driver = await world.driver()
    headers = {**driver["headers"], "Idempotency-Key": "tap-start-1"}
    body = {"connector_id": world.connectors[1]}
    answers = await asyncio.gather(
        *(world.http.post("/v1/sessions", json=body, headers=headers) for _ in range(5))
    )
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["session_id"] for r in answers}) == 1
    holds = await world.db.fetchval(
        "SELECT count(*) FROM payments WHERE driver_id = $1::uuid", driver["driver_id"]
    )
    assert holds == 1
    r = await world.http.post(
        "/v1/sessions", json={"connector_id": world.connectors[2]}, headers=headers
    )
    assert r.status_code == 422  # the same key with another body
