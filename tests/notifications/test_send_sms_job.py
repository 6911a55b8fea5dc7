"""The `send_sms` outbox job against the recording Twilio stand-in: sent once whatever
runs it twice, opt-outs, transient failures, expiry, a dead worker's lease, the sink."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from arq import Retry

from app.core.clock import FixedClock
from app.core.settings import Settings
from app.notifications.service import QueuedSms, queue_sms
from app.notifications.tasks import MAX_TRIES, close_sender, redact_expired_sms, send_sms
from tests.factories import make_driver
from tests.standins.twilio import TwilioStandIn

TO = "+4915112345678"


async def queue(
    db: asyncpg.Connection,
    *,
    to: str = TO,
    body: str = "123456 is your Voltway code.",
    secret: bool = True,
    expires_in: timedelta | None = timedelta(minutes=5),
    now: datetime | None = None,
) -> QueuedSms:
    at = now or datetime.now(UTC)
    async with db.transaction():
        return await queue_sms(
            db,
            to=to,
            body=body,
            redacted_body="****** is your Voltway code." if secret else None,
            purpose="otp" if secret else "alert",
            expires_at=at + expires_in if expires_in else None,
            now=at,
        )


async def message(db: asyncpg.Connection, q: QueuedSms) -> asyncpg.Record:
    row = await db.fetchrow(
        """SELECT m.*, o.done_at FROM sms_messages m
           JOIN outbox o ON o.args->>'message_id' = m.message_id::text
           WHERE m.message_id = $1""",
        uuid.UUID(q.message_id),
    )
    assert row is not None
    return row


async def test_sends_once_and_redacts_the_code(
    db: asyncpg.Connection, job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    q = await queue(db)
    assert await send_sms(job_ctx, q.outbox_id, q.message_id) == "sent"
    [sent] = twilio.sent_to(TO)
    assert sent["body"] == "123456 is your Voltway code."
    row = await message(db, q)
    assert row["status"] == "sent"
    assert row["provider"] == "twilio"
    assert row["provider_sid"] == sent["sid"]
    assert row["body"] == "****** is your Voltway code."  # no code at rest once sent
    assert row["done_at"] is not None
    # arq may run it again, the relay may enqueue it again: never a second SMS
    assert await send_sms(job_ctx, q.outbox_id, q.message_id) == "already_sent"
    assert len(twilio.messages) == 1


async def test_concurrent_runs_send_once(
    db: asyncpg.Connection, job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    q = await queue(db, secret=False)

    async def run() -> str:
        try:
            return await send_sms(job_ctx, q.outbox_id, q.message_id)
        except Retry:
            return "retry"

    results = await asyncio.gather(*(run() for _ in range(8)))
    assert results.count("sent") == 1
    assert len(twilio.messages) == 1


async def test_opted_out_number_is_remembered_and_not_retried(
    db: asyncpg.Connection, job_ctx: dict[str, Any], twilio: TwilioStandIn, settings: Settings
) -> None:
    driver = await make_driver(db, settings, phone=TO)
    twilio.opted_out.add(TO)
    q = await queue(db)
    assert await send_sms(job_ctx, q.outbox_id, q.message_id) == "opted_out"
    assert len(twilio.requests) == 1
    row = await message(db, q)
    assert (row["status"], row["error_code"]) == ("failed", 21610)
    assert row["done_at"] is not None
    assert row["body"].startswith("******")
    assert await db.fetchval("SELECT source FROM sms_opt_outs WHERE phone = $1", TO)
    profile = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM sms_opt_outs o JOIN drivers d ON d.phone = o.phone "
        "WHERE d.driver_id = $1)",
        uuid.UUID(driver["driver_id"]),
    )
    assert profile is True
    # the next message to that number is not even attempted
    q2 = await queue(db, secret=False)
    assert await send_sms(job_ctx, q2.outbox_id, q2.message_id) == "opted_out"
    assert len(twilio.requests) == 1


async def test_transient_failure_is_retried_by_arq_then_sent(
    db: asyncpg.Connection, job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    twilio.fail_next(2, status=429)  # the client's own retry (max_retries=1) sees both
    q = await queue(db)
    with pytest.raises(Retry):
        await send_sms(job_ctx, q.outbox_id, q.message_id)
    row = await message(db, q)
    assert row["status"] == "queued"
    assert row["error_code"] == 20429
    assert row["done_at"] is None
    assert row["send_after"] is not None  # backing off: not before this
    job_ctx["job_try"] = 2
    job_ctx["clock"] = FixedClock(row["send_after"])
    assert await send_sms(job_ctx, q.outbox_id, q.message_id) == "sent"
    assert len(twilio.messages) == 1


async def test_gives_up_after_the_last_try(
    db: asyncpg.Connection, job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    twilio.fail_next(10, status=500)
    q = await queue(db, secret=False)
    await db.execute(
        "UPDATE sms_messages SET transient_failures = $2 WHERE message_id = $1",
        uuid.UUID(q.message_id),
        MAX_TRIES - 1,
    )
    assert await send_sms(job_ctx, q.outbox_id, q.message_id) == "gave_up"
    row = await message(db, q)
    assert row["status"] == "failed"
    assert row["done_at"] is not None


async def test_an_expired_code_is_not_sent(
    db: asyncpg.Connection, job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    past = datetime.now(UTC) - timedelta(minutes=6)
    q = await queue(db, now=past)
    assert await send_sms(job_ctx, q.outbox_id, q.message_id) == "expired"
    assert twilio.requests == []
    row = await message(db, q)
    assert row["status"] == "expired"
    assert row["body"].startswith("******")


async def test_a_dead_workers_lease_runs_out_and_the_message_is_sent(
    db: asyncpg.Connection, job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    q = await queue(db)
    # a worker claimed it and was killed before it could send
    await db.execute(
        "UPDATE sms_messages SET status = 'sending', lease_until = now() + interval '1 min' "
        "WHERE message_id = $1",
        uuid.UUID(q.message_id),
    )
    with pytest.raises(Retry):  # a live lease: someone else may be sending right now
        await send_sms(job_ctx, q.outbox_id, q.message_id)
    assert twilio.requests == []
    job_ctx["clock"] = FixedClock(datetime.now(UTC) + timedelta(minutes=2))
    assert await send_sms(job_ctx, q.outbox_id, q.message_id) == "sent"
    assert len(twilio.messages) == 1


async def test_without_a_provider_messages_fail_loudly(
    db: asyncpg.Connection, settings: Settings, job_ctx: dict[str, Any]
) -> None:
    job_ctx["settings"] = msgspec.structs.replace(
        settings, twilio_account_sid="", twilio_auth_token="", app_demo=False
    )
    q = await queue(db)
    assert await send_sms(job_ctx, q.outbox_id, q.message_id) == "no_provider"
    row = await message(db, q)
    assert row["status"] == "failed"
    assert row["done_at"] is not None


async def test_demo_sink_prints_and_keeps_the_text(
    db: asyncpg.Connection,
    settings: Settings,
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await close_sender(job_ctx)
    job_ctx["settings"] = msgspec.structs.replace(
        settings, twilio_account_sid="", twilio_auth_token="", app_demo=True
    )
    q = await queue(db)
    assert await send_sms(job_ctx, q.outbox_id, q.message_id) == "sent"
    assert f"to {TO}: 123456 is your Voltway code." in capsys.readouterr().out
    row = await message(db, q)
    assert row["provider"] == "sink"
    assert row["body"] == "123456 is your Voltway code."
    assert twilio.requests == []


async def test_cron_redacts_codes_that_expired_unsent(
    db: asyncpg.Connection, job_ctx: dict[str, Any]
) -> None:
    q = await queue(db, now=datetime.now(UTC) - timedelta(minutes=10))
    assert await redact_expired_sms(job_ctx) == 1
    row = await message(db, q)
    assert row["status"] == "expired"
    assert row["body"].startswith("******")
