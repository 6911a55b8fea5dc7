-- name: insert
-- Write an outbox row in the caller's transaction (a rollback drops the job with it); a repeated dedupe key writes nothing.
INSERT INTO outbox (job, args, dedupe_key, available_at)
VALUES ($1, $2, $3, coalesce($4, now()))
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING outbox_id;

-- name: mark_enqueued
-- The API enqueued the job itself right after commit; the relay need not.
UPDATE outbox SET enqueued_at = now(), attempts = attempts + 1
WHERE outbox_id = $1 AND enqueued_at IS NULL AND done_at IS NULL;

-- name: mark_done
-- The job of this outbox row has run to a final state.
UPDATE outbox SET done_at = now() WHERE outbox_id = $1 AND done_at IS NULL;

-- name: claim_due
-- Rows due and not done that nobody enqueued, or that were enqueued long enough ago that Redis may have lost them.
UPDATE outbox SET enqueued_at = now(), attempts = attempts + 1
WHERE outbox_id IN (
    SELECT outbox_id FROM outbox
    WHERE done_at IS NULL AND available_at <= now()
      AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => $2))
    ORDER BY outbox_id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING outbox_id, job, args;

-- name: purge_done
-- Delete delivered outbox rows older than the retention.
DELETE FROM outbox WHERE done_at IS NOT NULL AND done_at < now() - make_interval(secs => $1);

-- name: state
-- One outbox row (tests and operators).
SELECT outbox_id, job, args, dedupe_key, available_at, enqueued_at, done_at, attempts
FROM outbox WHERE outbox_id = $1;
