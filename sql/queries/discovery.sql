-- name: index_sites
-- Every site, for the in-memory index (UUIDs as 16 raw bytes).
SELECT site_seq, uuid_send(site_id) AS site_id, name, address, lat, lon, timezone FROM sites;

-- name: copy_chargers
-- Every charger for the index, as fixed-width binary COPY rows ($1: visible states).
SELECT c.charger_seq, (h.state = ANY($1::text[]))::int4 AS visible, c.charger_id
FROM chargers c
JOIN charger_connectivity h ON h.charger_id = c.charger_id;

-- name: copy_connectors
-- Every connector for the index, as fixed-width binary COPY rows; type and status as
-- codes (0-based positions in $1 and $2, the index's own tables).
SELECT k.connector_seq, c.charger_seq, s.site_seq, k.connector_no::int4,
       (array_position($1::text[], k.type) - 1)::int4 AS type,
       k.power_w::int4,
       (array_position($2::text[], k.status) - 1)::int4 AS status,
       k.connector_id
FROM connectors k
JOIN chargers c ON c.charger_id = k.charger_id
JOIN sites s ON s.site_id = k.site_id;
