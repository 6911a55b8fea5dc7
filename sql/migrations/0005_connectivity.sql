-- Connectivity platform (Cisco IoT Control Center): push events, operator alerts and the
-- platform's last known signals per charger (INTEGRATIONS.md §2).

-- Every accepted push event, stored and applied in the same transaction (a crash after
-- the 200 loses nothing). `event_id` dedupes resends; (sent_at_raw, signature2) refuses a
-- captured signature replayed under another event id (the signature covers only the
-- timestamp).
CREATE TABLE connectivity_push_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      text NOT NULL UNIQUE,
    type          text NOT NULL,
    iccid         text NOT NULL,
    sent_at       timestamptz NOT NULL,
    sent_at_raw   text NOT NULL,
    signature2    text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at   timestamptz NOT NULL DEFAULT now(),
    processed_at  timestamptz,
    outcome       text,
    UNIQUE (sent_at_raw, signature2)
);
CREATE INDEX connectivity_push_events_iccid ON connectivity_push_events (iccid, received_at DESC);

-- Operator alerts (the SMS issue delivers them).
CREATE TABLE connectivity_alerts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charger_id    uuid NOT NULL REFERENCES chargers (charger_id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('quarantine', 'offline')),
    reason        text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    acknowledged  boolean NOT NULL DEFAULT false
);
CREATE INDEX connectivity_alerts_open ON connectivity_alerts (created_at) WHERE NOT acknowledged;
CREATE INDEX connectivity_alerts_charger ON connectivity_alerts (charger_id, created_at DESC);

-- The platform's last known signals (sim_status and imei exist since 0001).
ALTER TABLE charger_connectivity
    ADD COLUMN sim_status_at           timestamptz,
    ADD COLUMN session_open            boolean,
    ADD COLUMN session_ended_at        timestamptz,
    ADD COLUMN session_at              timestamptz,
    ADD COLUMN imei_change_at          timestamptz,
    ADD COLUMN quarantine_released_at  timestamptz,
    ADD COLUMN usage_exceeded          boolean NOT NULL DEFAULT false,
    ADD COLUMN platform_last_ok_at     timestamptz;

-- Where the platform sweep (GET /devices?modifiedSince=) resumes; one row.
CREATE TABLE connectivity_sweep (
    id            integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    since         timestamptz NOT NULL,
    last_ok_at    timestamptz,
    last_error    text,
    last_error_at timestamptz
);
