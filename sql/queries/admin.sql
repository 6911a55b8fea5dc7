-- name: staff_by_email
-- The staff user with this email (case-insensitive), for login.
SELECT staff_id, email, password_hash, roles, totp_secret, totp_last_step,
       failed_logins, locked_until, disabled
FROM staff_users WHERE lower(email) = lower($1);

-- name: insert_staff
-- Create a staff user (CLI).
INSERT INTO staff_users (email, password_hash, roles, totp_secret)
VALUES ($1, $2, $3, $4)
RETURNING staff_id;

-- name: update_staff_credentials
-- Replace password, roles and TOTP secret of an existing staff user (CLI re-run).
UPDATE staff_users SET password_hash = $2, roles = $3, totp_secret = $4, totp_last_step = 0,
       failed_logins = 0, locked_until = NULL
WHERE lower(email) = lower($1)
RETURNING staff_id;

-- name: record_login_failure
-- Count a failed login; lock the account for $3 seconds once $2 failures are reached.
UPDATE staff_users
SET failed_logins = failed_logins + 1,
    locked_until = CASE WHEN failed_logins + 1 >= $2
                        THEN now() + make_interval(secs => $3) ELSE locked_until END
WHERE staff_id = $1
RETURNING failed_logins, locked_until;

-- name: record_login_success
-- Reset the failure count and remember the TOTP step used, refusing a replayed step.
UPDATE staff_users SET failed_logins = 0, locked_until = NULL, totp_last_step = $2
WHERE staff_id = $1 AND totp_last_step < $2
RETURNING staff_id;

-- name: list_audit
-- Audit entries newest first, keyset-paginated by (at, audit_id), optional entity filter.
SELECT audit_id, at, actor_type, actor_id, actor_email, action, entity_type, entity_id,
       before, after, request_id
FROM audit_log
WHERE ($1::timestamptz IS NULL OR (at, audit_id) < ($1, $2::bigint))
  AND ($3::text IS NULL OR entity_type = $3)
  AND ($4::text IS NULL OR entity_id = $4)
ORDER BY at DESC, audit_id DESC
LIMIT $5;
