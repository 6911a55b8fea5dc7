-- name: connector
-- A connector with what a reservation needs: its charger, site, connectivity state and status.
SELECT k.connector_id, k.charger_id, k.site_id, k.connector_no, k.type, k.power_w, k.status,
       c.charge_point_id, h.state AS connectivity, s.name AS site_name,
       s.timezone AS site_timezone
  FROM connectors k
  JOIN chargers c USING (charger_id)
  JOIN charger_connectivity h USING (charger_id)
  JOIN sites s ON s.site_id = k.site_id
 WHERE k.connector_id = $1;

-- name: driver
-- The driver's OCPP idTag and vehicle (the slot maths sizes a slot from it).
SELECT driver_id, id_tag, vehicle_battery_wh, vehicle_max_ac_w, vehicle_max_dc_w
  FROM drivers WHERE driver_id = $1;

-- name: request_context
-- The driver (idTag, vehicle) and the connector a request names, in one trip (connector columns null when it does not exist).
SELECT d.id_tag, d.vehicle_battery_wh, d.vehicle_max_ac_w, d.vehicle_max_dc_w,
       k.connector_id, k.charger_id, k.site_id, k.connector_no, k.type, k.power_w, k.status,
       c.charge_point_id, h.state AS connectivity, s.name AS site_name,
       s.timezone AS site_timezone
  FROM drivers d
  LEFT JOIN connectors k ON k.connector_id = $1
  LEFT JOIN chargers c ON c.charger_id = k.charger_id
  LEFT JOIN charger_connectivity h ON h.charger_id = k.charger_id
  LEFT JOIN sites s ON s.site_id = k.site_id
 WHERE d.driver_id = $2;

-- name: lock_driver
-- Serialise one driver's reservation changes until the transaction ends (the caps cannot race).
SELECT pg_advisory_xact_lock(30322, hashtext($1::uuid::text));

-- name: lock_connector
-- Serialise inserts on one connector (after the driver's lock): checks see what they guard, the constraint refuses instead of deadlocking.
SELECT pg_advisory_xact_lock(30323, hashtext($1::uuid::text));

-- name: checks
-- Under the driver's lock, in one trip: the driver's live holds and future slots, overlaps of [start, end) for the driver, and the connector's live or pending reservations in that range.
SELECT count(*) FILTER (WHERE status IN ('PENDING', 'ACTIVE')
                           OR (status = 'CONFIRMED' AND began_at IS NOT NULL AND expires_at > $2))
           AS holding,
       count(*) FILTER (WHERE status = 'CONFIRMED' AND began_at IS NULL AND start_at > $2)
           AS future,
       coalesce(bool_or(tstzrange(start_at, expires_at, '[)') && tstzrange($3, $4, '[)')), false)
           AS driver_overlap,
       EXISTS (SELECT 1 FROM reservations x
                WHERE x.connector_id = $5 AND x.status IN ('CONFIRMED', 'ACTIVE')
                  AND tstzrange(x.start_at, x.expires_at, '[)') && tstzrange($3, $4, '[)'))
           AS connector_overlap,
       EXISTS (SELECT 1 FROM reservations x
                WHERE x.connector_id = $5 AND x.status = 'PENDING'
                  AND tstzrange(x.start_at, x.expires_at, '[)') && tstzrange($3, $4, '[)'))
           AS connector_pending
  FROM reservations
 WHERE driver_id = $1 AND status IN ('PENDING', 'CONFIRMED', 'ACTIVE');

-- name: insert
-- A new reservation, PENDING (a hold until its charger accepts) or CONFIRMED; the exclusion constraints refuse an overlap.
INSERT INTO reservations (driver_id, connector_id, charger_id, site_id, connector_no, kind,
                          status, start_at, expires_at, began_at, charger_reserved_at,
                          moved_from, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
RETURNING *;

-- name: begin_hold
-- A hold from now: the driver's lock, the checks and the PENDING row in one statement (verdict 'ok', else the rule that refused).
SELECT verdict, reservation_id, ocpp_reservation_id
  FROM reservation_begin_hold($1, $2, $3, $4, $5, $6, $7, $8);

-- name: confirm_hold
-- The charger accepted ReserveNow: CONFIRMED and RESERVED in search, unless its charger was hidden meanwhile (then deleted, no row).
SELECT * FROM reservation_confirm_hold($1, $2, $3);

-- name: delete_pending
-- A hold the charger refused (or that could not be confirmed): nothing is kept.
DELETE FROM reservations WHERE reservation_id = $1 AND status = 'PENDING';

-- name: sweep_pending
-- PENDING holds older than the charger's answer can take (a process died between ReserveNow and the decision).
DELETE FROM reservations WHERE status = 'PENDING' AND created_at < $1
RETURNING *;

-- name: get_for_driver
-- One of the driver's reservations (another driver's is not found).
SELECT * FROM reservations
 WHERE reservation_id = $1 AND driver_id = $2 AND status <> 'PENDING';

-- name: lock
-- A reservation by id, locked for a change (jobs).
SELECT * FROM reservations WHERE reservation_id = $1 FOR UPDATE;

-- name: get
-- A reservation by id (jobs, tests).
SELECT * FROM reservations WHERE reservation_id = $1;

-- name: list_for_driver
-- The driver's reservations, newest first, after the cursor (created_at, reservation_id).
SELECT * FROM reservations
 WHERE driver_id = $1 AND status <> 'PENDING'
   AND ($2::timestamptz IS NULL OR (created_at, reservation_id) < ($2, $3::uuid))
 ORDER BY created_at DESC, reservation_id DESC
 LIMIT $4;

-- name: end_reservation
-- Close a live reservation as CANCELLED / EXPIRED / MOVED; released: the charger needs no CancelReservation.
UPDATE reservations
   SET status = $2, cancel_reason = $3, ended_at = $4, updated_at = $4,
       charger_released_at = CASE WHEN $5::boolean OR charger_reserved_at IS NULL
                                  THEN coalesce(charger_released_at, $4)
                                  ELSE charger_released_at END
 WHERE reservation_id = $1 AND status = 'CONFIRMED'
RETURNING *;

-- name: cancel
-- The driver cancels (reservation_cancel, migration 0008): the reservation after it, with its charger's OCPP identity; no row for another driver's.
SELECT r.*, c.charge_point_id
  FROM reservation_cancel($1, $2, $3) r JOIN chargers c ON c.charger_id = r.charger_id;

-- name: release_done
-- CancelReservation was answered: the reservation is released at its charger and its outbox job done, in one statement.
WITH released AS (
    UPDATE reservations SET charger_released_at = $2
     WHERE reservation_id = $1 AND charger_released_at IS NULL
    RETURNING reservation_id)
UPDATE outbox SET done_at = now()
 WHERE dedupe_key = 'reservations:release:' || $1::uuid AND done_at IS NULL;

-- name: set_moved_to
-- Point a MOVED reservation at the one that replaces it.
UPDATE reservations SET moved_to = $2 WHERE reservation_id = $1 AND status = 'MOVED';

-- name: sync_connector_status
-- The connector's search status follows its reservations: RESERVED while one holds it, AVAILABLE after (the charger's other statuses stay).
UPDATE connectors
   SET status = CASE WHEN reservation_holds(connector_id, $2) THEN 'RESERVED' ELSE 'AVAILABLE' END,
       status_at = $2, updated_at = now()
 WHERE connector_id = $1 AND status IN ('AVAILABLE', 'RESERVED')
   AND status IS DISTINCT FROM
       (CASE WHEN reservation_holds(connector_id, $2) THEN 'RESERVED' ELSE 'AVAILABLE' END);

-- name: guard_charger
-- Hold the charger's reservations guard (shared) until commit: a settle() hiding it waits for this transaction, or this one for it (then read the state).
SELECT pg_advisory_xact_lock_shared(30324, hashtext($1::uuid::text));

-- name: charger_state
-- A charger's connectivity state (no lock).
SELECT state FROM charger_connectivity WHERE charger_id = $1;

-- name: mark_began
-- A slot has begun: it holds the connector from now on.
UPDATE reservations SET began_at = $2, updated_at = $2
 WHERE reservation_id = $1 AND status = 'CONFIRMED' AND began_at IS NULL
RETURNING *;

-- name: mark_charger_reserved
-- The charger accepted ReserveNow for this reservation.
UPDATE reservations SET charger_reserved_at = $2, updated_at = $2
 WHERE reservation_id = $1 AND status = 'CONFIRMED';

-- name: mark_charger_released
-- The charger was told the reservation is over (CancelReservation answered), or knows it.
UPDATE reservations SET charger_released_at = $2
 WHERE reservation_id = $1 AND charger_released_at IS NULL;

-- name: expire_due
-- Every CONFIRMED reservation not used by its expiry becomes EXPIRED (the charger ends its own copy at expiryDate).
UPDATE reservations
   SET status = 'EXPIRED', ended_at = $1, updated_at = $1,
       charger_released_at = coalesce(charger_released_at, $1)
 WHERE status = 'CONFIRMED' AND expires_at <= $1
RETURNING reservation_id, connector_id, driver_id;

-- name: fulfil_ended
-- ACTIVE reservations whose charging session has ended become FULFILLED (a net under the sessions domain's call).
UPDATE reservations r
   SET status = 'FULFILLED', ended_at = s.ended_at, updated_at = $1
  FROM charging_sessions s
 WHERE r.status = 'ACTIVE' AND s.transaction_id = r.transaction_id
   AND s.ended_at IS NOT NULL
RETURNING r.reservation_id;

-- name: live_on_charger
-- The charger's CONFIRMED reservations (what a move takes elsewhere), oldest first.
SELECT reservation_id FROM reservations
 WHERE charger_id = $1 AND status = 'CONFIRMED'
 ORDER BY start_at, reservation_id;

-- name: twin_connectors
-- Where a reservation can move: same site and type, at least its power, another charger that is shown in search, a usable connector; cheapest fit first.
SELECT k.connector_id, k.charger_id, k.site_id, k.connector_no, k.type, k.power_w, k.status,
       c.charge_point_id, h.state AS connectivity, s.name AS site_name,
       s.timezone AS site_timezone
  FROM reservations r
  JOIN connectors o ON o.connector_id = r.connector_id
  JOIN connectors k ON k.site_id = r.site_id AND k.type = o.type AND k.power_w >= o.power_w
                   AND k.charger_id <> r.charger_id
  JOIN chargers c ON c.charger_id = k.charger_id
  JOIN charger_connectivity h ON h.charger_id = k.charger_id
  JOIN sites s ON s.site_id = k.site_id
 WHERE r.reservation_id = $1
   AND h.state IN ('online', 'degraded')
   AND k.status NOT IN ('FAULTED', 'UNAVAILABLE')
   AND (r.began_at IS NULL OR k.status = 'AVAILABLE')
   AND NOT EXISTS (SELECT 1 FROM reservations x
                    WHERE x.connector_id = k.connector_id
                      AND x.status IN ('PENDING', 'CONFIRMED', 'ACTIVE')
                      AND tstzrange(x.start_at, x.expires_at, '[)')
                          && tstzrange(r.start_at, r.expires_at, '[)'))
 ORDER BY k.power_w, c.charge_point_id, k.connector_no
 LIMIT 20;

-- name: activate
-- StartTransaction on a reserved connector: the matching CONFIRMED reservation (by reservationId, else the driver's idTag) becomes ACTIVE.
UPDATE reservations r
   SET status = 'ACTIVE', updated_at = $5, charger_released_at = coalesce(r.charger_released_at, $5),
       transaction_id = (SELECT s.transaction_id FROM charging_sessions s
                          WHERE s.charger_id = $1 AND s.connector_no = $2 AND s.ended_at IS NULL
                          ORDER BY s.started_at DESC LIMIT 1)
 WHERE r.reservation_id = (
        SELECT x.reservation_id FROM reservations x JOIN drivers d USING (driver_id)
         WHERE x.charger_id = $1 AND x.connector_no = $2 AND x.status = 'CONFIRMED'
           AND (x.ocpp_reservation_id = $3
                OR (upper(d.id_tag) = upper($4)
                    AND x.start_at - interval '15 minutes' <= $5 AND x.expires_at > $5))
         ORDER BY (x.ocpp_reservation_id = $3) DESC NULLS LAST, x.start_at
         LIMIT 1
         FOR UPDATE OF x)
RETURNING r.reservation_id, r.connector_id;

-- name: fulfil
-- The session on an ACTIVE reservation ended: FULFILLED.
UPDATE reservations SET status = 'FULFILLED', ended_at = $2, updated_at = $2
 WHERE reservation_id = $1 AND status = 'ACTIVE'
RETURNING reservation_id;

-- name: held_on_charger
-- Reservations the charger should be holding now (re-sent after a reconnect).
SELECT * FROM reservations
 WHERE charger_id = $1 AND status = 'CONFIRMED' AND began_at IS NOT NULL AND expires_at > $2
 ORDER BY ocpp_reservation_id;

-- name: unreleased_on_charger
-- Reservations over on our side that the charger may still hold (CancelReservation not yet answered).
SELECT * FROM reservations
 WHERE charger_id = $1 AND charger_reserved_at IS NOT NULL AND charger_released_at IS NULL
   AND status IN ('CANCELLED', 'EXPIRED', 'MOVED') AND expires_at > $2
 ORDER BY ocpp_reservation_id;

-- name: holder
-- The reservation holding a connector at a time, if any (for session start: reserved for whom; a PENDING hold counts).
SELECT * FROM reservations
 WHERE connector_id = $1 AND status IN ('PENDING', 'CONFIRMED', 'ACTIVE')
   AND start_at <= $2 AND expires_at > $2
 LIMIT 1;
