-- name: credentials
-- A charger's id, password hash and registered ICCID by its OCPP identity.
SELECT charger_id, ocpp_password_hash, iccid FROM chargers WHERE charge_point_id = $1;

-- name: claim_link
-- This connection now holds the charger (replaces any earlier one, in any process).
INSERT INTO ocpp_links (charger_id, connection_id, connected_at, disconnected_at)
VALUES ($1, $2, now(), NULL)
ON CONFLICT (charger_id) DO UPDATE
   SET connection_id = EXCLUDED.connection_id, connected_at = now(), disconnected_at = NULL;

-- name: release_link
-- The socket of this connection closed; true when it was still the current one.
UPDATE ocpp_links SET disconnected_at = now()
 WHERE charger_id = $1 AND connection_id = $2
RETURNING true;

-- name: link_is_current_and_down
-- Whether this connection is still the charger's latest and has been closed.
SELECT EXISTS (SELECT 1 FROM ocpp_links WHERE charger_id = $1 AND connection_id = $2
                                         AND disconnected_at IS NOT NULL);

-- name: record_boot
-- Keep what the charger said at boot on its link row.
UPDATE ocpp_links SET boot_iccid = $2, boot_info = $3 WHERE charger_id = $1;

-- name: registered_iccid
-- The ICCID the charger is registered with (NULL until its first boot binds one).
SELECT iccid FROM chargers WHERE charger_id = $1;

-- name: bind_iccid
-- First boot with a SIM: bind the charger to the ICCID it reports.
UPDATE chargers SET iccid = $2, updated_at = now() WHERE charger_id = $1 AND iccid IS NULL;

-- name: connectivity_for_update
-- The charger's connectivity row, locked first (the lock order of every settle).
SELECT state, reason FROM charger_connectivity WHERE charger_id = $1 FOR UPDATE;

-- name: touch
-- A message arrived from the charger: it was seen now.
UPDATE charger_connectivity SET last_seen_at = $2 WHERE charger_id = $1;

-- name: set_connector_status
-- A connector's status from StatusNotification (only this charger's connectors).
UPDATE connectors SET status = $3, status_at = $4, updated_at = now()
 WHERE charger_id = $1 AND connector_no = $2 AND status IS DISTINCT FROM $3
RETURNING connector_no;

-- name: set_all_connector_statuses
-- Connector 0 (the whole charger) reported Unavailable/Faulted: every connector follows.
UPDATE connectors SET status = $2, status_at = $3, updated_at = now()
 WHERE charger_id = $1 AND status IS DISTINCT FROM $2;

-- name: set_open_session_status
-- The running session on a connector follows its OCPP status ($4: the car stopped drawing power, parking runs from $5); only sessions in $6 (app.sessions.state.LIVE) move.
UPDATE charging_sessions
   SET status = $3,
       charging_ended_at = CASE WHEN $4::boolean THEN COALESCE(charging_ended_at, $5) END,
       updated_at = now()
 WHERE charger_id = $1 AND connector_no = $2 AND ended_at IS NULL
   AND status = ANY($6::text[])
   AND (status <> $3 OR (charging_ended_at IS NULL) = $4::boolean)
RETURNING session_id, preauth_minor IS NOT NULL AS paid, status;

-- name: driver_by_id_tag
-- The driver an OCPP idTag belongs to (case-insensitive).
SELECT driver_id FROM drivers WHERE upper(id_tag) = upper($1);

-- name: connector_of_charger
-- A connector of this charger by its OCPP connector number.
SELECT connector_id FROM connectors WHERE charger_id = $1 AND connector_no = $2;

-- name: start_session
-- Open a charging session; a repeated StartTransaction returns the same transaction id.
INSERT INTO charging_sessions AS s (charger_id, connector_id, connector_no, id_tag,
                                    id_tag_status, driver_id, reservation_id, status,
                                    meter_start_wh, started_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (charger_id, connector_no, started_at) DO UPDATE SET updated_at = s.updated_at
RETURNING s.transaction_id, s.id_tag_status;

-- name: stop_session
-- Close an open session of this charger (a repeated StopTransaction changes nothing).
UPDATE charging_sessions
   SET meter_stop_wh = $3, ended_at = $4, stop_reason = $5,
       energy_wh = GREATEST($3 - meter_start_wh, 0), power_w = 0,
       status = CASE WHEN status = 'FAILED' THEN 'FAILED' ELSE 'COMPLETED' END,
       updated_at = now()
 WHERE charger_id = $1 AND transaction_id = $2 AND ended_at IS NULL
RETURNING transaction_id, id_tag_status;

-- name: session_of_charger
-- A started session of this charger by transaction id, locked (StopTransaction closes it once; a STARTING one has no transaction at the charger yet).
SELECT session_id, transaction_id, connector_no, meter_start_wh, ended_at, id_tag_status
  FROM charging_sessions WHERE charger_id = $1 AND transaction_id = $2 AND status <> 'STARTING'
   FOR UPDATE;

-- name: session_by_start
-- The session a StartTransaction opened already (the same message again, its answer lost).
SELECT transaction_id, id_tag_status FROM charging_sessions
 WHERE charger_id = $1 AND connector_no = $2 AND started_at = $3 AND status <> 'STARTING';

-- name: insert_samples
-- Meter samples of one MeterValues/StopTransaction message.
INSERT INTO meter_samples (charger_id, connector_no, transaction_id, at, measurand, value,
                           unit, context, phase)
SELECT $1, $2, $3, * FROM unnest($4::timestamptz[], $5::text[], $6::float8[], $7::text[],
                                 $8::text[], $9::text[]);

-- name: touch_many
-- Batched StatusNotifications: these chargers were seen now.
UPDATE charger_connectivity SET last_seen_at = $2
 WHERE charger_id = ANY($1::uuid[]);

-- name: set_connector_statuses_many
-- Batched StatusNotifications (one row per charger and connector: the latest wins).
UPDATE connectors k SET status = u.status, status_at = u.at, updated_at = now()
  FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::timestamptz[])
       AS u (charger_id, connector_no, status, at)
 WHERE k.charger_id = u.charger_id AND k.connector_no = u.connector_no
   AND k.status IS DISTINCT FROM u.status;

-- name: set_open_session_statuses_many
-- Batched: the running session on each connector follows its OCPP status (idle: parking runs from `at`); only sessions in $6 (app.sessions.state.LIVE) move.
UPDATE charging_sessions s
   SET status = u.status,
       charging_ended_at = CASE WHEN u.idle THEN COALESCE(s.charging_ended_at, u.at) END,
       updated_at = now()
  FROM unnest($1::uuid[], $2::integer[], $3::text[], $4::boolean[], $5::timestamptz[])
       AS u (charger_id, connector_no, status, idle, at)
 WHERE s.charger_id = u.charger_id AND s.connector_no = u.connector_no
   AND s.ended_at IS NULL AND s.status = ANY($6::text[])
   AND (s.status <> u.status OR (s.charging_ended_at IS NULL) = u.idle)
RETURNING s.session_id, s.preauth_minor IS NOT NULL AS paid;

-- name: session_chargers
-- Which charger each of these transactions belongs to.
SELECT transaction_id, charger_id FROM charging_sessions
 WHERE transaction_id = ANY($1::integer[]);

-- name: insert_samples_many
-- Batched MeterValues: the samples of many messages (of many chargers) at once.
INSERT INTO meter_samples (charger_id, connector_no, transaction_id, at, measurand, value,
                           unit, context, phase)
SELECT * FROM unnest($1::uuid[], $2::integer[], $3::integer[], $4::timestamptz[],
                     $5::text[], $6::float8[], $7::text[], $8::text[], $9::text[]);

-- name: update_sessions_live_many
-- Batched: each session's live state from its latest meter values (only newer win).
UPDATE charging_sessions s
   SET energy_wh = CASE WHEN u.energy IS NULL THEN s.energy_wh
                        ELSE GREATEST(u.energy - s.meter_start_wh, 0) END,
       power_w = COALESCE(u.power, s.power_w),
       soc_percent = COALESCE(u.soc, s.soc_percent),
       last_meter_at = u.at, updated_at = now()
  FROM unnest($1::uuid[], $2::integer[], $3::bigint[], $4::integer[], $5::float8[],
              $6::timestamptz[]) AS u (charger_id, transaction_id, energy, power, soc, at)
 WHERE s.charger_id = u.charger_id AND s.transaction_id = u.transaction_id
   AND s.ended_at IS NULL AND s.status <> 'STARTING'
   AND (s.last_meter_at IS NULL OR s.last_meter_at <= u.at)
RETURNING s.session_id, s.preauth_minor IS NOT NULL AS paid;
