"""The transactional outbox relay: pending rows → arq jobs (at-least-once).

A job's own table (messages, captures…) carries the permanent dedupe; the relay may
enqueue a row twice after a crash, which the job must tolerate (see STYLE.md, Jobs).
"""

from __future__ import annotations

from typing import Any

RELAY_BATCH = 500


def outbox_job_id(namespace: str, outbox_id: int) -> str:
    """arq keys jobs globally (`arq:job:<id>`), so the id carries the namespace: outbox ids
    restart at 1 in every database, and a leftover key of another database or test run on
    the same Redis would otherwise make arq drop this job as a duplicate."""
    return f"{namespace}:outbox:{outbox_id}"


async def relay_outbox(ctx: dict[str, Any]) -> int:
    """Enqueue due outbox rows that are not done; returns how many were enqueued."""
    pool = ctx["pool"]
    redis = ctx["redis"]
    settings = ctx["settings"]
    rows = await pool.fetch(
        """UPDATE outbox SET enqueued_at = now(), attempts = attempts + 1
           WHERE outbox_id IN (
               SELECT outbox_id FROM outbox
               WHERE done_at IS NULL AND available_at <= now()
                 AND (enqueued_at IS NULL OR enqueued_at < now() - interval '2 minutes')
               ORDER BY outbox_id LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING outbox_id, job, args""",
        RELAY_BATCH,
    )
    for row in rows:
        await redis.enqueue_job(
            row["job"],
            row["outbox_id"],
            **(row["args"] or {}),
            _job_id=outbox_job_id(settings.redis_namespace, row["outbox_id"]),
            _queue_name=f"{settings.redis_namespace}:arq:queue",
        )
    return len(rows)
