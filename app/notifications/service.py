"""Queueing SMS through the transactional outbox, choosing the sender, the demo listing.

`queue_sms` writes the message and its outbox row in the caller's transaction: a rollback
drops both, a commit makes the send certain (the relay re-enqueues whatever Redis lost).
Right after the commit the API also enqueues the job itself (`enqueue_now`), so a code
does not wait for the relay's next sweep; the shared `_job_id` makes that a no-op twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Literal, Protocol

import asyncpg
import msgspec
from arq.connections import ArqRedis
from redis.asyncio import Redis

from app.core.db import Connection, to_structs
from app.core.settings import Settings
from app.core.sql import Q
from app.notifications.schemas import DevSms, DevSmsPage
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


def queue_name(settings: Settings) -> str:
    return f"{settings.redis_namespace}:arq:queue"


def job_id(settings: Settings, outbox_id: int) -> str:
    # The same id as the relay's (workers/outbox.py `outbox_job_id`, checked by a test), so
    # whichever enqueues second is a no-op; namespaced because arq's job keys are global.
    return f"{settings.redis_namespace}:outbox:{outbox_id}"


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
    message_id = await db.fetchval(
        Q("notifications.insert_message"),
        to,
        uuid.UUID(driver_id) if driver_id else None,
        purpose,
        body,
        redacted_body,
        expires_at,
        now,
    )
    outbox_id = await db.fetchval(
        Q("notifications.insert_outbox_job"),
        SEND_SMS_JOB,
        {"message_id": str(message_id)},
        f"sms:{message_id}",
    )
    return QueuedSms(message_id=str(message_id), outbox_id=int(outbox_id))


async def enqueue_now(
    redis: Redis, pool: asyncpg.Pool, settings: Settings, queued: list[QueuedSms]
) -> None:
    """Best effort, after the commit: hand the jobs to arq at once. On any failure the
    outbox relay enqueues them on its next sweep, so nothing is lost."""
    try:
        arq = ArqRedis(pool_or_conn=redis.connection_pool)
        for q in queued:
            job = await arq.enqueue_job(
                SEND_SMS_JOB,
                q.outbox_id,
                message_id=q.message_id,
                _job_id=job_id(settings, q.outbox_id),
                _queue_name=queue_name(settings),
            )
            if job is not None:  # None: arq already holds this job id; leave it to the relay
                await pool.execute(Q("notifications.mark_outbox_enqueued"), q.outbox_id)
    except Exception as exc:  # Redis or PostgreSQL away: the relay will do it
        log.warning("could not enqueue send_sms now (the outbox relay will): %r", exc)


async def recent_sink_messages(db: Connection, *, to: str | None, limit: int) -> DevSmsPage:
    rows = await db.fetch(Q("notifications.recent_sink_messages"), to, limit)
    return DevSmsPage(items=to_structs(rows, DevSms))
