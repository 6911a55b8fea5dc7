-- name: index_sites
-- Every site, for the in-memory index (UUIDs as 16 raw bytes).
SELECT site_seq, uuid_send(site_id) AS site_id, name, address, lat, lon, timezone FROM sites;

-- name: index_chargers
-- Every charger with its connectivity state, for the in-memory index.
SELECT c.charger_seq, uuid_send(c.charger_id) AS charger_id, s.site_seq, h.state
FROM chargers c
JOIN sites s ON s.site_id = c.site_id
JOIN charger_connectivity h ON h.charger_id = c.charger_id;

-- name: index_connectors
-- Every connector, for the in-memory index.
SELECT k.connector_seq, uuid_send(k.connector_id) AS connector_id, c.charger_seq, s.site_seq,
       k.connector_no, k.type, k.power_w, k.status
FROM connectors k
JOIN chargers c ON c.charger_id = k.charger_id
JOIN sites s ON s.site_id = k.site_id;
