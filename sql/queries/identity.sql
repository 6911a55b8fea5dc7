-- name: insert_challenge
-- Store a new SMS-code challenge (the code as an HMAC only).
INSERT INTO otp_challenges (challenge_id, phone, code_hash, created_at, expires_at,
                            max_attempts, client_ip)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: lock_challenge
-- The challenge, locked for this code check (concurrent guesses queue up behind it).
SELECT challenge_id, phone, code_hash, expires_at, attempts, max_attempts, consumed_at
FROM otp_challenges WHERE challenge_id = $1
FOR UPDATE;

-- name: count_wrong_code
-- Count one wrong code against the challenge; returns the attempts so far.
UPDATE otp_challenges SET attempts = attempts + 1 WHERE challenge_id = $1
RETURNING attempts;

-- name: consume_challenge
-- Use the challenge up (single use).
UPDATE otp_challenges SET consumed_at = $2 WHERE challenge_id = $1 AND consumed_at IS NULL
RETURNING challenge_id;

-- name: upsert_driver_login
-- The driver with this phone, created on first login with a fresh idTag; notes the login.
INSERT INTO drivers (phone, id_tag, last_login_at, created_at, updated_at)
VALUES ($1, $2, $3, $3, $3)
ON CONFLICT (phone) DO UPDATE SET last_login_at = EXCLUDED.last_login_at
RETURNING driver_id, (xmax = 0) AS created;

-- name: driver_profile
-- A driver's profile with the vehicle and whether the number opted out of SMS.
SELECT d.driver_id::text AS driver_id, d.phone, d.name, d.email,
       d.vehicle_battery_wh, d.vehicle_max_ac_w, d.vehicle_max_dc_w,
       d.vehicle_connector_types, d.sms_alerts, d.id_tag, d.created_at,
       (o.phone IS NOT NULL) AS sms_opted_out
FROM drivers d LEFT JOIN sms_opt_outs o ON o.phone = d.phone
WHERE d.driver_id = $1;

-- name: update_driver_profile
-- Change the given profile fields ($2…: set flag, value pairs; unset fields stay).
UPDATE drivers SET
    name = CASE WHEN $2 THEN $3 ELSE name END,
    email = CASE WHEN $4 THEN $5 ELSE email END,
    vehicle_battery_wh = CASE WHEN $6 THEN $7 ELSE vehicle_battery_wh END,
    vehicle_max_ac_w = CASE WHEN $6 THEN $8 ELSE vehicle_max_ac_w END,
    vehicle_max_dc_w = CASE WHEN $6 THEN $9 ELSE vehicle_max_dc_w END,
    vehicle_connector_types = CASE WHEN $6 THEN $10::text[] ELSE vehicle_connector_types END,
    sms_alerts = COALESCE($11, sms_alerts),
    updated_at = $12
WHERE driver_id = $1
RETURNING driver_id;

-- name: insert_family
-- Start a login family for a driver.
INSERT INTO login_families (driver_id, created_at) VALUES ($1, $2)
RETURNING family_id;

-- name: insert_refresh_token
-- Store a refresh token (its SHA-256) in a family.
INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at)
VALUES ($1, $2, $3, $4);

-- name: lock_refresh_token
-- The refresh token with its family, locked for rotation.
SELECT t.token_hash, t.family_id, t.expires_at, t.used_at, f.driver_id, f.revoked_at
FROM refresh_tokens t JOIN login_families f ON f.family_id = t.family_id
WHERE t.token_hash = $1
FOR UPDATE OF t, f;

-- name: spend_refresh_token
-- Mark a refresh token as rotated.
UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL
RETURNING token_hash;

-- name: revoke_family
-- Revoke a login family (logout or detected reuse); a no-op when already revoked.
UPDATE login_families SET revoked_at = $2, revoked_reason = $3
WHERE family_id = $1 AND revoked_at IS NULL
RETURNING family_id;

-- name: family_is_active
-- The driver of a login family that is not revoked (checked on each driver request).
SELECT driver_id FROM login_families WHERE family_id = $1 AND revoked_at IS NULL;

-- name: purge_expired
-- Drop challenges and refresh tokens well past their expiry, and dead login families.
WITH c AS (DELETE FROM otp_challenges WHERE expires_at < $1 RETURNING 1),
     t AS (DELETE FROM refresh_tokens WHERE expires_at < $1 RETURNING 1),
     f AS (DELETE FROM login_families lf
           WHERE (lf.revoked_at < $1)
              OR (lf.created_at < $1 AND NOT EXISTS (
                      SELECT 1 FROM refresh_tokens rt
                      WHERE rt.family_id = lf.family_id AND rt.expires_at >= $1))
           RETURNING 1)
SELECT (SELECT count(*) FROM c) AS challenges, (SELECT count(*) FROM t) AS tokens,
       (SELECT count(*) FROM f) AS families;
