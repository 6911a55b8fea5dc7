"""The one outbox (`app/core/outbox.py`): rows written in the caller's transaction, handed
to arq right after the commit or by the relay, never twice for one dedupe key, ids carrying
the namespace (arq's job keys are global), delivered rows purged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest
from arq.connections import ArqRedis

from app.core import outbox
from app.core.db import create_pool
from app.core.redis import create_redis
from app.core.settings import Settings
from app.notifications.service import enqueue_now, queue_sms


@pytest.fixture
async def job_ctx(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    pool = await create_pool(settings)
    redis = create_redis(settings)
    arq = ArqRedis(pool_or_conn=redis.connection_pool)
    yield {"pool": pool, "settings": settings, "redis": arq}
    await redis.delete(outbox.queue_name(settings))
    await redis.aclose()
    await pool.close()


async def test_fast_path_and_relay_share_one_namespaced_job(
    db: asyncpg.Connection, settings: Settings, job_ctx: dict[str, Any]
) -> None:
    async with db.transaction():
        queued = await queue_sms(
            db, to="+4915112345678", body="hello", purpose="alert", now=datetime.now(UTC)
        )
    redis = create_redis(settings)
    arq = ArqRedis(pool_or_conn=redis.connection_pool)
    other = msgspec.structs.replace(settings, redis_namespace=settings.redis_namespace + "x")
    try:
        await enqueue_now(redis, job_ctx["pool"], settings, [queued])
        [job] = await arq.queued_jobs(queue_name=outbox.queue_name(settings))
        assert job.function == "send_sms"
        assert job.args == (queued.outbox_id,)
        assert job.kwargs == {"message_id": queued.message_id}
        assert job.job_id == f"{settings.redis_namespace}:outbox:{queued.outbox_id}"
        assert await db.fetchval("SELECT enqueued_at IS NOT NULL FROM outbox") is True

        # the relay finds it again (say the API's mark was lost): arq keeps one job
        await db.execute("UPDATE outbox SET enqueued_at = NULL")
        assert await outbox.relay_outbox(job_ctx) == 1
        assert len(await arq.queued_jobs(queue_name=outbox.queue_name(settings))) == 1

        # the same outbox id of another namespace (another database) is its own job
        await enqueue_now(redis, job_ctx["pool"], other, [queued])
        assert len(await arq.queued_jobs(queue_name=outbox.queue_name(other))) == 1
    finally:
        for cfg in (settings, other):
            await redis.delete(
                outbox.queue_name(cfg), f"arq:job:{outbox.job_id(cfg, queued.outbox_id)}"
            )
        await redis.aclose()


async def test_rollback_drops_the_job_and_a_dedupe_key_queues_once(
    db: asyncpg.Connection,
) -> None:
    tx = db.transaction()
    await tx.start()
    await outbox.enqueue(db, job="j", args={"a": 1}, dedupe_key="k1")
    await tx.rollback()
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0

    async with db.transaction():
        first = await outbox.enqueue(db, job="j", args={"a": 1}, dedupe_key="k1")
    async with db.transaction():
        again = await outbox.enqueue(db, job="j", args={"a": 2}, dedupe_key="k1")
    assert first is not None
    assert again is None
    assert await db.fetchval("SELECT args FROM outbox") == {"a": 1}


async def test_relay_reenqueues_what_redis_lost_but_not_what_is_done(
    db: asyncpg.Connection, job_ctx: dict[str, Any], settings: Settings
) -> None:
    lost = await outbox.enqueue(db, job="j", args={"n": 1})
    done = await outbox.enqueue(db, job="j", args={"n": 2})
    later = await outbox.enqueue(
        db, job="j", args={"n": 3}, available_at=datetime(2999, 1, 1, tzinfo=UTC)
    )
    assert lost is not None
    assert done is not None
    assert later is not None
    await outbox.mark_done(db, done)
    assert await outbox.relay_outbox(job_ctx) == 1  # only `lost`; `later` is not due
    arq: ArqRedis = job_ctx["redis"]
    assert [j.kwargs for j in await arq.queued_jobs(queue_name=outbox.queue_name(settings))] == [
        {"n": 1}
    ]
    # enqueued just now: not again on the next sweep …
    assert await outbox.relay_outbox(job_ctx) == 0
    # … but once it has waited past the bound without being done (Redis lost it)
    await arq.delete(outbox.queue_name(settings), f"arq:job:{outbox.job_id(settings, lost)}")
    await db.execute(
        "UPDATE outbox SET enqueued_at = now() - interval '1 hour' WHERE outbox_id = $1", lost
    )
    assert await outbox.relay_outbox(job_ctx) == 1
    assert len(await arq.queued_jobs(queue_name=outbox.queue_name(settings))) == 1


async def test_purge_deletes_only_rows_delivered_long_ago(
    db: asyncpg.Connection, job_ctx: dict[str, Any]
) -> None:
    old = await outbox.enqueue(db, job="j")
    recent = await outbox.enqueue(db, job="j")
    pending = await outbox.enqueue(db, job="j")
    await db.execute(
        "UPDATE outbox SET done_at = now() - interval '30 days' WHERE outbox_id = $1", old
    )
    assert recent is not None
    await outbox.mark_done(db, recent)
    assert await outbox.purge_outbox(job_ctx) == 1
    left = {r["outbox_id"] for r in await db.fetch("SELECT outbox_id FROM outbox")}
    assert left == {recent, pending}
