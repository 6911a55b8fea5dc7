-- Payments (Stripe, INTEGRATIONS.md §3): one Stripe customer per driver, the driver's saved
-- cards (a mirror of what is attached to that customer), every PaymentIntent we create
-- (pre-authorisation holds and extra off-session charges) with its amounts, one capture
-- decision per PaymentIntent, refunds, and the webhook events applied (once each).
-- Money in integer minor units; Stripe's ids are text.

CREATE TABLE stripe_customers (
    driver_id                  uuid PRIMARY KEY REFERENCES drivers (driver_id) ON DELETE CASCADE,
    customer_id                text NOT NULL UNIQUE CHECK (customer_id ~ '^cus_'),
    default_payment_method_id  text,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

-- Card details shown to the driver (brand, last 4, expiry) as Stripe reports them; the
-- card number never reaches us. `payment_method_id` is unique across drivers: a card
-- attached to one customer cannot be another driver's.
CREATE TABLE payment_methods (
    payment_method_id  text PRIMARY KEY CHECK (payment_method_id ~ '^(pm|card|src)_'),
    driver_id          uuid NOT NULL REFERENCES drivers (driver_id) ON DELETE CASCADE,
    customer_id        text NOT NULL,
    brand              text NOT NULL DEFAULT 'unknown',
    last4              text NOT NULL DEFAULT '',
    exp_month          integer,
    exp_year           integer,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_methods_driver ON payment_methods (driver_id, created_at DESC);

-- How far a PaymentIntent status is along: facts only ever move a row forward, so events
-- that arrive late or out of order cannot undo a later state.
CREATE FUNCTION payment_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status
        WHEN 'requires_payment_method' THEN 0
        WHEN 'requires_confirmation' THEN 0
        WHEN 'requires_action' THEN 1
        WHEN 'processing' THEN 2
        WHEN 'requires_capture' THEN 3
        WHEN 'succeeded' THEN 4
        WHEN 'canceled' THEN 4
        ELSE 0 END
$$;

-- Every PaymentIntent we created. `kind`: `hold` (manual capture, the session's
-- pre-authorisation) or `extra` (an automatic off-session charge for what a bill exceeds
-- the hold by). `status` is Stripe's PaymentIntent status as last seen (from an API answer
-- or a webhook, both treated as facts about the latest state). `session_id` has no foreign
-- key on purpose: the sessions domain owns its table.
CREATE TABLE payments (
    payment_intent_id  text PRIMARY KEY CHECK (payment_intent_id ~ '^pi_'),
    session_id         uuid,
    driver_id          uuid REFERENCES drivers (driver_id) ON DELETE SET NULL,
    customer_id        text NOT NULL,
    payment_method_id  text,
    kind               text NOT NULL CHECK (kind IN ('hold', 'extra')),
    currency           text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status             text NOT NULL CHECK (status IN (
                           'requires_payment_method', 'requires_confirmation',
                           'requires_action', 'processing', 'requires_capture',
                           'canceled', 'succeeded')),
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    captured_minor     bigint NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
    refunded_minor     bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    idempotency_key    text NOT NULL UNIQUE,
    failure_code       text,
    failure_message    text,
    latest_charge_id   text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    CHECK (captured_minor <= amount_minor),
    CHECK (refunded_minor <= captured_minor)
);
CREATE INDEX payments_session ON payments (session_id, created_at);
-- Reconciliation: holds still uncaptured, oldest first.
CREATE INDEX payments_open_holds ON payments (created_at)
    WHERE kind = 'hold' AND status = 'requires_capture';
CREATE INDEX payments_charge ON payments (latest_charge_id) WHERE latest_charge_id IS NOT NULL;

-- One capture decision per PaymentIntent (the primary key is what makes a double capture
-- impossible): the amount (0 = cancel the hold), the Stripe idempotency key every retry
-- reuses, and how the attempts went. `flagged`: given up, an operator alert was raised.
CREATE TABLE payment_captures (
    payment_intent_id  text PRIMARY KEY REFERENCES payments (payment_intent_id),
    amount_minor       bigint NOT NULL CHECK (amount_minor >= 0),
    idempotency_key    text NOT NULL UNIQUE,
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'succeeded', 'failed', 'flagged')),
    attempts           integer NOT NULL DEFAULT 0,
    last_error         text,
    requested_at       timestamptz NOT NULL,
    done_at            timestamptz
);
CREATE INDEX payment_captures_open ON payment_captures (requested_at)
    WHERE status IN ('pending', 'failed');

-- Extra off-session charges decided for a session (the bill above the hold): one per
-- session, charged by a job with a fixed idempotency key.
CREATE TABLE payment_extras (
    session_id         uuid PRIMARY KEY,
    driver_id          uuid NOT NULL REFERENCES drivers (driver_id) ON DELETE CASCADE,
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    currency           text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    idempotency_key    text NOT NULL UNIQUE,
    payment_intent_id  text UNIQUE,
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'succeeded', 'declined', 'flagged')),
    attempts           integer NOT NULL DEFAULT 0,
    last_error         text,
    requested_at       timestamptz NOT NULL,
    done_at            timestamptz
);

-- Refunds made by staff (and any Stripe reports on our charges). The request's
-- idempotency key makes a repeated refund request one refund.
CREATE TABLE payment_refunds (
    refund_id          text PRIMARY KEY,
    payment_intent_id  text NOT NULL REFERENCES payments (payment_intent_id),
    session_id         uuid,
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    reason             text NOT NULL DEFAULT '',
    request_key        text NOT NULL,
    staff_id           text,
    status             text NOT NULL DEFAULT 'succeeded',
    created_at         timestamptz NOT NULL,
    UNIQUE (request_key, payment_intent_id)
);
CREATE INDEX payment_refunds_session ON payment_refunds (session_id, created_at);

-- Stripe webhook events: the primary key applies each event id once.
CREATE TABLE stripe_events (
    event_id     text PRIMARY KEY,
    type         text NOT NULL,
    object_id    text,
    created      timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_events_received ON stripe_events (received_at);

-- Operator alerts (migration 0007) also carry payment problems, which concern a session
-- or a PaymentIntent rather than a charger.
ALTER TABLE operator_alerts ALTER COLUMN charger_id DROP NOT NULL;
ALTER TABLE operator_alerts DROP CONSTRAINT IF EXISTS operator_alerts_kind_check;
ALTER TABLE operator_alerts ADD CONSTRAINT operator_alerts_kind_check CHECK (kind IN (
    'quarantine', 'offline', 'degraded', 'flapping',
    'payment_capture_failed', 'payment_dispute', 'payment_stale_hold',
    'payment_mismatch', 'payment_extra_failed'));
ALTER TABLE operator_alerts
    ADD COLUMN payment_intent_id text,
    ADD COLUMN session_id uuid;
