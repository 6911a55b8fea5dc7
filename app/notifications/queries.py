"""Typed functions over `sql/queries/notifications.sql` (one per block)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from app.core.sql import Executor, execute, fetch_all, fetch_one, fetch_val
from app.notifications.schemas import DevSms


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
    charging_ended_at: datetime | None
    tariff_id: uuid.UUID | None
    tariff_version: int | None
    currency: str | None
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


class ClaimedMessage(msgspec.Struct, frozen=True):
    message_id: uuid.UUID
    to_phone: str
    driver_id: uuid.UUID | None
    purpose: str
    body: str
    redacted_body: str | None
    expires_at: datetime | None
    attempts: int
    created_at: datetime
    notification_id: uuid.UUID | None
    send_after: datetime | None
    transient_failures: int
    in_doubt: bool
    opted_out: bool
    alerts_off: bool


class MessageState(msgspec.Struct, frozen=True):
    status: str
    lease_until: datetime | None
    send_after: datetime | None


async def claim_message(
    db: Executor, *, message_id: uuid.UUID, lease_until: datetime, now: datetime
) -> ClaimedMessage | None:
    return await fetch_one(
        db, "notifications.claim_message", ClaimedMessage, message_id, lease_until, now
    )


async def message_state(db: Executor, *, message_id: uuid.UUID) -> MessageState | None:
    return await fetch_one(db, "notifications.message_state", MessageState, message_id)


async def defer_message(
    db: Executor, *, message_id: uuid.UUID, send_after: datetime, now: datetime
) -> int:
    return await execute(db, "notifications.defer_message", message_id, send_after, now)


async def release_message(
    db: Executor,
    *,
    message_id: uuid.UUID,
    code: int | None,
    message: str,
    now: datetime,
    send_after: datetime,
) -> int:
    return await execute(
        db, "notifications.release_message", message_id, code, message, now, send_after
    )


async def mark_sent_done(
    db: Executor,
    *,
    message_id: uuid.UUID,
    provider: str,
    provider_sid: str,
    now: datetime,
    redact: bool,
    outbox_id: int,
) -> int:
    return await execute(
        db,
        "notifications.mark_sent_done",
        message_id,
        provider,
        provider_sid,
        now,
        redact,
        outbox_id,
    )


async def mark_suppressed(
    db: Executor, *, message_id: uuid.UUID, code: int | None, message: str, now: datetime
) -> int:
    return await execute(db, "notifications.mark_suppressed", message_id, code, message, now)


class PhoneOwner(msgspec.Struct, frozen=True):
    driver_id: uuid.UUID
    locale: str | None
    phone: str


class LiveSession(msgspec.Struct, frozen=True):
    session_id: uuid.UUID
    energy_wh: int
    soc_percent: float | None
    currency: str | None
    site_name: str
    timezone: str


class NotificationRow(msgspec.Struct, frozen=True):
    notification_id: str
    kind: str
    session_id: str | None
    reservation_id: str | None
    body: str
    status: str
    created_at: datetime
    sent_at: datetime | None


async def apply_status_callback(
    db: Executor,
    *,
    message_id: uuid.UUID | None,
    provider_sid: str,
    status: str,
    error_code: int | None,
    now: datetime,
) -> bool:
    changed = await fetch_val(
        db,
        "notifications.apply_status_callback",
        message_id,
        provider_sid,
        status,
        error_code,
        now,
    )
    return changed is not None


async def driver_by_phone(db: Executor, *, phone: str) -> PhoneOwner | None:
    return await fetch_one(db, "notifications.driver_by_phone", PhoneOwner, phone)


async def live_session_of_driver(db: Executor, *, driver_id: uuid.UUID) -> LiveSession | None:
    return await fetch_one(db, "notifications.live_session_of_driver", LiveSession, driver_id)


async def driver_notifications(
    db: Executor,
    *,
    driver_id: uuid.UUID,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[NotificationRow]:
    return await fetch_all(
        db,
        "notifications.driver_notifications",
        NotificationRow,
        driver_id,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )


class SessionRef(msgspec.Struct, frozen=True):
    session_id: uuid.UUID


class ExpiringReservation(msgspec.Struct, frozen=True):
    reservation_id: uuid.UUID
    driver_id: uuid.UUID
    expires_at: datetime
    site_name: str
    timezone: str


async def reservations_expiring(
    db: Executor, *, now: datetime, lead_s: float, limit: int
) -> list[ExpiringReservation]:
    return await fetch_all(
        db, "notifications.reservations_expiring", ExpiringReservation, now, lead_s, limit
    )


async def sessions_to_reevaluate(
    db: Executor, *, now: datetime, idle_s: float, quiet_s: float, limit: int
) -> list[uuid.UUID]:
    rows = await fetch_all(
        db, "notifications.sessions_to_reevaluate", SessionRef, now, idle_s, quiet_s, limit
    )
    return [r.session_id for r in rows]


class StuckMessage(msgspec.Struct, frozen=True):
    message_id: uuid.UUID
    outbox_id: int


async def stuck_messages(
    db: Executor, *, now: datetime, queued_for_s: float, slot_missed_s: float, limit: int
) -> list[StuckMessage]:
    return await fetch_all(
        db, "notifications.stuck_messages", StuckMessage, now, queued_for_s, limit, slot_missed_s
    )


class DueMessage(ClaimedMessage, frozen=True):
    outbox_id: int | None


async def claim_due_messages(
    db: Executor, *, limit: int, lease_until: datetime, now: datetime
) -> list[DueMessage]:
    return await fetch_all(
        db, "notifications.claim_due_messages", DueMessage, limit, lease_until, now
    )


async def insert_message(
    db: Executor,
    *,
    to_phone: str,
    driver_id: uuid.UUID | None,
    purpose: str,
    body: str,
    redacted_body: str | None,
    expires_at: datetime | None,
    now: datetime,
) -> uuid.UUID:
    value = await fetch_val(
        db,
        "notifications.insert_message",
        to_phone,
        driver_id,
        purpose,
        body,
        redacted_body,
        expires_at,
        now,
    )
    return uuid.UUID(str(value))


async def recent_sink_messages(db: Executor, *, to: str | None, limit: int) -> list[DevSms]:
    return await fetch_all(db, "notifications.recent_sink_messages", DevSms, to, limit)
