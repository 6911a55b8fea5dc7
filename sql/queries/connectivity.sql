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

-- name: charger_by_iccid_for_update
-- The charger holding a SIM with its connectivity row, locked for the update.
SELECT c.charger_id, c.charge_point_id, c.iccid, c.bound_imei,
       h.state, h.reason, h.last_seen_at, h.stale, h.sim_status, h.sim_status_at, h.imei,
       h.session_open, h.session_ended_at, h.session_at, h.imei_change_at,
       h.quarantine_released_at, h.usage_exceeded, h.platform_last_ok_at, h.changed_at
FROM chargers c JOIN charger_connectivity h ON h.charger_id = c.charger_id
WHERE c.iccid = $1
FOR UPDATE OF h;

-- name: charger_by_id_for_update
-- A charger with its connectivity row, locked for the update.
SELECT c.charger_id, c.charge_point_id, c.iccid, c.bound_imei,
       h.state, h.reason, h.last_seen_at, h.stale, h.sim_status, h.sim_status_at, h.imei,
       h.session_open, h.session_ended_at, h.session_at, h.imei_change_at,
       h.quarantine_released_at, h.usage_exceeded, h.platform_last_ok_at, h.changed_at
FROM chargers c JOIN charger_connectivity h ON h.charger_id = c.charger_id
WHERE c.charger_id = $1
FOR UPDATE OF h;

-- name: update_platform_signals
-- Store the platform's last known signals for one charger.
UPDATE charger_connectivity
   SET sim_status = $2, sim_status_at = $3, imei = $4, session_open = $5,
       session_ended_at = $6, session_at = $7, imei_change_at = $8,
       quarantine_released_at = $9, usage_exceeded = $10, platform_last_ok_at = $11,
       stale = $12
 WHERE charger_id = $1;

-- name: set_state
-- Change a charger's connectivity verdict (fires the discovery NOTIFY).
UPDATE charger_connectivity SET state = $2, reason = $3, changed_at = $4 WHERE charger_id = $1;

-- name: insert_change
-- Record one change of connectivity state: what, when, why and who/what decided it.
INSERT INTO connectivity_changes (charger_id, at, from_state, to_state, reason, source)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: insert_alert
-- Raise an operator alert.
INSERT INTO connectivity_alerts (charger_id, kind, reason, created_at) VALUES ($1, $2, $3, $4);

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
