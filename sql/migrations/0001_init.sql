-- Foundation schema: fleet (sites, chargers, connectors), connectivity state, staff,
-- audit log, idempotency keys and the job outbox.
-- Money and energy are integers (minor units, Wh); power is stored in watts.

CREATE TABLE sites (
    site_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id  text NOT NULL UNIQUE,
    name         text NOT NULL,
    address      text NOT NULL DEFAULT '',
    lat          double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon          double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    timezone     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Nearest-neighbour search: GiST over a built-in point (lon, lat) supports
-- `ORDER BY point(lon, lat) <-> point($lon, $lat)` index scans without extensions.
CREATE INDEX sites_position_gist ON sites USING gist (point(lon, lat));

CREATE TABLE chargers (
    charger_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    site_id           uuid NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
    charge_point_id   text NOT NULL UNIQUE CHECK (length(charge_point_id) BETWEEN 1 AND 48),
    ocpp_password_hash text NOT NULL,
    iccid             text,
    bound_imei        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chargers_site ON chargers (site_id);
CREATE UNIQUE INDEX chargers_iccid ON chargers (iccid) WHERE iccid IS NOT NULL;

CREATE TABLE connectors (
    connector_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    charger_id    uuid NOT NULL REFERENCES chargers (charger_id) ON DELETE CASCADE,
    -- denormalised so discovery can read a site's connectors without a join
    site_id       uuid NOT NULL REFERENCES sites (site_id) ON DELETE CASCADE,
    connector_no  integer NOT NULL CHECK (connector_no BETWEEN 1 AND 99),
    type          text NOT NULL CHECK (type IN ('CCS2', 'CHADEMO', 'TYPE2', 'CCS1', 'NACS', 'GBT')),
    power_w       integer NOT NULL CHECK (power_w > 0 AND power_w <= 2000000),
    status        text NOT NULL DEFAULT 'UNAVAILABLE'
                  CHECK (status IN ('AVAILABLE', 'OCCUPIED', 'RESERVED', 'UNAVAILABLE', 'FAULTED')),
    status_at     timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (charger_id, connector_no)
);
CREATE INDEX connectors_site ON connectors (site_id);

-- One row per charger: the combined connectivity verdict discovery filters on.
CREATE TABLE charger_connectivity (
    charger_id     uuid PRIMARY KEY REFERENCES chargers (charger_id) ON DELETE CASCADE,
    state          text NOT NULL DEFAULT 'offline'
                   CHECK (state IN ('online', 'offline', 'quarantined', 'degraded')),
    reason         text NOT NULL DEFAULT 'never_connected',
    last_seen_at   timestamptz,
    stale          boolean NOT NULL DEFAULT false,
    sim_status     text,
    imei           text,
    changed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX charger_connectivity_state ON charger_connectivity (state);

-- Every change of connectivity state, with who/what decided it and why.
CREATE TABLE connectivity_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    charger_id  uuid NOT NULL REFERENCES chargers (charger_id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    from_state  text,
    to_state    text NOT NULL,
    reason      text NOT NULL,
    source      text NOT NULL
);
CREATE INDEX connectivity_changes_charger ON connectivity_changes (charger_id, at DESC);

CREATE TABLE staff_users (
    staff_id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email            text NOT NULL,
    password_hash    text NOT NULL,
    roles            text[] NOT NULL CHECK (
                         cardinality(roles) > 0
                         AND roles <@ ARRAY['admin', 'pricing_admin', 'operator', 'viewer']),
    totp_secret      text NOT NULL,
    totp_last_step   bigint NOT NULL DEFAULT 0,
    failed_logins    integer NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    disabled         boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX staff_users_email ON staff_users (lower(email));

CREATE TABLE audit_log (
    audit_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor_type   text NOT NULL CHECK (actor_type IN ('staff', 'system', 'cli')),
    actor_id     text,
    actor_email  text,
    action       text NOT NULL,
    entity_type  text NOT NULL,
    entity_id    text,
    before       jsonb,
    after        jsonb,
    request_id   text
);
CREATE INDEX audit_log_at ON audit_log (at DESC, audit_id DESC);
CREATE INDEX audit_log_entity ON audit_log (entity_type, entity_id);

-- Idempotency-Key replays: the first response to (scope, key) is kept and replayed.
CREATE TABLE idempotency_keys (
    scope         text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status_code   integer,
    headers       jsonb,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- Transactional outbox: jobs written in the same transaction as the change that needs
-- them; a relay enqueues them to arq and a sweeper re-enqueues what Redis lost.
CREATE TABLE outbox (
    outbox_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job           text NOT NULL,
    args          jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key    text UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    available_at  timestamptz NOT NULL DEFAULT now(),
    enqueued_at   timestamptz,
    done_at       timestamptz,
    attempts      integer NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (available_at) WHERE done_at IS NULL;

-- Every charger has a connectivity row from birth: offline until it first connects.
CREATE FUNCTION chargers_init_connectivity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO charger_connectivity (charger_id) VALUES (NEW.charger_id);
    RETURN NEW;
END $$;
CREATE TRIGGER chargers_init_connectivity AFTER INSERT ON chargers
    FOR EACH ROW EXECUTE FUNCTION chargers_init_connectivity();
