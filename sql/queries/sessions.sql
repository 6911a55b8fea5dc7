-- name: connector_for_start
-- A connector with its charger, site, connectivity and the starting driver's idTag; locked so that concurrent starts on it queue up.
SELECT k.connector_id, k.connector_no, k.status AS connector_status, k.power_w,
       k.charger_id, c.charge_point_id, k.site_id, s.timezone,
       h.state AS connectivity,
       (SELECT d.id_tag FROM drivers d WHERE d.driver_id = $2) AS id_tag
  FROM connectors k
  JOIN chargers c ON c.charger_id = k.charger_id
  JOIN sites s ON s.site_id = k.site_id
  JOIN charger_connectivity h ON h.charger_id = k.charger_id
 WHERE k.connector_id = $1
   FOR UPDATE OF k;

-- name: connector_busy
-- Whether a session is active (starting or running) on this connector. Its own statement, after the lock: a subquery of the locking one would read the snapshot from before the wait.
SELECT EXISTS (
    SELECT 1 FROM charging_sessions
     WHERE charger_id = $1 AND connector_no = $2 AND ended_at IS NULL
       AND status IN ('STARTING', 'CHARGING', 'SUSPENDED', 'FINISHING'));

-- name: driver_tag
-- The driver's OCPP idTag.
SELECT id_tag FROM drivers WHERE driver_id = $1;

-- name: active_session_of_driver
-- The driver's active session, if any (there is at most one).
SELECT session_id, status, charger_id, preauth_minor
  FROM charging_sessions
 WHERE driver_id = $1 AND status IN ('STARTING', 'CHARGING', 'SUSPENDED', 'FINISHING');

-- name: insert_starting
-- A new STARTING session (its OCPP transactionId is reserved now); the unique index refuses a second active one per driver.
INSERT INTO charging_sessions (origin, charger_id, connector_id, connector_no, id_tag,
                               id_tag_status, driver_id, status, meter_start_wh, started_at,
                               tariff_id, tariff_version, currency, reservation_uuid)
VALUES ($1, $2, $3, $4, $5, 'Accepted', $6, 'STARTING', 0, $7, $8, $9, $10, $11)
RETURNING session_id, transaction_id;

-- name: hold_placed
-- A hold was confirmed for this session: add it to what is authorised.
UPDATE charging_sessions
   SET preauth_minor = COALESCE(preauth_minor, 0) + $2, holds = holds + 1, updated_at = now()
 WHERE session_id = $1
RETURNING preauth_minor, holds;

-- name: discard_unheld
-- The hold was refused before anything reached the charger: the attempt leaves no session.
DELETE FROM charging_sessions
 WHERE session_id = $1 AND status = 'STARTING' AND preauth_minor IS NULL;

-- name: fail_starting
-- A start that did not happen (charger rejected, no answer, never started, cancelled): FAILED.
UPDATE charging_sessions
   SET status = 'FAILED', failure_reason = $2, ended_at = $3, updated_at = now()
 WHERE session_id = $1 AND status = 'STARTING'
RETURNING session_id, preauth_minor;

-- name: stale_starting
-- STARTING sessions older than the cut-off (the charger never started them), locked for the sweep.
SELECT session_id FROM charging_sessions
 WHERE status = 'STARTING' AND created_at < $1
 ORDER BY created_at
 LIMIT $2
   FOR UPDATE SKIP LOCKED;

-- name: request_stop
-- The driver asked to stop (RemoteStopTransaction is on its way).
UPDATE charging_sessions SET stop_requested_at = COALESCE(stop_requested_at, $2), updated_at = now()
 WHERE session_id = $1;

-- name: mark_hold_exhausted
-- The running cost reached the hold and no further hold was possible (stopped once).
UPDATE charging_sessions
   SET hold_exhausted_at = $2, stop_requested_at = COALESCE(stop_requested_at, $2),
       updated_at = now()
 WHERE session_id = $1 AND hold_exhausted_at IS NULL
RETURNING session_id;

-- name: session
-- One session with its connector, charger, site, time zone and vehicle (NULL driver = any).
SELECT * FROM session_details
 WHERE session_id = $1 AND ($2::uuid IS NULL OR driver_id = $2);

-- name: session_for_update
-- A session row locked for a state change (billing, holds).
SELECT session_id, status, preauth_minor, holds, billed_at, hold_exhausted_at
  FROM charging_sessions WHERE session_id = $1 FOR UPDATE;

-- name: driver_sessions
-- The driver's sessions, newest first, keyset-paginated by (started_at, session_id).
SELECT * FROM session_details
 WHERE driver_id = $1
   AND ($2::timestamptz IS NULL OR (started_at, session_id) < ($2, $3::uuid))
 ORDER BY started_at DESC, session_id DESC
 LIMIT $4;

-- name: admin_sessions
-- Sessions across the fleet for operators, newest first, filtered by status, site and start time.
SELECT * FROM session_details
 WHERE ($1::text IS NULL OR status = $1)
   AND ($2::uuid IS NULL OR site_id = $2)
   AND ($3::timestamptz IS NULL OR started_at >= $3)
   AND ($4::timestamptz IS NULL OR started_at < $4)
   AND ($5::timestamptz IS NULL OR (started_at, session_id) < ($5, $6::uuid))
 ORDER BY started_at DESC, session_id DESC
 LIMIT $7;

-- name: energy_readings
-- The energy register readings of a transaction (totals only, not per phase), in time order.
SELECT at, CASE WHEN unit = 'kWh' THEN value * 1000 ELSE value END AS wh
  FROM meter_samples
 WHERE transaction_id = $1 AND measurand = 'Energy.Active.Import.Register'
   AND phase IS NULL AND value = value  -- not NaN
 ORDER BY at;

-- name: first_soc
-- The first state of charge a transaction reported, and when.
SELECT at, value AS soc
  FROM meter_samples
 WHERE transaction_id = $1 AND measurand = 'SoC' AND phase IS NULL
 ORDER BY at
 LIMIT 1;

-- name: insert_bill
-- The session's bill, once: a second StopTransaction (or a late one) finds it there and writes nothing.
INSERT INTO session_bills (session_id, tariff_id, tariff_version, currency, energy_wh,
                           session_start, charging_end, session_end, subtotal_minor,
                           vat_minor, total_minor, lines, billed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (session_id) DO NOTHING
RETURNING session_id;

-- name: set_receipt
-- The bill's totals and receipt on the session (in the transaction that wrote the bill).
UPDATE charging_sessions
   SET subtotal_minor = $2, vat_minor = $3, total_minor = $4, receipt = $5, billed_at = $6,
       updated_at = now()
 WHERE session_id = $1;

-- name: begin_held
-- StartTransaction for the driver's held STARTING session on this charger: CHARGING now, on the connector the charger names.
UPDATE charging_sessions s
   SET status = 'CHARGING', connector_no = $3, connector_id = $4, meter_start_wh = $5,
       started_at = $6, reservation_id = $7, id_tag_status = 'Accepted', updated_at = now()
 WHERE s.session_id = (SELECT session_id FROM charging_sessions
                        WHERE charger_id = $1 AND driver_id = $2 AND status = 'STARTING'
                          AND preauth_minor IS NOT NULL
                        ORDER BY created_at DESC LIMIT 1
                          FOR UPDATE)
RETURNING s.session_id, s.transaction_id;

-- name: set_reservation
-- The API reservation this session fulfils (it became ACTIVE with the transaction).
UPDATE charging_sessions SET reservation_uuid = $2, updated_at = now() WHERE session_id = $1;

-- name: first_connector
-- A charger's lowest-numbered connector (its tariff is the charger's).
SELECT connector_id, connector_no FROM connectors WHERE charger_id = $1
 ORDER BY connector_no LIMIT 1;

-- name: recently_cancelled
-- Whether the driver called off a start on this charger since $3 (a StartTransaction the charger still sends for it is refused).
SELECT EXISTS (
    SELECT 1 FROM charging_sessions
     WHERE charger_id = $1 AND driver_id = $2 AND status = 'FAILED'
       AND failure_reason = 'cancelled' AND ended_at >= $3);

-- name: tariff_in_force
-- The current version of the tariff in force on a connector at $2, in one statement: charger-level beats site-level, per level the latest effective_from <= $2 (a later assignment wins a tie), as app.pricing.service.effective_at decides.
SELECT v.tariff_id::text AS tariff_id, v.version, v.name, v.currency, v.vat_percent, v.elements
  FROM connectors k
  CROSS JOIN LATERAL (
      SELECT a.tariff_id FROM tariff_assignments a
       WHERE (a.charger_id = k.charger_id OR a.site_id = k.site_id) AND a.effective_from <= $2
       ORDER BY (a.charger_id IS NOT NULL) DESC, a.effective_from DESC, a.assignment_id DESC
       LIMIT 1) x
  JOIN tariffs t ON t.tariff_id = x.tariff_id
  JOIN tariff_versions v ON v.tariff_id = t.tariff_id AND v.version = t.current_version
 WHERE k.connector_id = $1;
