"""Typed functions over `sql/queries/notifications.sql` (one per block)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from app.core.sql import Executor, fetch_all, fetch_one, fetch_val


class Recipient(msgspec.Struct, frozen=True):
    phone: str
    locale: str | None
    sms_alerts: bool
    opted_out: bool


class SessionForAlerts(msgspec.Struct, frozen=True):
    session_id: uuid.UUID
    driver_id: uuid.UUID | None
    status: str
    started_at: datetime
    ended_at: datetime | None
    energy_wh: int
    power_w: int | None
    soc_percent: float | None
    transaction_id: int
    meter_start_wh: int
    charger_id: uuid.UUID
    connector_no: int
    site_name: str
    timezone: str
    battery_wh: int | None
    sent: list[str]


class SessionSite(msgspec.Struct, frozen=True):
    site_name: str
    timezone: str


class SampleRow(msgspec.Struct, frozen=True):
    at: datetime
    energy_register_wh: float | None
    power_w: float | None
    soc_percent: float | None


async def alert_recipient(db: Executor, *, driver_id: uuid.UUID) -> Recipient | None:
    return await fetch_one(db, "notifications.alert_recipient", Recipient, driver_id)


async def insert_notification(
    db: Executor,
    *,
    driver_id: uuid.UUID,
    kind: str,
    session_id: uuid.UUID | None,
    reservation_id: uuid.UUID | None,
    body: str,
    locale: str,
    facts: dict[str, Any],
    status: str,
    now: datetime,
) -> uuid.UUID | None:
    value = await fetch_val(
        db,
        "notifications.insert_notification",
        driver_id,
        kind,
        session_id,
        reservation_id,
        body,
        locale,
        facts,
        status,
        now,
    )
    return None if value is None else uuid.UUID(str(value))


async def insert_alert_message(
    db: Executor,
    *,
    to_phone: str,
    driver_id: uuid.UUID,
    body: str,
    notification_id: uuid.UUID,
    now: datetime,
) -> uuid.UUID:
    value = await fetch_val(
        db, "notifications.insert_alert_message", to_phone, driver_id, body, notification_id, now
    )
    return uuid.UUID(str(value))


async def session_for_alerts(db: Executor, *, session_id: uuid.UUID) -> SessionForAlerts | None:
    return await fetch_one(db, "notifications.session_for_alerts", SessionForAlerts, session_id)


async def session_site(db: Executor, *, session_id: uuid.UUID) -> SessionSite | None:
    return await fetch_one(db, "notifications.session_site", SessionSite, session_id)


async def recent_samples(db: Executor, *, transaction_id: int, since: datetime) -> list[SampleRow]:
    return await fetch_all(db, "notifications.recent_samples", SampleRow, transaction_id, since)
