-- name: insert_tariff
-- A new tariff at version 1 (its version row follows in the same transaction).
INSERT INTO tariffs (current_version, created_at, updated_at) VALUES (1, $1, $1)
RETURNING tariff_id;

-- name: insert_version
-- One immutable tariff version.
INSERT INTO tariff_versions (tariff_id, version, name, currency, vat_percent, elements,
                             created_at, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: lock_tariff
-- The current version of a tariff, locked until the transaction ends (PUT).
SELECT current_version FROM tariffs WHERE tariff_id = $1 FOR UPDATE;

-- name: set_current_version
-- Make a freshly written version the current one.
UPDATE tariffs SET current_version = $2, updated_at = $3 WHERE tariff_id = $1;

-- name: get_version
-- One version of a tariff ($2 NULL = the current one).
SELECT v.tariff_id::text AS tariff_id, v.version, v.name, v.currency, v.vat_percent,
       v.elements, v.created_at, t.created_at AS tariff_created_at
FROM tariffs t
JOIN tariff_versions v ON v.tariff_id = t.tariff_id
                      AND v.version = coalesce($2::integer, t.current_version)
WHERE t.tariff_id = $1;

-- name: list_tariffs
-- Current versions of tariffs, newest first, keyset-paginated by (created_at, tariff_id).
SELECT v.tariff_id::text AS tariff_id, v.version, v.name, v.currency, v.vat_percent,
       v.elements, v.created_at, t.created_at AS tariff_created_at
FROM tariffs t
JOIN tariff_versions v ON v.tariff_id = t.tariff_id AND v.version = t.current_version
WHERE $1::timestamptz IS NULL OR (t.created_at, t.tariff_id) < ($1, $2::uuid)
ORDER BY t.created_at DESC, t.tariff_id DESC
LIMIT $3;

-- name: current_versions
-- Current version of every tariff ($1 NULL) or of the given ones (PriceBook).
SELECT v.tariff_id::text AS tariff_id, v.version, v.name, v.currency, v.vat_percent,
       v.elements
FROM tariffs t
JOIN tariff_versions v ON v.tariff_id = t.tariff_id AND v.version = t.current_version
WHERE $1::uuid[] IS NULL OR t.tariff_id = ANY($1::uuid[]);

-- name: site_assignments
-- Site-level assignments ($1 NULL = all, else these ids) with the site's zone (PriceBook).
SELECT a.assignment_id, a.site_id, a.tariff_id::text AS tariff_id, a.effective_from,
       s.timezone
FROM tariff_assignments a JOIN sites s ON s.site_id = a.site_id
WHERE a.site_id IS NOT NULL AND ($1::bigint[] IS NULL OR a.assignment_id = ANY($1::bigint[]));

-- name: site_exists
-- Whether a site exists.
SELECT EXISTS (SELECT 1 FROM sites WHERE site_id = $1);

-- name: charger_exists
-- Whether a charger exists.
SELECT EXISTS (SELECT 1 FROM chargers WHERE charger_id = $1);

-- name: tariff_exists
-- Whether a tariff exists.
SELECT EXISTS (SELECT 1 FROM tariffs WHERE tariff_id = $1);

-- name: insert_assignment
-- Assign a tariff to a site or a charger from a moment on.
INSERT INTO tariff_assignments (tariff_id, site_id, charger_id, effective_from,
                                created_at, created_by)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING assignment_id, created_at;

-- name: connector_for_quote
-- A connector of a site with its charger, rated power and the site's zone.
SELECT k.connector_id, k.charger_id, k.site_id, k.type, k.power_w, s.timezone
FROM connectors k JOIN sites s ON s.site_id = k.site_id
WHERE k.connector_id = $1 AND k.site_id = $2;

-- name: connector_owner
-- A connector's charger and site.
SELECT charger_id, site_id FROM connectors WHERE connector_id = $1;

-- name: assignments_for
-- Every assignment of a charger ($1) or its site ($2), oldest first.
SELECT assignment_id, tariff_id::text AS tariff_id, (charger_id IS NOT NULL) AS charger_level,
       effective_from
FROM tariff_assignments
WHERE charger_id = $1 OR site_id = $2
ORDER BY effective_from, assignment_id;

-- name: driver_vehicle
-- The driver's vehicle (NULL battery when none is on the profile).
SELECT vehicle_battery_wh, vehicle_max_ac_w, vehicle_max_dc_w
FROM drivers WHERE driver_id = $1;

-- name: demo_tariff_by_name
-- The demo seed's tariff of this name (seeded once, kept across restarts).
SELECT t.tariff_id FROM tariffs t
JOIN tariff_versions v ON v.tariff_id = t.tariff_id AND v.version = t.current_version
WHERE v.name = $1
ORDER BY t.created_at LIMIT 1;

-- name: demo_assign_missing
-- Assign a tariff from $3 on to every site whose external_id starts with $2 and has none.
INSERT INTO tariff_assignments (tariff_id, site_id, effective_from, created_by)
SELECT $1, s.site_id, $3, 'demo-seed' FROM sites s
WHERE s.external_id LIKE $2 || '%'
  AND NOT EXISTS (SELECT 1 FROM tariff_assignments a WHERE a.site_id = s.site_id);

-- name: site_schedules
-- Every site's site-level assignments grouped into schedules (zone + the assignments in
-- the order they apply), with the sites sharing each schedule as concatenated 16-byte
-- UUIDs: a few rows for the whole network, no Python object per site (PriceBook load).
WITH per_site AS (
    SELECT a.site_id, s.timezone,
           array_agg(extract(epoch FROM a.effective_from)::float8
                     ORDER BY a.effective_from, a.assignment_id) AS effs,
           array_agg(a.tariff_id::text ORDER BY a.effective_from, a.assignment_id) AS tariff_ids
    FROM tariff_assignments a JOIN sites s ON s.site_id = a.site_id
    WHERE a.site_id IS NOT NULL
    GROUP BY a.site_id, s.timezone
)
SELECT timezone, effs, tariff_ids, string_agg(uuid_send(site_id), ''::bytea) AS site_ids
FROM per_site
GROUP BY timezone, effs, tariff_ids;

-- name: list_assignments
-- Assignments, latest effective_from first, filtered by tariff ($1), site ($2) or charger ($3), after the keyset ($4, $5), with where they apply and whether they are in force at $6.
SELECT a.assignment_id, a.tariff_id::text AS tariff_id, a.site_id::text AS site_id,
       a.charger_id::text AS charger_id, a.effective_from, a.created_at, a.created_by,
       s.name AS site_name, s.timezone, c.charge_point_id,
       CASE WHEN a.effective_from > $6 THEN 'scheduled'
            WHEN EXISTS (SELECT 1 FROM tariff_assignments b
                         WHERE b.site_id IS NOT DISTINCT FROM a.site_id
                           AND b.charger_id IS NOT DISTINCT FROM a.charger_id
                           AND b.effective_from <= $6
                           AND (b.effective_from, b.assignment_id)
                               > (a.effective_from, a.assignment_id)) THEN 'superseded'
            ELSE 'in_force' END AS state
FROM tariff_assignments a
LEFT JOIN chargers c ON c.charger_id = a.charger_id
JOIN sites s ON s.site_id = coalesce(a.site_id, c.site_id)
WHERE ($1::uuid IS NULL OR a.tariff_id = $1)
  AND ($2::uuid IS NULL OR a.site_id = $2)
  AND ($3::uuid IS NULL OR a.charger_id = $3)
  AND ($4::timestamptz IS NULL OR (a.effective_from, a.assignment_id) < ($4, $5::bigint))
ORDER BY a.effective_from DESC, a.assignment_id DESC
LIMIT $7;
