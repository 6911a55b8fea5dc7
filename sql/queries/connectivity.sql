-- name: insert_push_event
-- Store a push event unless its eventId, or its (timestamp, signature2) pair, was seen.
INSERT INTO connectivity_push_events
       (event_id, type, iccid, sent_at, sent_at_raw, signature2, payload, received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: push_event_by_id
-- A stored push event by its eventId (to tell a resend from a replayed signature).
SELECT id, event_id, processed_at, outcome FROM connectivity_push_events WHERE event_id = $1;

-- name: mark_push_processed
-- Record what applying a push event did.
UPDATE connectivity_push_events SET processed_at = $2, outcome = $3 WHERE id = $1;

-- name: charger_signals_for_update
-- A charger ($1 its id, or $2 the ICCID of its SIM) with every stored signal (its
-- connectivity row, its OCPP link), the connectivity row locked for the update.
SELECT c.charger_id, c.charge_point_id, c.iccid, c.bound_imei,
       h.state, h.reason, h.last_seen_at, h.stale, h.sim_status, h.sim_status_at, h.imei,
       h.session_open, h.session_ended_at, h.session_at, h.imei_change_at,
       h.quarantine_released_at, h.usage_exceeded, h.platform_last_ok_at, h.changed_at,
       h.offline_since, l.boot_iccid,
       CASE WHEN l.charger_id IS NULL THEN NULL ELSE l.disconnected_at IS NULL END AS link_open,
       l.disconnected_at AS link_down_since,
       (c.iccid IS NULL AND l.boot_iccid IS NOT NULL
        AND EXISTS (SELECT 1 FROM chargers o
                     WHERE o.iccid = l.boot_iccid AND o.charger_id <> c.charger_id)) AS iccid_taken
FROM chargers c JOIN charger_connectivity h ON h.charger_id = c.charger_id
     LEFT JOIN ocpp_links l ON l.charger_id = c.charger_id
WHERE c.charger_id = $1::uuid OR c.iccid = $2::text
FOR UPDATE OF h;

-- name: update_platform_signals
-- Store the platform's last known signals for one charger.
UPDATE charger_connectivity
   SET sim_status = $2, sim_status_at = $3, imei = $4, session_open = $5,
       session_ended_at = $6, session_at = $7, imei_change_at = $8,
       quarantine_released_at = $9, usage_exceeded = $10, platform_last_ok_at = $11,
       stale = $12
 WHERE charger_id = $1;

-- name: set_verdict
-- Write the verdict of app.connectivity.service.settle (a state change fires the discovery
-- NOTIFY); $5 is when the current outage began (NULL unless offline).
UPDATE charger_connectivity
   SET state = $2, reason = $3, stale = $4, offline_since = $5,
       changed_at = CASE WHEN (state, reason) IS DISTINCT FROM ($2, $3) THEN $6
                         ELSE changed_at END
 WHERE charger_id = $1;

-- name: insert_change
-- Record one change of connectivity state: what, when, why and who/what decided it.
INSERT INTO connectivity_changes (charger_id, at, from_state, to_state, reason, source)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: insert_alert
-- Raise an operator alert once per dedupe key; returns its id when it is new.
INSERT INTO operator_alerts (charger_id, kind, reason, detail, dedupe_key, raised_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING alert_id;

-- name: rebind_imei
-- Bind the charger to the IMEI its SIM is in now (after an operator's release).
UPDATE chargers SET bound_imei = $2, updated_at = now() WHERE charger_id = $1;

-- name: sweep_cursor
-- When the last successful sweep started (NULL before the first).
SELECT since FROM connectivity_sweep WHERE id = 1;

-- name: save_sweep_ok
-- A sweep succeeded: resume from when it started next time.
INSERT INTO connectivity_sweep (id, since, last_ok_at) VALUES (1, $1, $1)
ON CONFLICT (id) DO UPDATE SET since = EXCLUDED.since, last_ok_at = EXCLUDED.last_ok_at;

-- name: save_sweep_error
-- A sweep failed (the platform is down or refused): remember why, keep the cursor.
INSERT INTO connectivity_sweep (id, since, last_error, last_error_at) VALUES (1, '2000-01-01T00:00:00Z', $1, $2)
ON CONFLICT (id) DO UPDATE SET last_error = EXCLUDED.last_error,
                               last_error_at = EXCLUDED.last_error_at;

-- name: fleet_iccids
-- Which of these ICCIDs belong to the fleet.
SELECT iccid FROM chargers WHERE iccid = ANY($1::text[]);

-- name: touch_platform_ok
-- The platform answered a full sweep: every SIM's last known signals are current.
UPDATE charger_connectivity h SET platform_last_ok_at = $1, stale = false
FROM chargers c
WHERE c.charger_id = h.charger_id AND c.iccid IS NOT NULL
  AND (h.platform_last_ok_at IS NULL OR h.platform_last_ok_at < $1 OR h.stale);

-- name: mark_stale
-- The platform is unreachable: flag signals older than the bound; the state is kept.
UPDATE charger_connectivity SET stale = true
WHERE NOT stale AND platform_last_ok_at < $1;

-- name: rebind_iccid
-- Register the SIM the charger booted with (after an operator's release).
UPDATE chargers SET iccid = $2, updated_at = now() WHERE charger_id = $1;

-- name: forget_platform_signals
-- Another SIM: what the platform said about the old one no longer applies.
UPDATE charger_connectivity
   SET sim_status = NULL, sim_status_at = NULL, imei = NULL, session_open = NULL,
       session_ended_at = NULL, session_at = NULL, usage_exceeded = false
 WHERE charger_id = $1;

-- name: seen
-- A message arrived from the charger (boot, heartbeat): it was seen at $2.
UPDATE charger_connectivity SET last_seen_at = $2 WHERE charger_id = $1;

-- name: link_opened
-- One more authenticated connection of a charger; the count restarts when the window ran out.
UPDATE charger_connectivity
   SET flap_window_start = CASE WHEN flap_window_start IS NULL
                                  OR flap_window_start < $2::timestamptz - make_interval(secs => $3::float8)
                                THEN $2::timestamptz ELSE flap_window_start END,
       flap_count = CASE WHEN flap_window_start IS NULL
                           OR flap_window_start < $2::timestamptz - make_interval(secs => $3::float8)
                         THEN 1 ELSE flap_count + 1 END
 WHERE charger_id = $1
RETURNING flap_count, flap_window_start;

-- name: links_due
-- Visible chargers whose link evidence ran out by $1: socket down longer than the grace
-- ($2 s), no message for $3 s, or no data session for $4 s. Settled one by one.
SELECT h.charger_id
FROM charger_connectivity h LEFT JOIN ocpp_links l ON l.charger_id = h.charger_id
WHERE h.state IN ('online', 'degraded')
  AND ((l.disconnected_at IS NOT NULL AND l.disconnected_at < $1::timestamptz - make_interval(secs => $2::float8))
       OR h.last_seen_at < $1::timestamptz - make_interval(secs => $3::float8)
       OR (h.session_open = false AND h.session_ended_at < $1::timestamptz - make_interval(secs => $4::float8)))
ORDER BY h.charger_id;

-- name: raise_offline_alerts
-- Chargers that were seen once and are offline longer than $2 s: one alert per outage.
INSERT INTO operator_alerts (charger_id, kind, reason, detail, dedupe_key, raised_at)
SELECT h.charger_id, 'offline', h.reason,
       jsonb_build_object('offline_since', h.offline_since),
       'offline:' || h.charger_id::text || ':' || to_char(h.offline_since AT TIME ZONE 'UTC',
                                                          'YYYY-MM-DD"T"HH24:MI:SS.US'),
       $1
FROM charger_connectivity h
WHERE h.state = 'offline' AND h.reason <> 'never_connected' AND h.last_seen_at IS NOT NULL
  AND h.offline_since < $1::timestamptz - make_interval(secs => $2::float8)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING alert_id;

-- name: open_alerts
-- How many alerts nobody acknowledged yet.
SELECT count(*) FROM operator_alerts WHERE acknowledged_at IS NULL;

-- name: list_alerts
-- A page of alerts, newest first, optionally by kind and only the open ones. Payment
-- alerts have no charger (LEFT JOIN).
SELECT a.alert_id, a.charger_id::text AS charger_id, c.charge_point_id, a.kind, a.reason, a.detail, a.raised_at,
       a.acknowledged_at, a.delivered_at, a.session_id::text AS session_id, a.payment_intent_id
FROM operator_alerts a LEFT JOIN chargers c ON c.charger_id = a.charger_id
WHERE ($1::text IS NULL OR a.kind = $1)
  AND (NOT $2::boolean OR a.acknowledged_at IS NULL)
  AND ($3::bigint IS NULL OR a.alert_id < $3)
ORDER BY a.alert_id DESC
LIMIT $4;
