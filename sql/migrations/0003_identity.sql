-- Driver identity (SMS-code login, rotating refresh tokens, profile and vehicle) and the
-- SMS messages the notifications domain sends through the outbox.
-- Secrets are never stored in clear: OTP codes and refresh tokens are kept as hashes.

CREATE TABLE drivers (
    driver_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    phone            text NOT NULL UNIQUE CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    name             text CHECK (length(name) BETWEEN 1 AND 100),
    email            text CHECK (length(email) BETWEEN 3 AND 254),
    -- the vehicle is all or nothing: battery and both power limits together
    vehicle_battery_wh    integer CHECK (vehicle_battery_wh > 0),
    vehicle_max_ac_w      integer CHECK (vehicle_max_ac_w >= 0),
    vehicle_max_dc_w      integer CHECK (vehicle_max_dc_w >= 0),
    vehicle_connector_types text[] NOT NULL DEFAULT '{}' CHECK (
        vehicle_connector_types <@ ARRAY['CCS2', 'CHADEMO', 'TYPE2', 'CCS1', 'NACS', 'GBT']),
    sms_alerts       boolean NOT NULL DEFAULT true,
    -- OCPP 1.6 IdToken (CiString20) the chargers' Authorize sees for this driver
    id_tag           text NOT NULL CHECK (id_tag ~ '^[A-Z0-9]{1,20}$'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_login_at    timestamptz,
    CHECK ((vehicle_battery_wh IS NULL) = (vehicle_max_ac_w IS NULL)
           AND (vehicle_battery_wh IS NULL) = (vehicle_max_dc_w IS NULL))
);
-- idTags are case-insensitive in OCPP; they are issued in upper case and unique as such.
CREATE UNIQUE INDEX drivers_id_tag ON drivers (upper(id_tag));

-- One SMS-code challenge per POST /v1/auth/otp. The code is an HMAC, checked in constant
-- time; `attempts` counts wrong codes (locked at max_attempts); `consumed_at` = single use.
CREATE TABLE otp_challenges (
    challenge_id  uuid PRIMARY KEY,
    phone         text NOT NULL,
    code_hash     bytea NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL CHECK (max_attempts > 0),
    consumed_at   timestamptz,
    client_ip     text NOT NULL DEFAULT ''
);
CREATE INDEX otp_challenges_expires ON otp_challenges (expires_at);

-- A login (one successful code exchange) and all the refresh tokens rotated from it.
-- Revoking the family (logout, or a spent refresh token presented again) ends them all,
-- access tokens included: they carry the family id and are checked against it.
CREATE TABLE login_families (
    family_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    driver_id       uuid NOT NULL REFERENCES drivers (driver_id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_reason  text CHECK (revoked_reason IN ('logout', 'reuse'))
);
CREATE INDEX login_families_driver ON login_families (driver_id);

CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,  -- SHA-256 of the opaque token (256 random bits)
    family_id   uuid NOT NULL REFERENCES login_families (family_id) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz        -- rotated: presenting it again is theft
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- Every SMS we send. The job that sends it (outbox job `send_sms`) claims the row with a
-- lease, so a message marked `sent` is never sent again whatever arq or the relay do.
-- Secret bodies (OTP codes) are replaced by `redacted_body` once sent or expired.
CREATE TABLE sms_messages (
    message_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    to_phone       text NOT NULL,
    driver_id      uuid REFERENCES drivers (driver_id) ON DELETE SET NULL,
    purpose        text NOT NULL CHECK (purpose ~ '^[a-z][a-z_]{0,39}$'),
    body           text NOT NULL,
    redacted_body  text,
    status         text NOT NULL DEFAULT 'queued' CHECK (status IN (
                       'queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed',
                       'expired')),
    provider       text,           -- 'twilio' or 'sink' (demo)
    provider_sid   text UNIQUE,    -- Twilio's Message SID
    error_code     integer,
    error_message  text,
    attempts       integer NOT NULL DEFAULT 0,
    lease_until    timestamptz,
    expires_at     timestamptz,    -- not worth sending after this (an OTP's expiry)
    created_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sms_messages_created ON sms_messages (created_at DESC);
CREATE INDEX sms_messages_to ON sms_messages (to_phone, created_at DESC);

-- Numbers that replied STOP (Twilio error 21610, or the inbound webhook): never texted.
CREATE TABLE sms_opt_outs (
    phone        text PRIMARY KEY,
    opted_out_at timestamptz NOT NULL DEFAULT now(),
    source       text NOT NULL
);
