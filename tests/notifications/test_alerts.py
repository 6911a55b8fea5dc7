"""`queue_alert` and `session_changed` in the caller's transaction: once per kind and
session, suppressed for opted-out drivers, localised texts naming the site and figures."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.core.settings import Settings
from app.notifications.alerts import UnknownAlertKind, queue_alert, session_changed
from tests.factories import make_driver
from tests.notifications.helpers import (
    add_sample,
    driver_with_session,
    make_charging_session,
    notifications_of,
    queue_session_alert,
)

EN = "+447700900123"
DE = "+4915112345678"


async def test_queues_a_notification_a_message_and_an_outbox_row_once(
    db: asyncpg.Connection, settings: Settings
) -> None:
    session = await driver_with_session(db, settings, EN)
    now = datetime.now(UTC)
    facts = {"energy_wh": 32_450, "cost_minor": 1234, "currency": "EUR", "soc_percent": 80}
    async with db.transaction():
        first = await queue_session_alert(db, session, "soc_80", now=now, facts=facts)
        again = await queue_session_alert(db, session, "soc_80", now=now)
    assert first is not None
    assert again is None
    [row] = await notifications_of(db, session["session_id"])
    assert row["status"] == "queued"
    assert row["message_status"] == "queued"
    assert row["message_body"] == row["body"]
    assert "Alexanderplatz" in row["body"]
    assert "32.5 kWh" in row["body"]
    assert "€12.34 so far" in row["body"]
    jobs = await db.fetch("SELECT job, args FROM outbox WHERE job = 'send_sms'")
    assert [dict(j["args"]) for j in jobs] == [{"message_id": str(row["message_id"])}]


async def test_a_rolled_back_transaction_queues_nothing(
    db: asyncpg.Connection, settings: Settings
) -> None:
    session = await driver_with_session(db, settings, EN)

    async def change_that_fails() -> None:
        async with db.transaction():
            await queue_session_alert(db, session, "session_started")
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        await change_that_fails()
    assert await db.fetchval("SELECT count(*) FROM notifications") == 0
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


@pytest.mark.parametrize("how", ["stop", "sms_alerts_off"])
async def test_opted_out_drivers_get_a_suppressed_row_and_no_message(
    db: asyncpg.Connection, settings: Settings, how: str
) -> None:
    driver = await make_driver(db, settings, phone=EN)
    if how == "stop":
        await db.execute("INSERT INTO sms_opt_outs (phone, source) VALUES ($1, 'inbound')", EN)
    else:
        await db.execute(
            "UPDATE drivers SET sms_alerts = false WHERE driver_id = $1",
            uuid.UUID(driver["driver_id"]),
        )
    session = await make_charging_session(db, driver_id=driver["driver_id"])
    assert await queue_session_alert(db, session, "session_started") is None
    [row] = await notifications_of(db, session["session_id"])
    assert row["status"] == "suppressed"
    assert row["message_id"] is None
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


async def test_german_numbers_get_german_texts(db: asyncpg.Connection, settings: Settings) -> None:
    session = await driver_with_session(db, settings, DE, site_name="Rewe Mitte")
    facts = {"energy_wh": 41_000, "cost_minor": 1599, "currency": "EUR", "minutes": 9}
    await queue_session_alert(db, session, "ten_minutes_left", facts=facts)
    [row] = await notifications_of(db, session["session_id"])
    assert row["locale"] == "de"
    assert row["body"] == (
        "Voltway: noch etwa 9 Min. Laden an Rewe Mitte (41,0 kWh, 15,99 € bisher)."
    )


async def test_a_chosen_locale_beats_the_numbers_country(
    db: asyncpg.Connection, settings: Settings
) -> None:
    session = await driver_with_session(db, settings, DE)
    await db.execute(
        "UPDATE drivers SET locale = 'en' WHERE driver_id = $1", uuid.UUID(session["driver_id"])
    )
    await queue_session_alert(db, session, "session_started")
    [row] = await notifications_of(db, session["session_id"])
    assert row["body"].startswith("Voltway: charging started at Alexanderplatz")


async def test_reservation_kinds_are_once_per_reservation(
    db: asyncpg.Connection, settings: Settings
) -> None:
    driver = await make_driver(db, settings, phone=EN)
    reservation = uuid.uuid4()
    at = datetime(2026, 11, 24, 17, 45, tzinfo=UTC)
    results = [
        await queue_alert(
            db,
            kind="reservation_expiring",
            driver_id=driver["driver_id"],
            now=datetime.now(UTC),
            reservation_id=reservation,
            facts={"site_name": "Hbf", "timezone": "Europe/Berlin", "at": at},
        )
        for _ in range(3)
    ]
    assert results[0] is not None
    assert results[1:] == [None, None]
    body = await db.fetchval(
        "SELECT body FROM notifications WHERE reservation_id = $1", reservation
    )
    assert body == "Voltway: your reservation at Hbf ends at 18:45."


async def test_unknown_kinds_are_refused(db: asyncpg.Connection, settings: Settings) -> None:
    driver = await make_driver(db, settings, phone=EN)
    with pytest.raises(UnknownAlertKind):
        await queue_alert(db, kind="hello", driver_id=driver["driver_id"], now=datetime.now(UTC))


async def test_session_changed_queues_started_80_and_complete_in_order(
    db: asyncpg.Connection, settings: Settings
) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=1)
    session = await driver_with_session(db, settings, EN, started_at=t0)
    sid = session["session_id"]
    await session_changed(db, session_id=sid, now=t0 + timedelta(seconds=5))
    await add_sample(
        db, session, at=t0 + timedelta(minutes=10), energy_wh=10_000, power_w=50_000, soc=55
    )
    await session_changed(db, session_id=sid, now=t0 + timedelta(minutes=10))
    assert [r["kind"] for r in await notifications_of(db, sid)] == ["session_started"]
    await add_sample(
        db, session, at=t0 + timedelta(minutes=20), energy_wh=25_000, power_w=45_000, soc=81
    )
    await session_changed(db, session_id=sid, now=t0 + timedelta(minutes=20))
    await session_changed(db, session_id=sid, now=t0 + timedelta(minutes=20))  # twice: once
    await db.execute(
        "UPDATE charging_sessions SET status = 'COMPLETED', ended_at = $2 WHERE session_id = $1",
        sid,
        t0 + timedelta(minutes=30),
    )
    await session_changed(db, session_id=sid, now=t0 + timedelta(minutes=30))
    rows = await notifications_of(db, sid)
    assert [r["kind"] for r in rows] == ["session_started", "soc_80", "session_complete"]
    assert "81%" not in rows[1]["body"] or "Alexanderplatz" in rows[1]["body"]
    assert "25.0 kWh" in rows[2]["body"]
    assert all(r["message_status"] == "queued" for r in rows)


async def test_session_changed_for_a_session_without_a_driver_does_nothing(
    db: asyncpg.Connection,
) -> None:
    session = await make_charging_session(db, driver_id=None)
    await session_changed(db, session_id=session["session_id"], now=datetime.now(UTC))
    assert await db.fetchval("SELECT count(*) FROM notifications") == 0
