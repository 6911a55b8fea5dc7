-- name: insert_message
-- Queue an SMS (sent by the outbox job `send_sms`).
INSERT INTO sms_messages (to_phone, driver_id, purpose, body, redacted_body, expires_at,
                          created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
RETURNING message_id;

-- name: claim_message
-- Lease a message for sending: only a queued one, or one whose last sender died (then in doubt: it may have reached Twilio).
WITH prev AS (
    SELECT message_id, status FROM sms_messages WHERE message_id = $1 FOR UPDATE
)
UPDATE sms_messages m
SET status = 'sending', attempts = attempts + 1, lease_until = $2, updated_at = $3
FROM prev
WHERE m.message_id = prev.message_id
  AND (m.status = 'queued' OR (m.status = 'sending' AND m.lease_until < $3))
RETURNING m.message_id, m.to_phone, m.driver_id, m.purpose, m.body, m.redacted_body,
          m.expires_at, m.attempts, m.created_at, m.notification_id, m.send_after,
          m.transient_failures, prev.status = 'sending' AS in_doubt,
          EXISTS (SELECT 1 FROM sms_opt_outs o WHERE o.phone = m.to_phone) AS opted_out,
          COALESCE((SELECT NOT d.sms_alerts FROM drivers d WHERE d.driver_id = m.driver_id),
                   false) AS alerts_off;

-- name: message_state
-- Status, lease and pacing slot of a message (when it could not be claimed).
SELECT status, lease_until, send_after FROM sms_messages WHERE message_id = $1;

-- name: mark_final
-- A final failure or expiry: never retried; a secret body is redacted.
UPDATE sms_messages
SET status = $2, error_code = $3, error_message = $4, updated_at = $5, lease_until = NULL,
    body = COALESCE(redacted_body, body)
WHERE message_id = $1 AND status IN ('queued', 'sending');

-- name: release_message
-- A transient failure: back to the queue, not before the back-off ($5).
UPDATE sms_messages
SET status = 'queued', lease_until = NULL, error_code = $2, error_message = $3, updated_at = $4,
    transient_failures = transient_failures + 1, send_after = $5
WHERE message_id = $1 AND status = 'sending';

-- name: defer_message
-- Pacing: back to the queue with the sender slot reserved for it.
UPDATE sms_messages
SET status = 'queued', lease_until = NULL, send_after = $2, updated_at = $3
WHERE message_id = $1 AND status = 'sending';

-- name: mark_suppressed
-- The driver opted out before the alert could be sent: it never reaches Twilio.
UPDATE sms_messages
SET status = 'suppressed', error_code = $2, error_message = $3, updated_at = $4,
    lease_until = NULL
WHERE message_id = $1 AND status IN ('queued', 'sending');

-- name: opt_out
-- Remember that a number opted out of SMS (replied STOP).
INSERT INTO sms_opt_outs (phone, source) VALUES ($1, $2)
ON CONFLICT (phone) DO NOTHING;

-- name: recent_sink_messages
-- The demo sink's latest messages, newest first (GET /dev/sms).
SELECT message_id::text AS message_id, to_phone, purpose, body, status, created_at, sent_at
FROM sms_messages
WHERE provider = 'sink' AND ($1::text IS NULL OR to_phone = $1)
ORDER BY created_at DESC, message_id
LIMIT $2;

-- name: redact_expired
-- Redact secret bodies of messages that expired before they could be sent.
UPDATE sms_messages
SET status = 'expired', body = redacted_body, lease_until = NULL, updated_at = $1
WHERE redacted_body IS NOT NULL AND expires_at < $1
  AND status IN ('queued', 'sending') AND (lease_until IS NULL OR lease_until < $1);

-- name: alert_recipient
-- A driver's number, language and whether alerts may reach them (sms_alerts, no STOP).
SELECT d.phone, d.locale, d.sms_alerts,
       EXISTS (SELECT 1 FROM sms_opt_outs o WHERE o.phone = d.phone) AS opted_out
FROM drivers d WHERE d.driver_id = $1;

-- name: insert_notification
-- A driver alert, once per kind and session / reservation (nothing when it exists).
INSERT INTO notifications (driver_id, kind, session_id, reservation_id, body, locale, facts,
                           status, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING
RETURNING notification_id;

-- name: insert_alert_message
-- The SMS that carries a notification (sent by the outbox job send_sms).
INSERT INTO sms_messages (to_phone, driver_id, purpose, body, notification_id, created_at,
                          updated_at)
VALUES ($1, $2, 'alert', $3, $4, $5, $5)
RETURNING message_id;

-- name: session_for_alerts
-- A session's live state with its site, the driver's battery and the kinds already queued.
SELECT s.session_id, s.driver_id, s.status, s.started_at, s.ended_at, s.energy_wh,
       s.power_w, s.soc_percent, s.transaction_id, s.meter_start_wh, s.charger_id, s.connector_no,
       s.charging_ended_at, s.tariff_id, s.tariff_version, s.currency,
       st.name AS site_name, st.timezone, d.vehicle_battery_wh AS battery_wh,
       ARRAY(SELECT n.kind FROM notifications n WHERE n.session_id = s.session_id) AS sent
FROM charging_sessions s
JOIN chargers c ON c.charger_id = s.charger_id
JOIN sites st ON st.site_id = c.site_id
LEFT JOIN drivers d ON d.driver_id = s.driver_id
WHERE s.session_id = $1;

-- name: session_site
-- The site a session runs at (for alert texts).
SELECT st.name AS site_name, st.timezone
FROM charging_sessions s
JOIN chargers c ON c.charger_id = s.charger_id
JOIN sites st ON st.site_id = c.site_id
WHERE s.session_id = $1;

-- name: recent_samples
-- A transaction's energy/power/SoC totals (no per-phase values) since a time, oldest first.
SELECT at,
       max(value * CASE WHEN unit = 'kWh' THEN 1000 ELSE 1 END)
           FILTER (WHERE measurand = 'Energy.Active.Import.Register') AS energy_register_wh,
       max(value * CASE WHEN unit = 'kW' THEN 1000 ELSE 1 END)
           FILTER (WHERE measurand = 'Power.Active.Import') AS power_w,
       max(value) FILTER (WHERE measurand = 'SoC') AS soc_percent
FROM meter_samples
WHERE transaction_id = $1 AND at >= $2 AND phase IS NULL
GROUP BY at
ORDER BY at;

-- name: apply_status_callback
-- Twilio's status callback: forward moves only (callbacks arrive out of order; final states stay).
UPDATE sms_messages
SET status = $3, error_code = COALESCE($4, error_code), updated_at = $5,
    provider_sid = COALESCE(provider_sid, $2),
    sent_at = CASE WHEN $3 IN ('sent', 'delivered') THEN COALESCE(sent_at, $5) ELSE sent_at END
WHERE (message_id = $1 OR ($1::uuid IS NULL AND provider_sid = $2))
  AND (provider_sid IS NULL OR provider_sid = $2)
  AND CASE status WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2 ELSE 9 END
      < CASE $3 WHEN 'sent' THEN 2 WHEN 'delivered' THEN 3 WHEN 'undelivered' THEN 3
                WHEN 'failed' THEN 3 ELSE 0 END
RETURNING message_id;

-- name: opt_in
-- A number replied START: alerts may reach it again.
DELETE FROM sms_opt_outs WHERE phone = $1;

-- name: suppress_queued_to
-- A number replied STOP: the alerts still queued for it are suppressed, never sent.
UPDATE sms_messages
SET status = 'suppressed', error_message = 'recipient opted out', updated_at = $2,
    lease_until = NULL
WHERE to_phone = $1 AND status = 'queued' AND notification_id IS NOT NULL;

-- name: driver_by_phone
-- The driver a number belongs to, with their language.
SELECT driver_id, locale, phone FROM drivers WHERE phone = $1;

-- name: live_session_of_driver
-- A driver's open session (the newest) with its site, for STATUS replies.
SELECT s.session_id, s.energy_wh, s.soc_percent, s.currency, st.name AS site_name, st.timezone
FROM charging_sessions s
JOIN chargers c ON c.charger_id = s.charger_id
JOIN sites st ON st.site_id = c.site_id
WHERE s.driver_id = $1 AND s.ended_at IS NULL AND s.status IN ('CHARGING', 'SUSPENDED', 'FINISHING', 'STARTING')
ORDER BY s.started_at DESC
LIMIT 1;

-- name: driver_notifications
-- A driver's notifications, newest first, after a (created_at, notification_id) cursor.
SELECT n.notification_id::text AS notification_id, n.kind, n.session_id::text AS session_id,
       n.reservation_id::text AS reservation_id, n.body,
       CASE WHEN m.message_id IS NULL THEN n.status
            WHEN m.status IN ('queued', 'sending') THEN 'queued'
            WHEN m.status = 'expired' THEN 'failed'
            ELSE m.status END AS status,
       n.created_at, m.sent_at
FROM notifications n
LEFT JOIN sms_messages m ON m.notification_id = n.notification_id
WHERE n.driver_id = $1
  AND ($2::timestamptz IS NULL OR (n.created_at, n.notification_id) < ($2, $3::uuid))
ORDER BY n.created_at DESC, n.notification_id DESC
LIMIT $4;

-- name: operator_alert_for_delivery
-- An operator alert with its charger and site, and the state of its delivery on one channel.
SELECT a.alert_id, a.kind, a.reason, a.detail, a.raised_at, a.charger_id::text AS charger_id,
       c.charge_point_id, st.name AS site_name, a.session_id::text AS session_id,
       a.payment_intent_id, d.status AS delivery_status, d.attempts
FROM operator_alerts a
JOIN operator_alert_deliveries d ON d.alert_id = a.alert_id AND d.channel = $2
LEFT JOIN chargers c ON c.charger_id = a.charger_id
LEFT JOIN sites st ON st.site_id = c.site_id
WHERE a.alert_id = $1;

-- name: finish_operator_delivery
-- One channel of an operator alert is done (delivered, failed or skipped); the alert counts as delivered from the first delivery.
WITH d AS (
    UPDATE operator_alert_deliveries
    SET status = $3, attempts = attempts + $4, last_error = $5,
        message_id = COALESCE($6::uuid, message_id),
        delivered_at = CASE WHEN $3 = 'delivered' THEN $7::timestamptz END
    WHERE alert_id = $1 AND channel = $2 AND status = 'pending'
    RETURNING alert_id, status
)
UPDATE operator_alerts a SET delivered_at = COALESCE(a.delivered_at, $7::timestamptz)
FROM d WHERE a.alert_id = d.alert_id AND d.status = 'delivered';

-- name: operator_delivery_failed_once
-- A delivery attempt failed; the channel stays pending for the next try.
UPDATE operator_alert_deliveries SET attempts = attempts + 1, last_error = $3
WHERE alert_id = $1 AND channel = $2 AND status = 'pending'
RETURNING attempts;

-- name: acknowledge_alert
-- An operator acknowledges an alert (the first acknowledgement stands).
UPDATE operator_alerts SET acknowledged_at = $2, acknowledged_by = $3
WHERE alert_id = $1 AND acknowledged_at IS NULL
RETURNING alert_id, kind, reason, raised_at, acknowledged_at, acknowledged_by, delivered_at;

-- name: operator_alert
-- One operator alert as acknowledged (or not).
SELECT alert_id, kind, reason, raised_at, acknowledged_at, acknowledged_by, delivered_at
FROM operator_alerts WHERE alert_id = $1;

-- name: lock_operator_delivery
-- Lock a pending delivery row (two runs of the job never both queue the on-call SMS).
SELECT 1 FROM operator_alert_deliveries
WHERE alert_id = $1 AND channel = $2 AND status = 'pending'
FOR UPDATE;

-- name: reservations_expiring
-- Reservations holding a connector that end within the lead time and were not told yet.
SELECT r.reservation_id, r.driver_id, r.expires_at, st.name AS site_name, st.timezone
FROM reservations r
JOIN sites st ON st.site_id = r.site_id
WHERE r.status = 'CONFIRMED' AND r.began_at IS NOT NULL
  AND r.expires_at > $1::timestamptz
  AND r.expires_at <= $1::timestamptz + make_interval(secs => $2::float8)
  AND NOT EXISTS (SELECT 1 FROM notifications n
                  WHERE n.reservation_id = r.reservation_id AND n.kind = 'reservation_expiring')
ORDER BY r.expires_at
LIMIT $3;

-- name: sessions_to_reevaluate
-- Open sessions whose due alerts depend on time passing: idle for the full-charge wait, or a charger gone quiet.
SELECT s.session_id
FROM charging_sessions s
WHERE s.ended_at IS NULL AND s.driver_id IS NOT NULL
  AND s.status IN ('CHARGING', 'SUSPENDED', 'FINISHING')
  AND ((s.charging_ended_at IS NOT NULL
        AND s.charging_ended_at <= $1::timestamptz - make_interval(secs => $2::float8))
       OR s.last_meter_at < $1::timestamptz - make_interval(secs => $3::float8))
  AND NOT EXISTS (SELECT 1 FROM notifications n
                  WHERE n.session_id = s.session_id AND n.kind = 'session_complete')
ORDER BY s.session_id
LIMIT $4;

-- name: stuck_messages
-- Messages whose job is stuck: a dead worker's expired lease, or queued long after their job was handed to arq (arq holds a SIGKILLed job until its in-progress key expires).
SELECT m.message_id, o.outbox_id
FROM sms_messages m
JOIN outbox o ON o.dedupe_key = 'sms:' || m.message_id::text AND o.done_at IS NULL
WHERE m.status IN ('queued', 'sending')
  AND ((m.status = 'sending' AND m.lease_until < $1::timestamptz)
       OR (m.status = 'queued' AND o.enqueued_at IS NOT NULL AND m.send_after IS NULL
           AND m.updated_at < $1::timestamptz - make_interval(secs => $2::float8))
       OR (m.status = 'queued' AND m.send_after < $1::timestamptz - make_interval(secs => $4::float8)))
ORDER BY m.created_at
LIMIT $3;

-- name: mark_sent_done
-- The provider accepted the message (a status callback may have been quicker; a secret body is replaced by its redacted form) and its outbox row is done, in one statement (one round trip, atomic).
WITH sent AS (
    UPDATE sms_messages
    SET status = CASE WHEN status = 'sending' THEN 'sent' ELSE status END,
        provider = $2, provider_sid = $3, sent_at = COALESCE(sent_at, $4), updated_at = $4,
        lease_until = NULL,
        error_code = CASE WHEN status = 'sending' THEN NULL ELSE error_code END,
        error_message = NULL, send_after = NULL,
        body = CASE WHEN $5 THEN COALESCE(redacted_body, body) ELSE body END
    WHERE message_id = $1
      AND (status = 'sending'
           OR (status IN ('sent', 'delivered', 'undelivered', 'failed')
               AND (provider_sid IS NULL OR provider_sid = $3)))
    RETURNING message_id
)
UPDATE outbox SET done_at = now() WHERE outbox_id = $6 AND done_at IS NULL;

-- name: claim_due_messages
-- The dispatcher leases a batch of due messages, oldest first (a paced one once its slot came); workers never share one.
WITH due AS (
    SELECT message_id FROM sms_messages
    WHERE status = 'queued' AND COALESCE(send_after, created_at) <= $3
    ORDER BY COALESCE(send_after, created_at)
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE sms_messages m
SET status = 'sending', attempts = attempts + 1, lease_until = $2, updated_at = $3
FROM due WHERE m.message_id = due.message_id
RETURNING m.message_id, m.to_phone, m.driver_id, m.purpose, m.body, m.redacted_body,
          m.expires_at, m.attempts, m.created_at, m.notification_id, m.send_after,
          m.transient_failures, false AS in_doubt,
          EXISTS (SELECT 1 FROM sms_opt_outs o WHERE o.phone = m.to_phone) AS opted_out,
          COALESCE((SELECT NOT d.sms_alerts FROM drivers d WHERE d.driver_id = m.driver_id),
                   false) AS alerts_off,
          (SELECT o.outbox_id FROM outbox o WHERE o.dedupe_key = 'sms:' || m.message_id::text)
          AS outbox_id;
