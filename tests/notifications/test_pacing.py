"""Per-sender pacing: slots handed out in Redis at the configured rate, login codes ahead of
alerts, and the send job deferring (never dropping) what does not fit now."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from arq import Retry
from redis.asyncio import Redis

from app.core.clock import FixedClock
from app.core.settings import Settings
from app.notifications import pacing
from app.notifications.service import queue_sms
from app.notifications.tasks import send_sms
from tests.standins.twilio import FROM, TwilioStandIn


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


def at_rate(settings: Settings, rate: float, **kw: Any) -> Settings:
    return msgspec.structs.replace(settings, sms_rate_per_sender=rate, **kw)


async def test_slots_follow_the_rate_per_sender(settings: Settings, redis: Redis) -> None:
    cfg = at_rate(settings, 10.0)
    waits = [await pacing.reserve(redis, cfg, FROM) for _ in range(5)]
    assert waits[0] == pytest.approx(0.0, abs=0.02)
    for i, w in enumerate(waits):
        assert w == pytest.approx(0.1 * i, abs=0.03)
    # another sender has its own slots
    assert await pacing.reserve(redis, cfg, "+15005550007") == pytest.approx(0.0, abs=0.02)
    # a login code goes now and pushes the queue back by one interval
    assert await pacing.reserve(redis, cfg, FROM, priority=True) == 0.0
    assert await pacing.reserve(redis, cfg, FROM) == pytest.approx(0.6, abs=0.03)


def test_rates_per_named_sender_and_off(settings: Settings) -> None:
    cfg = msgspec.structs.replace(
        settings, sms_rate_per_sender=1.0, sms_sender_rates="MG123=100, +15005550006=0"
    )
    assert pacing.rate_for(cfg, "MG123") == 100.0
    assert pacing.rate_for(cfg, "+15005550006") == 0.0
    assert pacing.rate_for(cfg, "+4915100000000") == 1.0


async def test_unpaced_senders_never_wait(settings: Settings, redis: Redis) -> None:
    cfg = at_rate(settings, 0.0)
    assert [await pacing.reserve(redis, cfg, FROM) for _ in range(50)] == [0.0] * 50


async def test_the_job_waits_short_gaps_and_defers_long_ones(
    db: asyncpg.Connection,
    settings: Settings,
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
    redis: Redis,
) -> None:
    job_ctx["settings"] = at_rate(settings, 2.0)
    job_ctx["redis"] = redis
    now = datetime.now(UTC)
    queued = []
    for i in range(4):
        async with db.transaction():
            queued.append(
                await queue_sms(
                    db, to=f"+44770090{i:04d}", body=f"alert {i}", purpose="alert", now=now
                )
            )
    t0 = time.monotonic()
    # slots at 0, 0.5, 1.0 s: sent in place, one after the other
    for q in queued[:3]:
        assert await send_sms(job_ctx, q.outbox_id, q.message_id) == "sent"
    assert time.monotonic() - t0 == pytest.approx(1.0, abs=0.3)
    # two more slots taken elsewhere: the last message's slot is > 1 s away, so it is deferred
    last = queued[3]
    await pacing.reserve(redis, job_ctx["settings"], FROM)  # someone else took a slot
    await pacing.reserve(redis, job_ctx["settings"], FROM)
    with pytest.raises(Retry) as info:
        await send_sms(job_ctx, last.outbox_id, last.message_id)
    assert (info.value.defer_score or 0) > 1000
    row = await db.fetchrow(
        "SELECT status, send_after FROM sms_messages WHERE message_id = $1",
        uuid.UUID(last.message_id),
    )
    assert row["status"] == "queued"  # queued, never dropped
    assert row["send_after"] > now
    # run early (the relay re-enqueued it): still deferred, no new slot taken
    with pytest.raises(Retry):
        await send_sms(job_ctx, last.outbox_id, last.message_id)
    # at its slot it goes, without asking for another one
    job_ctx["clock"] = FixedClock(row["send_after"] + timedelta(milliseconds=1))
    assert await send_sms(job_ctx, last.outbox_id, last.message_id) == "sent"
    assert len(twilio.messages) == 4
