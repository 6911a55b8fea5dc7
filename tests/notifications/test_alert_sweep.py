"""The alert sweep (cron): alerts that come due with time — a reservation ending in 5 min,
a full car idle long enough while its charger says nothing more. Safe to run twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.core.clock import FixedClock
from app.core.settings import Settings
from app.notifications.tasks import alert_sweep
from tests.factories import make_driver
from tests.notifications.helpers import (
    add_sample,
    driver_with_session,
    make_charging_session,
    notifications_of,
)


async def hold(
    db: asyncpg.Connection, settings: Settings, phone: str, *, began: datetime, ends: datetime
) -> uuid.UUID:
    """A driver holding a connector of their own until `ends`."""
    driver = await make_driver(db, settings, phone=phone)
    place = await make_charging_session(db, driver_id=None, site_name="Hbf Nord")
    reservation_id: uuid.UUID = await db.fetchval(
        """INSERT INTO reservations (driver_id, connector_id, charger_id, site_id,
               connector_no, kind, status, start_at, expires_at, began_at)
           VALUES ($1, $2, $3, $4, 1, 'hold', 'CONFIRMED', $5, $6, $5)
           RETURNING reservation_id""",
        uuid.UUID(driver["driver_id"]),
        place["connector_id"],
        place["charger_id"],
        place["site_id"],
        began,
        ends,
    )
    return reservation_id


async def test_a_reservation_ending_in_5_minutes_is_told_once(
    db: asyncpg.Connection, settings: Settings, job_ctx: dict[str, Any]
) -> None:
    now = datetime.now(UTC)
    m = timedelta(minutes=1)
    soon = await hold(db, settings, "+447700900123", began=now - 11 * m, ends=now + 4 * m)
    later = await hold(db, settings, "+447700900125", began=now - 6 * m, ends=now + 9 * m)
    job_ctx["clock"] = FixedClock(now)
    assert (await alert_sweep(job_ctx))["reservations"] == 1
    assert (await alert_sweep(job_ctx))["reservations"] == 0  # twice: once
    told = await db.fetch("SELECT reservation_id, body FROM notifications")
    assert [r["reservation_id"] for r in told] == [soon]
    assert told[0]["body"].startswith("Voltway: your reservation at Hbf Nord ends at ")
    assert later not in {r["reservation_id"] for r in told}


async def test_a_full_car_gone_quiet_completes_from_the_sweep(
    db: asyncpg.Connection, settings: Settings, job_ctx: dict[str, Any]
) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    session = await driver_with_session(db, settings, "+447700900124", started_at=t0)
    await db.execute(
        "INSERT INTO notifications (driver_id, kind, session_id, body, locale, status, created_at) "
        "VALUES ($1::uuid, 'session_started', $2, 'x', 'en', 'queued', $3), "
        "       ($1::uuid, 'soc_80', $2, 'x', 'en', 'queued', $3)",
        session["driver_id"],
        session["session_id"],
        t0,
    )
    full_at = datetime.now(UTC) - timedelta(minutes=12)
    await add_sample(
        db, session, at=full_at - timedelta(minutes=1), energy_wh=50_000, power_w=30_000, soc=97
    )
    await add_sample(db, session, at=full_at, energy_wh=50_100, power_w=0, soc=97)
    # the charger said SuspendedEV (charging_ended_at set) and then nothing for 12 minutes
    await db.execute(
        "UPDATE charging_sessions SET status = 'SUSPENDED', charging_ended_at = $2 "
        "WHERE session_id = $1",
        session["session_id"],
        full_at,
    )
    assert (await alert_sweep(job_ctx))["sessions"] == 1
    kinds = [r["kind"] for r in await notifications_of(db, session["session_id"])]
    assert "session_complete" in kinds
    assert (await alert_sweep(job_ctx))["sessions"] == 0  # complete: not looked at again
