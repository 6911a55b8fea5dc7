-- name: insert_message
-- Queue an SMS (sent by the outbox job `send_sms`).
INSERT INTO sms_messages (to_phone, driver_id, purpose, body, redacted_body, expires_at,
                          created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
RETURNING message_id;

-- name: claim_message
-- Lease a message for sending: only a queued one, or one whose last sender died.
UPDATE sms_messages
SET status = 'sending', attempts = attempts + 1, lease_until = $2, updated_at = $3
WHERE message_id = $1
  AND (status = 'queued' OR (status = 'sending' AND lease_until < $3))
RETURNING message_id, to_phone, driver_id, purpose, body, redacted_body, expires_at,
          attempts, EXISTS (SELECT 1 FROM sms_opt_outs o WHERE o.phone = to_phone)
          AS opted_out;

-- name: message_state
-- Status and lease of a message (when it could not be claimed).
SELECT status, lease_until FROM sms_messages WHERE message_id = $1;

-- name: mark_sent
-- The provider accepted the message; a secret body is replaced by its redacted form.
UPDATE sms_messages
SET status = 'sent', provider = $2, provider_sid = $3, sent_at = $4, updated_at = $4,
    lease_until = NULL, error_code = NULL, error_message = NULL,
    body = CASE WHEN $5 THEN COALESCE(redacted_body, body) ELSE body END
WHERE message_id = $1 AND status = 'sending';

-- name: mark_final
-- A final failure or expiry: never retried; a secret body is redacted.
UPDATE sms_messages
SET status = $2, error_code = $3, error_message = $4, updated_at = $5, lease_until = NULL,
    body = COALESCE(redacted_body, body)
WHERE message_id = $1 AND status IN ('queued', 'sending');

-- name: release_message
-- A transient failure: back to the queue for the next try.
UPDATE sms_messages
SET status = 'queued', lease_until = NULL, error_code = $2, error_message = $3, updated_at = $4
WHERE message_id = $1 AND status = 'sending';

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
