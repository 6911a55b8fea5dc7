"""The worker's SMS dispatcher in-process: woken by the NOTIFY of new messages it sends
them straight from PostgreSQL, marks their outbox rows done (so the relay never hands them
to arq), keeps paced ones for their slot and never sends a suppressed one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis

from app.core.settings import Settings
from app.notifications.tasks import start_listener, stop_listener
from tests.factories import eventually
from tests.notifications.helpers import driver_with_session, queue_started
from tests.standins.twilio import TwilioStandIn


@pytest.fixture
async def worker_ctx(job_ctx: dict[str, Any], settings: Settings) -> AsyncIterator[dict[str, Any]]:
    redis = Redis.from_url(settings.redis_url)
    job_ctx["redis"] = redis
    await start_listener(job_ctx)
    await job_ctx["sms_relay_waker"].listener.ready.wait()
    yield job_ctx
    await stop_listener(job_ctx)
    await redis.aclose()


async def sessions_with_drivers(
    db: asyncpg.Connection, settings: Settings, n: int
) -> list[dict[str, Any]]:
    return [await driver_with_session(db, settings, f"+4477009{i:05d}") for i in range(n)]


async def test_new_alerts_are_sent_at_once_without_arq(
    db: asyncpg.Connection,
    settings: Settings,
    twilio: TwilioStandIn,
    worker_ctx: dict[str, Any],
) -> None:
    arranged = await sessions_with_drivers(db, settings, 5)
    await db.execute("INSERT INTO sms_opt_outs (phone, source) VALUES ('+447700900004', 'test')")
    await queue_started(db, arranged)

    async def four_sent() -> bool:  # at Twilio and recorded as sent, outbox rows done
        sent = await db.fetchval("SELECT count(*) FROM sms_messages WHERE status = 'sent'")
        pending = await db.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NULL")
        return len(twilio.messages) == 4 and sent == 4 and pending == 0

    assert await eventually(four_sent, within_s=5)
    assert "+447700900004" not in {m["to"] for m in twilio.messages}  # said STOP
    pending = await db.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NULL")
    assert pending == 0  # nothing left for the relay or arq
    statuses = await db.fetch("SELECT status, count(*) FROM notifications GROUP BY 1")
    assert {r["status"]: r["count"] for r in statuses} == {"queued": 4, "suppressed": 1}


async def test_paced_alerts_wait_for_their_slots(
    db: asyncpg.Connection,
    settings: Settings,
    twilio: TwilioStandIn,
    worker_ctx: dict[str, Any],
) -> None:
    worker_ctx["settings"] = msgspec.structs.replace(settings, sms_rate_per_sender=0.5)
    await queue_started(db, await sessions_with_drivers(db, settings, 3))

    async def one_sent() -> bool:
        return len(twilio.messages) >= 1

    assert await eventually(one_sent, within_s=5)

    async def deferred() -> list[Any]:
        rows: list[Any] = await db.fetch(
            "SELECT send_after FROM sms_messages WHERE status = 'queued' AND send_after IS NOT NULL"
        )
        return rows if len(rows) == 2 else []

    # 0.5/s: the next slots are 2 s and 4 s away, so both wait, queued with their slot
    assert await eventually(deferred, within_s=2)
    assert len(twilio.messages) == 1

    async def all_sent() -> bool:
        sent = await db.fetchval("SELECT count(*) FROM sms_messages WHERE status = 'sent'")
        return len(twilio.messages) == 3 and sent == 3

    assert await eventually(all_sent, within_s=8)
    sent_at = sorted(r["sent_at"] for r in await db.fetch("SELECT sent_at FROM sms_messages"))
    gaps = [(b - a).total_seconds() for a, b in pairwise(sent_at)]
    assert all(g >= 1.9 for g in gaps), gaps
