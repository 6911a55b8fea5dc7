-- Pricing: tariffs with immutable versions (OCPI 2.2.1 elements as jsonb), and their
-- assignments to sites and chargers over time. Every API worker keeps a PriceBook in
-- memory; NOTIFY on channel 'vw_pricing' (delivered on commit) tells it what changed:
--   't<tariff_id>'      a tariff got a new version
--   'a<assignment_id>'  an assignment was added
--   'f'                 anything else (deletes, site time zones): reload everything

CREATE TABLE tariffs (
    tariff_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    current_version  integer NOT NULL DEFAULT 1 CHECK (current_version >= 1),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- A version is never changed or deleted once written: a session keeps the version it
-- started with, and receipts must be reproducible from it.
CREATE TABLE tariff_versions (
    tariff_id    uuid NOT NULL REFERENCES tariffs (tariff_id),
    version      integer NOT NULL CHECK (version >= 1),
    name         text NOT NULL CHECK (length(name) <= 200),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    vat_percent  text NOT NULL,
    elements     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text,
    PRIMARY KEY (tariff_id, version)
);

CREATE FUNCTION pricing_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tariff versions are immutable (publish a new version instead)';
END $$;
CREATE TRIGGER tariff_versions_immutable BEFORE UPDATE OR DELETE ON tariff_versions
    FOR EACH ROW EXECUTE FUNCTION pricing_versions_immutable();

-- Which tariff applies where from when: charger-level beats site-level, and per level the
-- assignment with the latest effective_from <= t applies (ties: the later assignment).
CREATE TABLE tariff_assignments (
    assignment_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tariff_id       uuid NOT NULL REFERENCES tariffs (tariff_id),
    site_id         uuid REFERENCES sites (site_id) ON DELETE CASCADE,
    charger_id      uuid REFERENCES chargers (charger_id) ON DELETE CASCADE,
    effective_from  timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by      text,
    CHECK ((site_id IS NULL) <> (charger_id IS NULL))
);
CREATE INDEX tariff_assignments_site ON tariff_assignments (site_id, effective_from)
    WHERE site_id IS NOT NULL;
CREATE INDEX tariff_assignments_charger ON tariff_assignments (charger_id, effective_from)
    WHERE charger_id IS NOT NULL;
CREATE INDEX tariff_assignments_tariff ON tariff_assignments (tariff_id);

CREATE FUNCTION pricing_notify_tariff() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vw_pricing', 't' || NEW.tariff_id);
    RETURN NULL;
END $$;
CREATE TRIGGER tariffs_notify AFTER INSERT OR UPDATE OF current_version ON tariffs
    FOR EACH ROW EXECUTE FUNCTION pricing_notify_tariff();

CREATE FUNCTION pricing_notify_assignment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vw_pricing', 'a' || NEW.assignment_id);
    RETURN NULL;
END $$;
CREATE TRIGGER tariff_assignments_notify AFTER INSERT ON tariff_assignments
    FOR EACH ROW EXECUTE FUNCTION pricing_notify_assignment();

CREATE FUNCTION pricing_notify_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vw_pricing', 'f');
    RETURN NULL;
END $$;
CREATE TRIGGER tariff_assignments_notify_full AFTER DELETE OR UPDATE ON tariff_assignments
    FOR EACH STATEMENT EXECUTE FUNCTION pricing_notify_full();
CREATE TRIGGER sites_notify_pricing AFTER DELETE OR UPDATE OF timezone ON sites
    FOR EACH STATEMENT EXECUTE FUNCTION pricing_notify_full();
