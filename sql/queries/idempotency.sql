-- name: try_lock
-- Take the key's transaction-scoped advisory lock without waiting (false: another request holds it).
SELECT pg_try_advisory_xact_lock($1);

-- name: claim
-- Claim a key under its lock; true when claimed. A row older than $4 seconds has expired, and
-- one without a response can only be left from before responses were stored with the claim.
INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (scope, key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, created_at = now(),
       status_code = NULL, headers = NULL, body = NULL, completed_at = NULL
 WHERE idempotency_keys.created_at < now() - make_interval(secs => $4)
    OR idempotency_keys.status_code IS NULL
RETURNING true;

-- name: stored
-- The stored first response of a key (status_code NULL: none stored).
SELECT request_hash, status_code, headers, body FROM idempotency_keys
WHERE scope = $1 AND key = $2;

-- name: store_response
-- Keep the first response of a claimed key (in the transaction of the request itself).
UPDATE idempotency_keys SET status_code = $3, headers = $4, body = $5, completed_at = now()
WHERE scope = $1 AND key = $2;

-- name: purge_expired
-- Forget keys older than $1 seconds (a replay after that runs the request again).
DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1);
