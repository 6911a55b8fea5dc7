"""The `send_sms` job (enqueued through the outbox) and its sender's life cycle.

arq runs a job at least once, and the outbox relay may enqueue it again, so the job takes
ids, reloads the row and decides from PostgreSQL alone:
- it leases the message (`queued` → `sending`, `lease_until`); a message already `sent`
  (or failed/expired) is never sent again, and a live lease means another worker has it;
- a worker killed mid-send leaves a lease that runs out, after which the message is sent
  again: at most one duplicate per kill, never a lost message;
- expired messages (an OTP past its 5 minutes) are not worth sending and are dropped;
- 21610 (STOP) remembers the opt-out and gives up; other refusals give up; transient
  failures go back to the queue and the job asks arq to retry later (`Retry`).
Each final state marks the outbox row done in the same transaction.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from arq import Retry

from app.core import outbox
from app.core.clock import Clock
from app.core.db import Connection
from app.core.settings import Settings
from app.core.sql import Q
from app.notifications.service import SmsSender, build_sender
from app.notifications.twilio import SmsOptedOut, SmsRejected, SmsUnavailable

log = logging.getLogger("app.notifications.tasks")
MAX_TRIES = 5  # arq tries of one send_sms job before the message is given up
RETRY_BASE_S = 5


def _sender(ctx: dict[str, Any]) -> SmsSender | None:
    if "sms_sender" not in ctx:
        ctx["sms_sender"] = build_sender(ctx["settings"])
    sender: SmsSender | None = ctx["sms_sender"]
    return sender


async def close_sender(ctx: dict[str, Any]) -> None:
    """Worker shutdown: close the sender's HTTP session."""
    sender = ctx.pop("sms_sender", None)
    if sender is not None:
        await sender.aclose()


def lease_s(settings: Settings) -> float:
    """Longer than one send can take with all its retries and back-off."""
    return settings.twilio_timeout_s * (settings.twilio_max_retries + 1) + 30.0


async def send_sms(ctx: dict[str, Any], outbox_id: int, message_id: str) -> str:
    """Send one queued SMS; returns what happened (for arq's result and the tests)."""
    pool = ctx["pool"]
    settings: Settings = ctx["settings"]
    clock: Clock = ctx.get("clock") or Clock()
    now = clock.now()
    mid = uuid.UUID(message_id)

    row = await pool.fetchrow(
        Q("notifications.claim_message"), mid, now + timedelta(seconds=lease_s(settings)), now
    )
    if row is None:
        state = await pool.fetchrow(Q("notifications.message_state"), mid)
        if state is not None and state["status"] == "sending":
            # Another run holds a live lease; look again once it could have run out.
            wait = (state["lease_until"] - now).total_seconds() + 1
            raise Retry(defer=max(1.0, wait))
        await outbox.mark_done(pool, outbox_id)
        return "missing" if state is None else f"already_{state['status']}"

    if row["expires_at"] is not None and row["expires_at"] <= now:
        await _final(pool, outbox_id, mid, "expired", None, "expired before sending", now)
        return "expired"
    if row["opted_out"]:
        await _final(pool, outbox_id, mid, "failed", 21610, "recipient opted out", now)
        return "opted_out"
    sender = _sender(ctx)
    if sender is None:
        log.error("no SMS provider: set TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN/TWILIO_FROM")
        await _final(pool, outbox_id, mid, "failed", None, "no SMS provider configured", now)
        return "no_provider"

    validity = None
    if row["expires_at"] is not None:
        validity = int((row["expires_at"] - now).total_seconds())
    try:
        sent = await sender.send(row["to_phone"], row["body"], validity_period_s=validity)
    except SmsOptedOut as exc:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(Q("notifications.opt_out"), row["to_phone"], "twilio_21610")
            await _finish(conn, outbox_id, mid, "failed", exc.code, str(exc), clock.now())
        return "opted_out"
    except SmsRejected as exc:
        log.warning("SMS %s refused by the provider: code=%s", message_id, exc.code)
        await _final(pool, outbox_id, mid, "failed", exc.code, str(exc), clock.now())
        return "rejected"
    except SmsUnavailable as exc:
        job_try = int(ctx.get("job_try", 1))
        later = clock.now()
        if job_try < MAX_TRIES:
            await pool.execute(Q("notifications.release_message"), mid, exc.code, str(exc), later)
            raise Retry(defer=RETRY_BASE_S * job_try) from exc
        await _final(pool, outbox_id, mid, "failed", exc.code, str(exc), later)
        return "gave_up"

    done_at = clock.now()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            Q("notifications.mark_sent"),
            mid,
            sender.name,
            sent.sid,
            done_at,
            sender.name != "sink",  # the demo sink keeps the text for GET /dev/sms
        )
        await outbox.mark_done(conn, outbox_id)
    return "sent"


async def _final(
    pool: asyncpg.Pool,
    outbox_id: int,
    message_id: uuid.UUID,
    status: str,
    code: int | None,
    message: str,
    now: datetime,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _finish(conn, outbox_id, message_id, status, code, message, now)


async def _finish(
    conn: Connection,
    outbox_id: int,
    message_id: uuid.UUID,
    status: str,
    code: int | None,
    message: str,
    now: datetime,
) -> None:
    """A final state for the message and its outbox row, in the caller's transaction."""
    await conn.execute(Q("notifications.mark_final"), message_id, status, code, message, now)
    await outbox.mark_done(conn, outbox_id)


async def redact_expired_sms(ctx: dict[str, Any]) -> int:
    """Cron: secret bodies of messages that expired unsent are redacted."""
    clock: Clock = ctx.get("clock") or Clock()
    result: str = await ctx["pool"].execute(Q("notifications.redact_expired"), clock.now())
    return int(result.split()[-1])
