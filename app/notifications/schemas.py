"""Payloads of the notifications domain."""

from __future__ import annotations

from datetime import datetime

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
