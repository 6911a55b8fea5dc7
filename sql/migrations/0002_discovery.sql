-- Discovery: compact sequence keys for the in-memory index of each API worker, and
-- NOTIFY triggers that tell every worker what changed (delivered on commit).
--   's<connector_seq>:<STATUS>'  a connector's status changed
--   'h<charger_seq>:<state>'     a charger's connectivity state changed
--   'f'                          sites/chargers/connectors were added, moved or edited

ALTER TABLE sites ADD COLUMN site_seq bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE sites ADD CONSTRAINT sites_site_seq_key UNIQUE (site_seq);
ALTER TABLE chargers ADD COLUMN charger_seq bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE chargers ADD CONSTRAINT chargers_charger_seq_key UNIQUE (charger_seq);
ALTER TABLE connectors ADD COLUMN connector_seq bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE connectors ADD CONSTRAINT connectors_connector_seq_key UNIQUE (connector_seq);

CREATE FUNCTION discovery_notify_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM pg_notify('vw_discovery', 's' || NEW.connector_seq || ':' || NEW.status);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER connectors_notify_status AFTER UPDATE OF status ON connectors
    FOR EACH ROW EXECUTE FUNCTION discovery_notify_status();

CREATE FUNCTION discovery_notify_connectivity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        PERFORM pg_notify('vw_discovery', 'h' || (SELECT charger_seq FROM chargers
                                                  WHERE charger_id = NEW.charger_id)
                                          || ':' || NEW.state);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER charger_connectivity_notify AFTER UPDATE OF state ON charger_connectivity
    FOR EACH ROW EXECUTE FUNCTION discovery_notify_connectivity();

CREATE FUNCTION discovery_notify_fleet() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vw_discovery', 'f');
    RETURN NULL;
END $$;
CREATE TRIGGER sites_notify_fleet AFTER INSERT OR DELETE OR UPDATE OF name, address, lat, lon, timezone
    ON sites FOR EACH STATEMENT EXECUTE FUNCTION discovery_notify_fleet();
CREATE TRIGGER chargers_notify_fleet AFTER INSERT OR DELETE OR UPDATE OF site_id
    ON chargers FOR EACH STATEMENT EXECUTE FUNCTION discovery_notify_fleet();
CREATE TRIGGER connectors_notify_fleet AFTER INSERT OR DELETE OR UPDATE OF type, power_w, connector_no, site_id
    ON connectors FOR EACH STATEMENT EXECUTE FUNCTION discovery_notify_fleet();
