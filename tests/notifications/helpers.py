"""Arranging sessions, samples and alerts straight in the database for the alert tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.core.settings import Settings
from app.notifications.alerts import queue_alert
from tests.factories import make_driver


async def make_charging_session(
    db: asyncpg.Connection,
    *,
    driver_id: str | uuid.UUID | None,
    site_name: str = "Alexanderplatz",
    timezone: str = "Europe/Berlin",
    started_at: datetime | None = None,
    status: str = "CHARGING",
    meter_start_wh: int = 1000,
) -> dict[str, Any]:
    """A site, a charger with one connector and an open session on it; returns their ids
    (and the session's `driver_id`)."""
    tag = uuid.uuid4().hex[:10]
    site_id = await db.fetchval(
        "INSERT INTO sites (external_id, name, lat, lon, timezone) "
        "VALUES ($1, $2, 52.52, 13.40, $3) RETURNING site_id",
        f"S-{tag}",
        site_name,
        timezone,
    )
    charger_id = await db.fetchval(
        "INSERT INTO chargers (site_id, charge_point_id, ocpp_password_hash) "
        "VALUES ($1, $2, 'x') RETURNING charger_id",
        site_id,
        f"CP-{tag}",
    )
    connector_id = await db.fetchval(
        "INSERT INTO connectors (charger_id, site_id, connector_no, type, power_w) "
        "VALUES ($1, $2, 1, 'CCS2', 150000) RETURNING connector_id",
        charger_id,
        site_id,
    )
    row = await db.fetchrow(
        """INSERT INTO charging_sessions (charger_id, connector_id, connector_no, id_tag,
               id_tag_status, driver_id, status, meter_start_wh, started_at)
           VALUES ($1, $2, 1, 'TAG', 'Accepted', $3, $4, $5, $6)
           RETURNING session_id, transaction_id""",
        charger_id,
        connector_id,
        None if driver_id is None else uuid.UUID(str(driver_id)),
        status,
        meter_start_wh,
        started_at or datetime.now(UTC),
    )
    assert row is not None
    return {
        "site_id": site_id,
        "charger_id": charger_id,
        "connector_id": connector_id,
        "session_id": row["session_id"],
        "transaction_id": row["transaction_id"],
        "meter_start_wh": meter_start_wh,
        "driver_id": driver_id,
    }


async def driver_with_session(
    db: asyncpg.Connection, settings: Settings, phone: str, **session: Any
) -> dict[str, Any]:
    """A new driver with `phone` (under "driver": their token and all) and an open session of
    theirs: `make_charging_session`'s ids, `session` its arguments."""
    driver = await make_driver(db, settings, phone=phone)
    arranged = await make_charging_session(db, driver_id=driver["driver_id"], **session)
    return {**arranged, "driver": driver}


async def queue_session_alert(
    db: asyncpg.Connection,
    session: dict[str, Any],
    kind: str,
    *,
    now: datetime | None = None,
    facts: dict[str, Any] | None = None,
) -> str | None:
    """`queue_alert` of `kind` for `session` and its driver (now, unless told)."""
    return await queue_alert(
        db,
        kind=kind,
        driver_id=session["driver_id"],
        now=now or datetime.now(UTC),
        session_id=session["session_id"],
        facts=facts,
    )


async def queue_started(db: asyncpg.Connection, sessions: list[dict[str, Any]]) -> list[str | None]:
    """A `session_started` alert for each session, all in one transaction; what each returned."""
    async with db.transaction():
        return [await queue_session_alert(db, s, "session_started") for s in sessions]


async def add_sample(
    db: asyncpg.Connection,
    session: dict[str, Any],
    *,
    at: datetime,
    energy_wh: float | None = None,
    power_w: float | None = None,
    soc: float | None = None,
) -> None:
    """A MeterValues instant (energy delivered in this session, power, SoC), stored as the
    OCPP handlers store it, and the session's live state updated to it."""
    rows: list[tuple[str, float, str]] = []
    if energy_wh is not None:
        rows.append(("Energy.Active.Import.Register", session["meter_start_wh"] + energy_wh, "Wh"))
    if power_w is not None:
        rows.append(("Power.Active.Import", power_w, "W"))
    if soc is not None:
        rows.append(("SoC", soc, "Percent"))
    for measurand, value, unit in rows:
        await db.execute(
            """INSERT INTO meter_samples (charger_id, connector_no, transaction_id, at,
                   measurand, value, unit) VALUES ($1, 1, $2, $3, $4, $5, $6)""",
            session["charger_id"],
            session["transaction_id"],
            at,
            measurand,
            value,
            unit,
        )
    await db.execute(
        """UPDATE charging_sessions SET energy_wh = COALESCE($2, energy_wh),
               power_w = COALESCE($3, power_w), soc_percent = COALESCE($4, soc_percent),
               last_meter_at = $5
           WHERE session_id = $1""",
        session["session_id"],
        None if energy_wh is None else int(energy_wh),
        None if power_w is None else int(power_w),
        soc,
        at,
    )


async def notifications_of(db: asyncpg.Connection, session_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        """SELECT n.*, m.message_id, m.status AS message_status, m.body AS message_body
           FROM notifications n LEFT JOIN sms_messages m ON m.notification_id = n.notification_id
           WHERE n.session_id = $1 ORDER BY n.created_at, n.kind""",
        session_id,
    )
    return rows
