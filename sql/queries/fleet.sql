-- name: upsert_sites
-- Insert or update sites by external_id; counts the rows inserted and actually changed.
WITH up AS (
    INSERT INTO sites AS s (external_id, name, address, lat, lon, timezone)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[],
                         $6::text[])
    ON CONFLICT (external_id) DO UPDATE
       SET name = EXCLUDED.name, address = EXCLUDED.address, lat = EXCLUDED.lat,
           lon = EXCLUDED.lon, timezone = EXCLUDED.timezone, updated_at = now()
     WHERE (s.name, s.address, s.lat, s.lon, s.timezone)
           IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.address, EXCLUDED.lat, EXCLUDED.lon,
                             EXCLUDED.timezone)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM up;

-- name: site_ids_by_external_id
-- site_id for each external_id given, as two parallel arrays (one row, however many).
SELECT coalesce(array_agg(external_id), '{}') AS keys,
       coalesce(array_agg(site_id), '{}') AS ids
FROM sites WHERE external_id = ANY($1::text[]);

-- name: chargers_by_iccid
-- Chargers currently holding any of these ICCIDs (to refuse a SIM registered twice).
SELECT charge_point_id, iccid FROM chargers WHERE iccid = ANY($1::text[]);

-- name: upsert_chargers
-- Insert or update chargers by charge_point_id; counts the rows inserted and actually changed.
WITH up AS (
    INSERT INTO chargers AS c (charge_point_id, site_id, ocpp_password_hash, iccid)
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[])
    ON CONFLICT (charge_point_id) DO UPDATE
       SET site_id = EXCLUDED.site_id, ocpp_password_hash = EXCLUDED.ocpp_password_hash,
           iccid = EXCLUDED.iccid, updated_at = now()
     WHERE (c.site_id, c.ocpp_password_hash, c.iccid)
           IS DISTINCT FROM (EXCLUDED.site_id, EXCLUDED.ocpp_password_hash, EXCLUDED.iccid)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM up;

-- name: charger_ids_by_cpid
-- charger_id for each charge_point_id given, as two parallel arrays (one row).
SELECT coalesce(array_agg(charge_point_id), '{}') AS keys,
       coalesce(array_agg(charger_id), '{}') AS ids
FROM chargers WHERE charge_point_id = ANY($1::text[]);

-- name: upsert_connectors
-- Insert or update connectors by (charger_id, connector_no); counts inserted and changed.
WITH up AS (
    INSERT INTO connectors AS k (charger_id, site_id, connector_no, type, power_w)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::int[])
    ON CONFLICT (charger_id, connector_no) DO UPDATE
       SET site_id = EXCLUDED.site_id, type = EXCLUDED.type, power_w = EXCLUDED.power_w,
           updated_at = now()
     WHERE (k.site_id, k.type, k.power_w)
           IS DISTINCT FROM (EXCLUDED.site_id, EXCLUDED.type, EXCLUDED.power_w)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM up;

-- name: list_sites
-- A page of sites ordered by external_id, optionally one external_id.
SELECT site_id::text AS site_id, external_id, name, address, lat, lon, timezone
FROM sites
WHERE ($1::text IS NULL OR external_id = $1)
  AND ($2::text IS NULL OR external_id > $2)
ORDER BY external_id
LIMIT $3;

-- name: chargers_of_sites
-- Chargers of the given sites, with their connectors as a JSON array.
SELECT c.site_id, c.charger_id::text AS charger_id, c.charge_point_id, c.iccid,
       coalesce(jsonb_agg(jsonb_build_object(
           'connector_id', k.connector_id, 'connector_no', k.connector_no,
           'type', k.type, 'power_kw', k.power_w / 1000.0)
         ORDER BY k.connector_no) FILTER (WHERE k.connector_id IS NOT NULL), '[]') AS connectors
FROM chargers c LEFT JOIN connectors k ON k.charger_id = c.charger_id
WHERE c.site_id = ANY($1::uuid[])
GROUP BY c.site_id, c.charger_id
ORDER BY c.charge_point_id;

-- name: list_charger_health
-- A page of chargers with their connectivity, optionally filtered by state.
SELECT c.charger_id::text AS charger_id, c.charge_point_id, c.site_id::text AS site_id, c.iccid,
       h.state AS connectivity, h.reason AS connectivity_reason, h.last_seen_at, h.stale,
       h.sim_status, h.imei
FROM chargers c JOIN charger_connectivity h ON h.charger_id = c.charger_id
WHERE ($1::text IS NULL OR h.state = $1)
  AND ($2::text IS NULL OR c.charge_point_id > $2)
ORDER BY c.charge_point_id
LIMIT $3;
