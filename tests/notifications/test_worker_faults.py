"""The real worker (an `arq` subprocess) under faults: `kill -9` in the middle of 100 alerts
→ every alert is sent after the restart, at most one duplicate per kill; Redis down for
30 s → the alerts queued in PostgreSQL meanwhile are sent once it is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlparse

import asyncpg
import pytest

from app.core.settings import Settings
from tests.notifications.faults import TcpProxy, Worker
from tests.notifications.helpers import queue_started
from tests.standins.twilio import FROM, TwilioStandIn

pytestmark = pytest.mark.timeout(240)


def worker_env(
    settings: Settings, twilio: TwilioStandIn, redis_url: str, **extra: str
) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": settings.redis_namespace,
        "JWT_SECRET": settings.jwt_secret,
        "APP_DEMO": "0",
        "LOG_LEVEL": "WARNING",
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "6",
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM": FROM,
        "TWILIO_API_BASE": twilio.url,
        "TWILIO_TIMEOUT_S": "2",
        "TWILIO_MAX_RETRIES": "0",
        **extra,
    }


async def make_drivers_with_sessions(
    db: asyncpg.Connection, n: int, *, first: int = 0
) -> list[dict[str, Any]]:
    """n drivers, each with an open session at one site (set-based: fast)."""
    tag = uuid.uuid4().hex[:8]
    charger_id = await db.fetchval(
        """WITH s AS (INSERT INTO sites (external_id, name, lat, lon, timezone)
                      VALUES ($1, 'Hafen', 53.5, 10.0, 'Europe/Berlin') RETURNING site_id)
           INSERT INTO chargers (site_id, charge_point_id, ocpp_password_hash)
           SELECT site_id, $2, 'x' FROM s RETURNING charger_id""",
        f"S-{tag}",
        f"CP-{tag}",
    )
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    rows = await db.fetch(
        """WITH d AS (
               INSERT INTO drivers (phone, id_tag)
               SELECT '+4477009' || lpad(i::text, 5, '0'), 'F' || $3::text || i
               FROM generate_series($1::int, $1::int + $2::int - 1) AS i
               RETURNING driver_id, phone)
           INSERT INTO charging_sessions (charger_id, connector_no, id_tag, id_tag_status,
                                          driver_id, status, meter_start_wh, started_at)
           SELECT $4, 1, 'TAG', 'Accepted', d.driver_id, 'CHARGING', 0,
                  $5::timestamptz + row_number() OVER () * interval '1 ms'
           FROM d
           RETURNING session_id, driver_id""",
        first,
        n,
        tag.upper(),
        charger_id,
        t0,
    )
    return [dict(r) for r in rows]


async def sent_count(db: asyncpg.Connection) -> int:
    value: int = await db.fetchval(
        "SELECT count(*) FROM sms_messages WHERE purpose = 'alert' AND status = 'sent'"
    )
    return value


async def until(
    check: Callable[[], Awaitable[bool]], within_s: float, what: str, worker: Worker
) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {within_s} s; worker log:\n{worker.output()}")
        await asyncio.sleep(0.05)


class StartWorker(Protocol):
    def __call__(self, redis_url: str, **extra: str) -> Worker: ...


@pytest.fixture
async def start_worker(settings: Settings, twilio: TwilioStandIn) -> AsyncIterator[StartWorker]:
    """Starts a worker process on the test's database and Twilio, Redis at `redis_url`, with
    `extra` in its environment; every one is closed after the test."""
    workers: list[Worker] = []

    def start(redis_url: str, **extra: str) -> Worker:
        w = Worker(worker_env(settings, twilio, redis_url, **extra))
        workers.append(w)
        w.start()
        return w

    yield start
    for w in workers:
        w.close()


async def test_kill_9_in_the_middle_of_100_alerts_loses_none_and_doubles_at_most_one(
    db: asyncpg.Connection, twilio: TwilioStandIn, redis_url: str, start_worker: StartWorker
) -> None:
    sessions = await make_drivers_with_sessions(db, 100)
    assert all(await queue_started(db, sessions))
    # paced at 25/s per sender, so the kill lands in the middle of the batch
    worker = start_worker(redis_url, SMS_RATE_PER_SENDER="25")

    async def some_sent() -> bool:
        return len(twilio.messages) >= 30

    await until(some_sent, 60, "30 sent", worker)
    worker.kill9()
    at_kill = len(twilio.messages)
    assert at_kill < 100, "the kill came too late to test anything"

    restarted = start_worker(redis_url, SMS_RATE_PER_SENDER="25")

    async def all_sent() -> bool:
        return await sent_count(db) == 100

    restarted_at = time.monotonic()
    await until(all_sent, 90, "all 100 alerts sent after the restart", restarted)
    print(
        f"kill at {at_kill}/100 sent; all sent {time.monotonic() - restarted_at:.1f} s after restart"
    )
    per_phone = Counter(m["to"] for m in twilio.messages)
    phones = {
        r["phone"]
        for r in await db.fetch(
            "SELECT phone FROM drivers WHERE driver_id = ANY($1::uuid[])",
            [s["driver_id"] for s in sessions],
        )
    }
    assert set(per_phone) == phones  # every driver got their alert
    duplicates = sum(c - 1 for c in per_phone.values())
    print(f"duplicates: {duplicates}")
    assert duplicates <= 1, per_phone.most_common(3)
    outbox_left = await db.fetchval(
        "SELECT count(*) FROM outbox WHERE job = 'send_sms' AND done_at IS NULL"
    )
    assert outbox_left == 0


async def test_redis_down_for_30_s_then_the_queued_alerts_are_sent(
    db: asyncpg.Connection, twilio: TwilioStandIn, redis_url: str, start_worker: StartWorker
) -> None:
    target = urlparse(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    via_proxy = target._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
    # paced (the default): every send needs a slot from Redis, so nothing can leave while
    # it is away (unpaced, the dispatcher would send straight from PostgreSQL meanwhile)
    worker = start_worker(via_proxy, SMS_RATE_PER_SENDER="100")
    try:
        before = await make_drivers_with_sessions(db, 10)
        assert all(await queue_started(db, before))

        async def first_sent() -> bool:
            return await sent_count(db) == 10

        await until(first_sent, 60, "the first 10 sent", worker)

        await proxy.stop()  # Redis is gone for the worker
        during = await make_drivers_with_sessions(db, 20, first=500)
        assert all(await queue_started(db, during))  # the API side needs PostgreSQL only
        await asyncio.sleep(30)
        assert len(twilio.messages) == 10  # nothing could be handed to arq
        assert worker.alive(), worker.output()  # it rides the outage out, it does not exit
        await proxy.start()

        async def all_sent() -> bool:
            return await sent_count(db) == 30

        await until(all_sent, 60, "the 20 alerts queued during the outage sent", worker)
        assert len(twilio.messages) == 30
    finally:
        await proxy.stop()
