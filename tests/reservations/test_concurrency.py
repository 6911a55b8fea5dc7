"""Races: many drivers on one connector, overlapping slots inserted at once, one driver's
caps under concurrent requests — and the exclusion constraint itself refusing an overlap
that the application check cannot see."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tests.factories import auth, eventually
from tests.reservations.conftest import Fleet, running_worker

RACERS = 100


async def _drivers(fleet: Fleet, n: int, *, offset: int = 0) -> list[str]:
    return [(await fleet.driver(offset + i))["access_token"] for i in range(n)]


async def _race(fleet: Fleet, tokens: list[str], connector_id: str) -> list[httpx.Response]:
    return list(await asyncio.gather(*(fleet.reserve(t, connector_id) for t in tokens)))


async def _no_live_overlaps(db: asyncpg.Connection) -> int:
    """Pairs of live reservations of one connector whose ranges overlap (must be 0)."""
    return int(
        await db.fetchval(
            """SELECT count(*) FROM reservations a JOIN reservations b
                 ON a.connector_id = b.connector_id AND a.reservation_id < b.reservation_id
                WHERE a.status IN ('CONFIRMED', 'ACTIVE') AND b.status IN ('CONFIRMED', 'ACTIVE')
                  AND tstzrange(a.start_at, a.expires_at) && tstzrange(b.start_at, b.expires_at)"""
        )
    )


async def _races(fleet: Fleet, rounds: int) -> None:
    tokens = await _drivers(fleet, RACERS)
    connector_id = fleet.connector("CP-A", 1)
    sim = fleet.sims["CP-A"]
    async with running_worker(fleet.srv.settings):
        for round_no in range(rounds):
            answers = await _race(fleet, tokens, connector_id)
            codes = Counter(
                r.status_code if r.status_code != 409 else r.json()["code"] for r in answers
            )
            assert codes == {201: 1, "connector_unavailable": RACERS - 1}, (round_no, codes)
            assert await _no_live_overlaps(fleet.db) == 0
            [winner] = [
                (t, r) for t, r in zip(tokens, answers, strict=True) if r.status_code == 201
            ]
            await sim.wait_status(1, "Reserved", 5)
            r = await fleet.http.delete(
                f"/v1/reservations/{winner[1].json()['reservation_id']}", headers=auth(winner[0])
            )
            assert r.status_code == 200
            await sim.wait_status(1, "Available", 5)  # CancelReservation reached it
            random.shuffle(tokens)
    assert (
        await fleet.db.fetchval("SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'") == 0
    )
    assert await fleet.db.fetchval("SELECT count(*) FROM reservations") == rounds


@pytest.mark.timeout(240)  # ~3 s a round on this shared 2-core machine
async def test_100_drivers_on_one_connector_exactly_one_wins_10_times(fleet: Fleet) -> None:
    await _races(fleet, 10)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_100_drivers_on_one_connector_exactly_one_wins_100_times(fleet: Fleet) -> None:
    await _races(fleet, 100)


async def test_overlapping_future_slots_are_never_both_confirmed(fleet: Fleet) -> None:
    tokens = await _drivers(fleet, 60)
    connector_id = fleet.connector("CP-B", 1)
    base = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    rng = random.Random(11)
    bodies = [
        {
            "start_at": (base + timedelta(minutes=rng.randrange(0, 240, 5))).isoformat(),
            "duration_min": rng.choice([15, 30, 45, 60, 90]),
        }
        for _ in tokens
    ]
    answers = await asyncio.gather(
        *(fleet.reserve(t, connector_id, **b) for t, b in zip(tokens, bodies, strict=True))
    )
    won = [r.json() for r in answers if r.status_code == 201]
    lost = [r for r in answers if r.status_code != 201]
    assert won
    assert all(r.status_code == 409 and r.json()["code"] == "connector_unavailable" for r in lost)
    ranges = sorted(
        (datetime.fromisoformat(w["start_at"]), datetime.fromisoformat(w["expires_at"]))
        for w in won
    )
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert end <= start, ranges
    assert await _no_live_overlaps(fleet.db) == 0


async def test_the_exclusion_constraint_refuses_what_the_app_check_cannot_see(
    fleet: Fleet, db_url: str
) -> None:
    """A slot inserted by another transaction, not yet committed, is invisible to the
    application's overlap check: the service's INSERT waits on the constraint and, once the
    other commits, the constraint (not the check) refuses it → 409 connector_unavailable."""
    token = (await fleet.driver(1))["access_token"]
    other_driver = uuid.UUID((await fleet.driver(2))["driver_id"])
    connector_id = uuid.UUID(fleet.connector("CP-A", 2))
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    conn = await asyncpg.connect(db_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(
            """INSERT INTO reservations (driver_id, connector_id, charger_id, site_id,
                                         connector_no, kind, start_at, expires_at)
               SELECT $1, connector_id, charger_id, site_id, connector_no, 'slot', $3, $4
                 FROM connectors WHERE connector_id = $2""",
            other_driver,
            connector_id,
            start,
            start + timedelta(hours=1),
        )
        request = asyncio.create_task(
            fleet.slot(token, str(connector_id), start + timedelta(minutes=30), duration_min=60)
        )
        # the request is blocked on the constraint (its check saw nothing to refuse)
        assert await eventually(lambda: _waiting_on_a_lock(fleet.db), within_s=5)
        assert not request.done()
        await tx.commit()
        r = await request
    finally:
        await conn.close()
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "connector_unavailable"
    assert await fleet.db.fetchval("SELECT count(*) FROM reservations") == 1


async def _waiting_on_a_lock(db: asyncpg.Connection) -> bool:
    return bool(
        await db.fetchval(
            """SELECT count(*) > 0 FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock'
                  AND query LIKE 'INSERT INTO reservations%'"""
        )
    )


async def test_the_constraint_itself_refuses_an_overlap_written_by_plain_sql(
    fleet: Fleet,
) -> None:
    drivers = [uuid.UUID((await fleet.driver(i))["driver_id"]) for i in range(3)]
    connector_id = uuid.UUID(fleet.connector("CP-B", 2))
    start = datetime.now(UTC) + timedelta(hours=1)

    async def insert(
        driver_id: uuid.UUID,
        connector: uuid.UUID,
        start_at: datetime,
        expires_at: datetime,
        status: str = "CONFIRMED",
    ) -> None:
        await fleet.db.execute(
            """INSERT INTO reservations (driver_id, connector_id, charger_id, site_id,
                                         connector_no, kind, start_at, expires_at, status)
               SELECT $1, connector_id, charger_id, site_id, connector_no, 'slot', $3, $4, $5
                 FROM connectors WHERE connector_id = $2""",
            driver_id,
            connector,
            start_at,
            expires_at,
            status,
        )

    await insert(drivers[0], connector_id, start, start + timedelta(hours=1))
    with pytest.raises(asyncpg.ExclusionViolationError) as caught:
        await insert(
            drivers[1], connector_id, start + timedelta(minutes=59), start + timedelta(hours=2)
        )
    assert caught.value.constraint_name == "reservations_no_double_booking"
    # over: CANCELLED/EXPIRED/MOVED/FULFILLED rows do not hold the time
    await insert(drivers[1], connector_id, start, start + timedelta(hours=1), "CANCELLED")
    # one driver cannot hold two connectors at the same time either
    other_connector = uuid.UUID(fleet.connector("CP-A", 1))
    with pytest.raises(asyncpg.ExclusionViolationError) as caught:
        await insert(
            drivers[0], other_connector, start + timedelta(minutes=30), start + timedelta(hours=1)
        )
    assert caught.value.constraint_name == "reservations_driver_one_at_a_time"


async def test_one_drivers_concurrent_holds_get_one_connector(fleet: Fleet) -> None:
    token = (await fleet.driver())["access_token"]
    connectors = [fleet.connector(cp, no) for cp, no in fleet.connectors]
    answers = await asyncio.gather(*(fleet.reserve(token, c) for c in connectors))
    codes = Counter(r.status_code if r.status_code != 409 else r.json()["code"] for r in answers)
    assert codes == {201: 1, "reservation_limit": len(connectors) - 1}, codes


async def test_one_drivers_concurrent_future_slots_stop_at_three(fleet: Fleet) -> None:
    token = (await fleet.driver())["access_token"]
    base = datetime.now(UTC) + timedelta(hours=1)
    answers = await asyncio.gather(
        *(
            fleet.slot(
                token,
                fleet.connector("CP-A", 1 + i % 2),
                base + timedelta(hours=i),
                duration_min=30,
            )
            for i in range(8)
        )
    )
    codes = Counter(r.status_code if r.status_code != 409 else r.json()["code"] for r in answers)
    assert codes == {201: 3, "reservation_limit": 5}, codes
