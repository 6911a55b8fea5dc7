-- Charging sessions as the driver buys them (issue 12, sessions half): the tariff version
-- locked at start, the pre-authorisation hold, the bill and its receipt, and what the
-- state machine needs (STARTING → CHARGING ⇄ SUSPENDED → FINISHING → COMPLETED, or FAILED).
-- The OCPP columns of migration 0004 keep their meaning; a session created by
-- `POST /v1/sessions` is STARTING (with its transactionId reserved) until the charger's
-- StartTransaction names it.

ALTER TABLE charging_sessions
    -- who asked for it: the driver's app (POST /v1/sessions) or the charger (Authorize /
    -- StartTransaction with the driver's idTag)
    ADD COLUMN origin            text NOT NULL DEFAULT 'charger'
                                 CHECK (origin IN ('app', 'charger')),
    ADD COLUMN tariff_id         uuid,
    ADD COLUMN tariff_version    integer,
    ADD COLUMN currency          text CHECK (currency ~ '^[A-Z]{3}$'),
    -- what is authorised in total (the sum of the holds in place); NULL until the first
    -- hold is confirmed: a session is accepted at the charger only once it is set
    ADD COLUMN preauth_minor     bigint CHECK (preauth_minor > 0),
    ADD COLUMN holds             integer NOT NULL DEFAULT 0 CHECK (holds >= 0),
    ADD COLUMN subtotal_minor    bigint CHECK (subtotal_minor >= 0),
    ADD COLUMN vat_minor         bigint CHECK (vat_minor >= 0),
    ADD COLUMN total_minor       bigint CHECK (total_minor >= 0),
    ADD COLUMN receipt           jsonb,
    ADD COLUMN billed_at         timestamptz,
    -- the car stopped drawing power while still plugged in (SuspendedEV / Finishing):
    -- PARKING_TIME runs from here; cleared when it charges again
    ADD COLUMN charging_ended_at timestamptz,
    -- the API reservation this session fulfils (app.reservations), not OCPP's integer id
    ADD COLUMN reservation_uuid  uuid,
    ADD COLUMN stop_requested_at timestamptz,
    -- the running cost reached the hold and no further hold could be placed
    ADD COLUMN hold_exhausted_at timestamptz,
    ADD COLUMN failure_reason    text,
    ADD CONSTRAINT charging_sessions_tariff_locked
        CHECK ((tariff_id IS NULL) = (tariff_version IS NULL)),
    ADD CONSTRAINT charging_sessions_billed_whole
        CHECK ((billed_at IS NULL) = (total_minor IS NULL)
               AND (total_minor IS NULL) = (receipt IS NULL));

-- One active session per driver: made impossible by the database, not only checked.
-- (Sessions opened before this migration never had two; close any older duplicates.)
UPDATE charging_sessions s SET status = 'FAILED', failure_reason = 'superseded'
 WHERE s.driver_id IS NOT NULL
   AND s.status IN ('STARTING', 'CHARGING', 'SUSPENDED', 'FINISHING')
   AND EXISTS (SELECT 1 FROM charging_sessions n
                WHERE n.driver_id = s.driver_id AND n.started_at > s.started_at
                  AND n.status IN ('STARTING', 'CHARGING', 'SUSPENDED', 'FINISHING'));
CREATE UNIQUE INDEX charging_sessions_one_active_per_driver ON charging_sessions (driver_id)
    WHERE status IN ('STARTING', 'CHARGING', 'SUSPENDED', 'FINISHING');
-- The sweep of starts the charger never confirmed.
CREATE INDEX charging_sessions_starting ON charging_sessions (created_at)
    WHERE status = 'STARTING';
-- Admin lists, newest first across the fleet.
CREATE INDEX charging_sessions_recent ON charging_sessions (started_at DESC, session_id DESC);

-- The bill of a session, written once: the primary key is what makes a StopTransaction
-- that arrives twice, or late after a reconnect, bill (and capture) exactly once.
CREATE TABLE session_bills (
    session_id      uuid PRIMARY KEY REFERENCES charging_sessions (session_id) ON DELETE CASCADE,
    tariff_id       uuid NOT NULL,
    tariff_version  integer NOT NULL,
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    energy_wh       bigint NOT NULL CHECK (energy_wh >= 0),
    session_start   timestamptz NOT NULL,
    charging_end    timestamptz NOT NULL,
    session_end     timestamptz NOT NULL,
    subtotal_minor  bigint NOT NULL CHECK (subtotal_minor >= 0),
    vat_minor       bigint NOT NULL CHECK (vat_minor >= 0),
    total_minor     bigint NOT NULL CHECK (total_minor = subtotal_minor + vat_minor),
    lines           jsonb NOT NULL,
    billed_at       timestamptz NOT NULL
);
