-- Charger link (OCPP 1.6J): the live socket of each charger, charging sessions with the
-- integer transactionId we assign, and the meter samples chargers report.

-- Which connection currently holds each charger (any API process). A socket that closes
-- marks the charger offline after the grace period only if it is still the current one.
CREATE TABLE ocpp_links (
    charger_id       uuid PRIMARY KEY REFERENCES chargers (charger_id) ON DELETE CASCADE,
    connection_id    uuid NOT NULL,
    connected_at     timestamptz NOT NULL DEFAULT now(),
    disconnected_at  timestamptz,
    boot_iccid       text,
    boot_info        jsonb
);

-- OCPP 1.6 transactionId is an integer (int32): one sequence for the whole fleet.
CREATE SEQUENCE ocpp_transaction_ids AS integer START 1000;

CREATE TABLE charging_sessions (
    session_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    transaction_id   integer NOT NULL UNIQUE DEFAULT nextval('ocpp_transaction_ids'),
    charger_id       uuid NOT NULL REFERENCES chargers (charger_id) ON DELETE CASCADE,
    connector_id     uuid REFERENCES connectors (connector_id) ON DELETE SET NULL,
    connector_no     integer NOT NULL,
    id_tag           text NOT NULL,
    id_tag_status    text NOT NULL,
    driver_id        uuid REFERENCES drivers (driver_id) ON DELETE SET NULL,
    reservation_id   integer,
    status           text NOT NULL DEFAULT 'CHARGING'
                     CHECK (status IN ('STARTING', 'CHARGING', 'SUSPENDED', 'FINISHING',
                                       'COMPLETED', 'FAILED')),
    meter_start_wh   bigint NOT NULL,
    meter_stop_wh    bigint,
    energy_wh        bigint NOT NULL DEFAULT 0,
    power_w          integer,
    soc_percent      double precision,
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    stop_reason      text,
    last_meter_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- A StartTransaction re-sent after a lost answer gets the same transactionId back.
CREATE UNIQUE INDEX charging_sessions_start ON charging_sessions (charger_id, connector_no, started_at);
CREATE INDEX charging_sessions_open ON charging_sessions (charger_id, connector_no)
    WHERE ended_at IS NULL;
CREATE INDEX charging_sessions_driver ON charging_sessions (driver_id, started_at DESC);

CREATE TABLE meter_samples (
    sample_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charger_id      uuid NOT NULL REFERENCES chargers (charger_id) ON DELETE CASCADE,
    connector_no    integer NOT NULL,
    transaction_id  integer REFERENCES charging_sessions (transaction_id) ON DELETE CASCADE,
    at              timestamptz NOT NULL,
    measurand       text NOT NULL,
    value           double precision NOT NULL,
    unit            text,
    context         text,
    phase           text,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX meter_samples_tx ON meter_samples (transaction_id, at);
CREATE INDEX meter_samples_charger ON meter_samples (charger_id, at DESC);
