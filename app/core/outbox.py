"""The transactional outbox: jobs written in the same transaction as the change that
needs them, handed to arq after the commit (at least once, never lost).

- `enqueue(db, job=…, args=…, dedupe_key=…)` writes the row in the caller's transaction: a
  rollback drops the job, a commit makes it certain. A repeated `dedupe_key` writes nothing
  (the permanent dedupe lives in PostgreSQL, not in arq's short-lived job keys).
- `enqueue_now(...)`, best effort right after the commit, hands the rows to arq at once so
  a job does not wait for the relay's next sweep; the shared job id makes it a no-op twice.
- `relay_outbox` (arq cron, every few seconds) enqueues due rows nobody enqueued and
  re-enqueues rows enqueued long ago and still not done: whatever Redis lost (a restart,
  a worker `kill -9`ed past arq's in-progress key) runs again.
- A job is called as `job(ctx, outbox_id, **args)` and calls `mark_done(conn, outbox_id)`
  in the transaction of its final state; jobs must be safe to run twice.
- `purge_outbox` (cron) deletes rows delivered longer ago than the retention.

Queue names and job ids are built here and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from arq.connections import ArqRedis
from redis.asyncio import Redis

from app.core.settings import Settings
from app.core.sql import Executor, execute, fetch_all, fetch_val

log = logging.getLogger("app.outbox")

RELAY_BATCH = 500
# An enqueued row not done after this long is enqueued again (longer than any job's
# timeout plus arq's in-progress key slack, so a running job is not doubled needlessly).
REENQUEUE_AFTER_S = 120.0
RETENTION_S = 7 * 24 * 3600.0


class DueJob(msgspec.Struct, frozen=True):
    """An outbox row the relay hands to arq."""

    outbox_id: int
    job: str
    args: dict[str, Any] | None


def queue_name(settings: Settings | str) -> str:
    """The arq queue of this deployment (namespaced: tests share one Redis)."""
    namespace = settings if isinstance(settings, str) else settings.redis_namespace
    return f"{namespace}:arq:queue"


def job_id(settings: Settings | str, outbox_id: int) -> str:
    """arq keys jobs globally (`arq:job:<id>`), so the id carries the namespace: outbox ids
    restart at 1 in every database, and a leftover key of another database or test run on
    the same Redis would otherwise make arq drop this job as a duplicate."""
    namespace = settings if isinstance(settings, str) else settings.redis_namespace
    return f"{namespace}:outbox:{outbox_id}"


async def enqueue(
    db: Executor,
    *,
    job: str,
    args: Mapping[str, Any] | None = None,
    dedupe_key: str | None = None,
    available_at: datetime | None = None,
) -> int | None:
    """Write an outbox row in the caller's transaction; returns its id, or None when a row
    with this `dedupe_key` exists already (the job is queued or done once, not twice)."""
    outbox_id = await fetch_val(
        db, "outbox.insert", job, dict(args or {}), dedupe_key, available_at
    )
    return None if outbox_id is None else int(outbox_id)


async def mark_done(db: Executor, outbox_id: int) -> None:
    """The job of this row reached a final state (call it in that state's transaction)."""
    await execute(db, "outbox.mark_done", outbox_id)


@contextlib.asynccontextmanager
async def closing(pool: asyncpg.Pool, outbox_id: int) -> AsyncIterator[asyncpg.Connection]:
    """A transaction that ends the job's attempt: its outbox row is done when the block
    commits (a return inside it included), and not done when the block raises."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn
        await mark_done(conn, outbox_id)


def arq_for(redis: Redis) -> ArqRedis:
    """An arq handle sharing the app's Redis connection pool."""
    return ArqRedis(pool_or_conn=redis.connection_pool)


async def enqueue_now(
    redis: Redis,
    pool: asyncpg.Pool,
    settings: Settings,
    jobs: Iterable[tuple[int, str, Mapping[str, Any]]],
) -> None:
    """Best effort, after the commit: hand `(outbox_id, job, args)` to arq at once. On any
    failure the relay enqueues them on its next sweep, so nothing is lost."""
    try:
        arq = arq_for(redis)
        for outbox_id, job, args in jobs:
            queued = await arq.enqueue_job(
                job,
                outbox_id,
                **args,
                _job_id=job_id(settings, outbox_id),
                _queue_name=queue_name(settings),
            )
            if queued is not None:  # None: arq holds this id already; leave it to the relay
                await execute(pool, "outbox.mark_enqueued", outbox_id)
    except Exception as exc:  # Redis or PostgreSQL away: the relay will do it
        log.warning("could not enqueue now (the outbox relay will): %r", exc)


async def relay_outbox(ctx: dict[str, Any]) -> int:
    """Cron: enqueue due outbox rows that are not done; returns how many were enqueued."""
    pool: asyncpg.Pool = ctx["pool"]
    redis: ArqRedis = ctx["redis"]
    settings: Settings = ctx["settings"]
    due = await fetch_all(pool, "outbox.claim_due", DueJob, RELAY_BATCH, REENQUEUE_AFTER_S)
    for row in due:
        await redis.enqueue_job(
            row.job,
            row.outbox_id,
            **(row.args or {}),
            _job_id=job_id(settings, row.outbox_id),
            _queue_name=queue_name(settings),
        )
    return len(due)


async def purge_outbox(ctx: dict[str, Any]) -> int:
    """Cron: delete rows delivered longer ago than the retention; returns how many."""
    return await execute(ctx["pool"], "outbox.purge_done", RETENTION_S)
