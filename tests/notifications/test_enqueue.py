"""After the commit the API hands `send_sms` to arq itself; the relay uses the same job
id, so the job runs once, and ids carry the namespace (arq's job keys are global)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from arq.connections import ArqRedis

from app.core.redis import create_redis
from app.core.settings import Settings
from app.notifications.service import enqueue_now, job_id, queue_name, queue_sms
from workers.outbox import outbox_job_id, relay_outbox


async def test_fast_path_and_relay_share_one_namespaced_job(
    db: asyncpg.Connection, settings: Settings, job_ctx: dict[str, Any]
) -> None:
    async with db.transaction():
        queued = await queue_sms(
            db, to="+4915112345678", body="hello", purpose="alert", now=datetime.now(UTC)
        )
    assert job_id(settings, queued.outbox_id) == outbox_job_id(
        settings.redis_namespace, queued.outbox_id
    )
    redis = create_redis(settings)
    arq = ArqRedis(pool_or_conn=redis.connection_pool)
    other = msgspec.structs.replace(settings, redis_namespace=settings.redis_namespace + "x")
    try:
        await enqueue_now(redis, job_ctx["pool"], settings, [queued])
        [job] = await arq.queued_jobs(queue_name=queue_name(settings))
        assert job.function == "send_sms"
        assert job.args == (queued.outbox_id,)
        assert job.kwargs == {"message_id": queued.message_id}
        assert job.job_id == f"{settings.redis_namespace}:outbox:{queued.outbox_id}"
        assert await db.fetchval("SELECT enqueued_at IS NOT NULL FROM outbox") is True

        # the relay finds it again (say the API's mark was lost): arq keeps one job
        await db.execute("UPDATE outbox SET enqueued_at = NULL")
        assert await relay_outbox({**job_ctx, "redis": arq}) == 1
        assert len(await arq.queued_jobs(queue_name=queue_name(settings))) == 1

        # the same outbox id of another namespace (another database) is its own job
        await enqueue_now(redis, job_ctx["pool"], other, [queued])
        assert len(await arq.queued_jobs(queue_name=queue_name(other))) == 1
    finally:
        for cfg in (settings, other):
            await redis.delete(queue_name(cfg), f"arq:job:{job_id(cfg, queued.outbox_id)}")
        await redis.aclose()
