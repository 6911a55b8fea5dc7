-- Usage analytics over charging_sessions. Every block takes [$1, $2) as the period and
-- $3 as "now": an open session occupies its connector until now, and no session occupies
-- one for more than 48 h (a lost StopTransaction must not hold a connector for ever; it
-- also bounds the index range read). session_occupancy() (sql/migrations/0012) applies
-- those rules for every block. A session counts in `sessions` and `energy_wh` where it
-- started; it occupies connector time wherever it overlaps. Available connector time =
-- every connector that exists, from its creation on.
-- Hours are UTC hours labelled with each site's local hour of day (exact for every zone
-- whose offset is whole hours, DST days included: the repeated hour counts twice, the
-- skipped one not at all); days are each site's local calendar days.

-- name: usage_totals
-- The whole network over [$1, $2): sessions started, their energy, occupied and available connector-seconds.
WITH sess AS (SELECT * FROM session_occupancy($1, $2, $3))
SELECT (SELECT count(*) FROM sess WHERE started_at >= $1) AS sessions,
       (SELECT coalesce(sum(energy_wh), 0) FROM sess WHERE started_at >= $1)::bigint AS energy_wh,
       (SELECT coalesce(sum(extract(epoch FROM greatest(o1 - o0, interval '0'))), 0)
        FROM sess)::float8 AS occupied_s,
       (SELECT coalesce(sum(extract(epoch FROM $2::timestamptz - greatest($1::timestamptz, k.created_at))), 0)
        FROM connectors k WHERE k.created_at < $2)::float8 AS available_s;

-- name: usage_by_site
-- Per site over [$1, $2), busiest first, at most $4 sites: sessions, energy, occupied and available connector-seconds.
WITH sess AS (SELECT * FROM session_occupancy($1, $2, $3)),
used AS (
    SELECT site_id,
           count(*) FILTER (WHERE started_at >= $1) AS sessions,
           coalesce(sum(energy_wh) FILTER (WHERE started_at >= $1), 0) AS energy_wh,
           sum(extract(epoch FROM greatest(o1 - o0, interval '0'))) AS occupied_s
    FROM sess
    GROUP BY site_id
),
avail AS (
    SELECT k.site_id,
           sum(extract(epoch FROM $2::timestamptz - greatest($1::timestamptz, k.created_at))) AS available_s
    FROM connectors k
    WHERE k.created_at < $2
    GROUP BY k.site_id
)
SELECT s.site_id::text AS site_id, s.name, s.timezone,
       coalesce(u.sessions, 0) AS sessions,
       coalesce(u.energy_wh, 0)::bigint AS energy_wh,
       coalesce(u.occupied_s, 0)::float8 AS occupied_s,
       a.available_s::float8 AS available_s
FROM avail a
JOIN sites s ON s.site_id = a.site_id
LEFT JOIN used u ON u.site_id = a.site_id
ORDER BY coalesce(u.sessions, 0) DESC, coalesce(u.occupied_s, 0) DESC, s.name, s.site_id
LIMIT $4;

-- name: usage_by_hour
-- Per local hour of day (0-23) over [$1, $2): sessions started, energy, occupied and available connector-seconds.
WITH zones AS (
    SELECT s.timezone, greatest(k.created_at, $1::timestamptz) AS since, count(*) AS n
    FROM connectors k JOIN sites s ON s.site_id = k.site_id
    WHERE k.created_at < $2
    GROUP BY 1, 2
),
hours AS (
    SELECT u FROM generate_series(date_trunc('hour', $1::timestamptz), $2::timestamptz,
                                  interval '1 hour') AS u
),
avail AS (
    SELECT extract(hour FROM h.u AT TIME ZONE z.timezone)::int AS hour,
           sum(z.n * extract(epoch FROM least(h.u + interval '1 hour', $2::timestamptz)
                                      - greatest(h.u, z.since))) AS available_s
    FROM zones z JOIN hours h ON h.u + interval '1 hour' > z.since AND h.u < $2
    GROUP BY 1
),
sess AS (SELECT * FROM session_occupancy($1, $2, $3)),
occupied AS (
    SELECT extract(hour FROM u AT TIME ZONE x.timezone)::int AS hour,
           sum(extract(epoch FROM least(u + interval '1 hour', x.o1) - greatest(u, x.o0)))
               AS occupied_s
    FROM sess x,
         generate_series(date_trunc('hour', x.o0), x.o1, interval '1 hour') AS u
    WHERE x.o1 > x.o0 AND u < x.o1
    GROUP BY 1
),
started AS (
    SELECT extract(hour FROM started_at AT TIME ZONE timezone)::int AS hour,
           count(*) AS sessions, sum(energy_wh) AS energy_wh
    FROM sess WHERE started_at >= $1
    GROUP BY 1
)
SELECT h.hour,
       coalesce(st.sessions, 0) AS sessions,
       coalesce(st.energy_wh, 0)::bigint AS energy_wh,
       coalesce(o.occupied_s, 0)::float8 AS occupied_s,
       coalesce(a.available_s, 0)::float8 AS available_s
FROM generate_series(0, 23) AS h (hour)
LEFT JOIN started st ON st.hour = h.hour
LEFT JOIN occupied o ON o.hour = h.hour
LEFT JOIN avail a ON a.hour = h.hour
ORDER BY h.hour;

-- name: usage_by_day
-- Per local calendar day over [$1, $2): sessions started, energy, occupied and available connector-seconds.
WITH zones AS (
    SELECT s.timezone, greatest(k.created_at, $1::timestamptz) AS since, count(*) AS n
    FROM connectors k JOIN sites s ON s.site_id = k.site_id
    WHERE k.created_at < $2
    GROUP BY 1, 2
),
days AS (  -- each zone's local days that overlap the period, as real instants
    SELECT z.timezone, d::date AS day,
           greatest(d AT TIME ZONE z.timezone, $1::timestamptz) AS b0,
           least((d + interval '1 day') AT TIME ZONE z.timezone, $2::timestamptz) AS b1
    FROM (SELECT DISTINCT timezone FROM zones) z,
         generate_series(date_trunc('day', $1::timestamptz AT TIME ZONE z.timezone),
                         $2::timestamptz AT TIME ZONE z.timezone, interval '1 day') AS d
),
avail AS (
    SELECT d.day, sum(z.n * extract(epoch FROM d.b1 - greatest(d.b0, z.since))) AS available_s
    FROM zones z JOIN days d ON d.timezone = z.timezone AND d.b1 > greatest(d.b0, z.since)
    GROUP BY d.day
),
sess AS (SELECT * FROM session_occupancy($1, $2, $3)),
occupied AS (
    SELECT l::date AS day,
           sum(extract(epoch FROM least((l + interval '1 day') AT TIME ZONE x.timezone, x.o1)
                               - greatest(l AT TIME ZONE x.timezone, x.o0))) AS occupied_s
    FROM sess x,
         generate_series(date_trunc('day', x.o0 AT TIME ZONE x.timezone),
                         x.o1 AT TIME ZONE x.timezone, interval '1 day') AS l
    WHERE x.o1 > x.o0 AND l AT TIME ZONE x.timezone < x.o1
    GROUP BY 1
),
started AS (
    SELECT (started_at AT TIME ZONE timezone)::date AS day,
           count(*) AS sessions, sum(energy_wh) AS energy_wh
    FROM sess WHERE started_at >= $1
    GROUP BY 1
)
SELECT a.day,
       coalesce(st.sessions, 0) AS sessions,
       coalesce(st.energy_wh, 0)::bigint AS energy_wh,
       coalesce(o.occupied_s, 0)::float8 AS occupied_s,
       a.available_s::float8 AS available_s
FROM avail a
LEFT JOIN started st ON st.day = a.day
LEFT JOIN occupied o ON o.day = a.day
ORDER BY a.day;

-- name: revenue_by
-- Billed totals (incl. VAT) of the sessions started in [$1, $2) per currency, keyed by site ($3 = 'site'), local hour ('hour'), local day ('day') or '' (the whole network).
SELECT CASE $3::text
           WHEN 'site' THEN s.site_id::text
           WHEN 'hour' THEN extract(hour FROM cs.started_at AT TIME ZONE s.timezone)::int::text
           WHEN 'day' THEN (cs.started_at AT TIME ZONE s.timezone)::date::text
           ELSE ''
       END AS key,
       cs.currency,
       sum(cs.total_minor)::bigint AS amount_minor
FROM charging_sessions cs
JOIN chargers ch ON ch.charger_id = cs.charger_id
JOIN sites s ON s.site_id = ch.site_id
WHERE cs.started_at >= $1 AND cs.started_at < $2 AND cs.status <> 'FAILED'
  AND cs.billed_at IS NOT NULL AND cs.currency IS NOT NULL
GROUP BY 1, 2
ORDER BY 1, 2;
