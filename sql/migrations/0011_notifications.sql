-- Driver SMS alerts (issue 13): one notification per alert kind and session/reservation,
-- each sent as an `sms_messages` row through the outbox job `send_sms`; per-sender pacing
-- slots; operator alerts delivered to the on-call SMS number and a ticketing webhook.

-- The language alerts are written in ('en', 'de', …). NULL: guessed from the number's
-- country code (app/notifications/texts.py).
ALTER TABLE drivers ADD COLUMN locale text CHECK (locale ~ '^[a-z]{2}$');

-- Every alert a driver was sent, or would have been (`suppressed`: opted out by SMS STOP
-- or `sms_alerts: false`; then no message exists and nothing reaches Twilio).
-- Each kind at most once per session and once per reservation: the partial unique
-- indexes below, so a rule evaluated twice (two MeterValues, a re-run cron) writes once.
CREATE TABLE notifications (
    notification_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    driver_id        uuid NOT NULL REFERENCES drivers (driver_id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN (
                         'session_started', 'soc_80', 'ten_minutes_left', 'session_complete',
                         'idle_fee_warning', 'reservation_expiring', 'reservation_moved',
                         'reservation_cancelled', 'hold_exhausted', 'payment_failed')),
    session_id       uuid REFERENCES charging_sessions (session_id) ON DELETE SET NULL,
    reservation_id   uuid,
    body             text NOT NULL,
    locale           text NOT NULL,
    facts            jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- `queued` while a message carries it (its status then says more), or `suppressed`
    status           text NOT NULL CHECK (status IN ('queued', 'suppressed')),
    created_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX notifications_once_per_session
    ON notifications (session_id, kind) WHERE session_id IS NOT NULL;
CREATE UNIQUE INDEX notifications_once_per_reservation
    ON notifications (reservation_id, kind) WHERE reservation_id IS NOT NULL;
CREATE INDEX notifications_driver ON notifications (driver_id, created_at DESC, notification_id DESC);

-- The message that carries a notification; `suppressed` when the driver opted out between
-- queueing and sending; `send_after` is the per-sender pacing slot reserved for it.
ALTER TABLE sms_messages
    ADD COLUMN notification_id uuid UNIQUE REFERENCES notifications (notification_id)
        ON DELETE SET NULL,
    ADD COLUMN send_after timestamptz,
    ADD COLUMN transient_failures integer NOT NULL DEFAULT 0;
ALTER TABLE sms_messages DROP CONSTRAINT sms_messages_status_check;
ALTER TABLE sms_messages ADD CONSTRAINT sms_messages_status_check CHECK (status IN (
    'queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'expired',
    'suppressed'));
CREATE INDEX sms_messages_queued ON sms_messages (created_at) WHERE status IN ('queued', 'sending');
-- The worker's dispatcher takes due messages oldest first: a paced one at its slot.
CREATE INDEX sms_messages_due ON sms_messages ((COALESCE(send_after, created_at)))
    WHERE status = 'queued';

-- New messages wake the worker's outbox relay at once (LISTEN vw_sms), instead of waiting
-- for its next sweep: an alert leaves within a second of the commit that caused it.
CREATE FUNCTION sms_messages_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('vw_sms', '');
    RETURN NULL;
END $$;
CREATE TRIGGER sms_messages_notify AFTER INSERT ON sms_messages
    FOR EACH STATEMENT EXECUTE FUNCTION sms_messages_notify();

-- Operator alerts (0007) reach the CPO twice: an SMS to the on-call number and a signed
-- JSON POST to the ticketing webhook. One row per alert and channel; the outbox rows are
-- written by a trigger in the transaction that raised the alert, so no domain that raises
-- alerts needs to know how they are delivered.
ALTER TABLE operator_alerts
    ADD COLUMN acknowledged_by text;

CREATE TABLE operator_alert_deliveries (
    alert_id      bigint NOT NULL REFERENCES operator_alerts (alert_id) ON DELETE CASCADE,
    channel       text NOT NULL CHECK (channel IN ('sms', 'webhook')),
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'delivered', 'failed', 'skipped')),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    message_id    uuid REFERENCES sms_messages (message_id) ON DELETE SET NULL,
    delivered_at  timestamptz,
    PRIMARY KEY (alert_id, channel)
);

CREATE FUNCTION operator_alerts_deliver() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO operator_alert_deliveries (alert_id, channel)
    VALUES (NEW.alert_id, 'sms'), (NEW.alert_id, 'webhook')
    ON CONFLICT DO NOTHING;
    INSERT INTO outbox (job, args, dedupe_key)
    VALUES ('deliver_operator_alert',
            jsonb_build_object('alert_id', NEW.alert_id, 'channel', 'sms'),
            'operator_alert:' || NEW.alert_id || ':sms'),
           ('deliver_operator_alert',
            jsonb_build_object('alert_id', NEW.alert_id, 'channel', 'webhook'),
            'operator_alert:' || NEW.alert_id || ':webhook')
    ON CONFLICT (dedupe_key) DO NOTHING;
    PERFORM pg_notify('vw_sms', '');
    RETURN NULL;
END $$;
CREATE TRIGGER operator_alerts_deliver AFTER INSERT ON operator_alerts
    FOR EACH ROW EXECUTE FUNCTION operator_alerts_deliver();
