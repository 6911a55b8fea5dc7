"""Queueing SMS through the transactional outbox, choosing the sender, the demo listing.

`queue_sms` writes the message and its outbox row in the caller's transaction: a rollback
drops both, a commit makes the send certain (the relay re-enqueues whatever Redis lost).
Right after the commit the API also enqueues the job itself (`enqueue_now`), so a code
does not wait for the relay's next sweep; the outbox's shared job id (`app/core/outbox.py`)
makes that a no-op twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Literal, Protocol

import asyncpg
import msgspec
from redis.asyncio import Redis

from app.core import outbox
from app.core.db import Connection
from app.core.settings import Settings
from app.notifications import queries
from app.notifications.schemas import DevSmsPage
from app.notifications.sink import SmsSink
from app.notifications.twilio import SentSms, TwilioSms

log = logging.getLogger("app.notifications")
SEND_SMS_JOB = "send_sms"


class SmsSender(Protocol):
    name: str

    async def send(
        self,
        to: str,
        body: str,
        *,
        status_callback: str | None = None,
        validity_period_s: int | None = None,
    ) -> SentSms: ...

    async def find_sent(self, to: str, body: str, *, since: datetime) -> SentSms | None: ...

    async def aclose(self) -> None: ...


class QueuedSms(msgspec.Struct, frozen=True):
    message_id: str
    outbox_id: int


def sender_kind(settings: Settings) -> Literal["twilio", "sink", "none"]:
    """Twilio when configured; the printing sink in demo mode only; otherwise nothing
    (messages then fail loudly instead of vanishing)."""
    if settings.twilio_configured:
        return "twilio"
    if settings.app_demo:
        return "sink"
    return "none"


def build_sender(settings: Settings) -> SmsSender | None:
    kind = sender_kind(settings)
    if kind == "twilio":
        return TwilioSms.from_settings(settings)
    if kind == "sink":
        return SmsSink()
    return None


async def queue_sms(
    db: Connection,
    *,
    to: str,
    body: str,
    purpose: str,
    now: datetime,
    driver_id: str | None = None,
    redacted_body: str | None = None,
    expires_at: datetime | None = None,
) -> QueuedSms:
    """Write the message and its `send_sms` outbox row in the caller's transaction.
    With `redacted_body`, the body is a secret: it is replaced once sent or expired."""
    message_id = await queries.insert_message(
        db,
        to_phone=to,
        driver_id=uuid.UUID(driver_id) if driver_id else None,
        purpose=purpose,
        body=body,
        redacted_body=redacted_body,
        expires_at=expires_at,
        now=now,
    )
    outbox_id = await outbox.enqueue(
        db, job=SEND_SMS_JOB, args={"message_id": str(message_id)}, dedupe_key=f"sms:{message_id}"
    )
    assert outbox_id is not None  # the dedupe key names a message created just now
    return QueuedSms(message_id=str(message_id), outbox_id=outbox_id)


async def enqueue_now(
    redis: Redis, pool: asyncpg.Pool, settings: Settings, queued: list[QueuedSms]
) -> None:
    """Best effort, after the commit: hand the send_sms jobs to arq at once (see
    `app.core.outbox.enqueue_now`; the relay covers any failure)."""
    await outbox.enqueue_now(
        redis,
        pool,
        settings,
        [(q.outbox_id, SEND_SMS_JOB, {"message_id": q.message_id}) for q in queued],
    )


async def recent_sink_messages(db: Connection, *, to: str | None, limit: int) -> DevSmsPage:
    return DevSmsPage(items=await queries.recent_sink_messages(db, to=to, limit=limit))
