"""Payloads of the notifications domain."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec


class DevSms(msgspec.Struct):
    message_id: str
    to_phone: str
    purpose: str
    body: str
    status: str
    created_at: datetime
    sent_at: datetime | None


class DevSmsPage(msgspec.Struct):
    items: list[DevSms]


NotificationKind = Literal[
    "session_started",
    "soc_80",
    "ten_minutes_left",
    "session_complete",
    "idle_fee_warning",
    "reservation_expiring",
    "reservation_moved",
    "reservation_cancelled",
    "hold_exhausted",
    "payment_failed",
]
NotificationStatus = Literal["queued", "sent", "delivered", "undelivered", "failed", "suppressed"]


class Notification(msgspec.Struct, kw_only=True):
    """An SMS alert the driver was sent, or would have been (`suppressed`)."""

    notification_id: str
    kind: NotificationKind
    session_id: str | None
    reservation_id: str | None
    body: str
    status: NotificationStatus
    """`suppressed`: the driver opted out (SMS STOP or `sms_alerts: false`); nothing
    reached Twilio."""
    created_at: datetime
    sent_at: datetime | None


class NotificationPage(msgspec.Struct, kw_only=True):
    items: list[Notification]
    next_cursor: str | None


class AlertAcknowledged(msgspec.Struct, kw_only=True):
    """An operator alert after `acknowledge` (a repeat answers the first acknowledgement)."""

    alert_id: int
    kind: str
    reason: str
    raised_at: datetime
    acknowledged_at: datetime
    acknowledged_by: str | None
    delivered_at: datetime | None
