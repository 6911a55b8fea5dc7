-- name: customer_for_driver
-- The driver's Stripe customer and default card, if one was created.
SELECT driver_id, customer_id, default_payment_method_id
FROM stripe_customers WHERE driver_id = $1;

-- name: insert_customer
-- Remember the driver's Stripe customer; the first one stored wins (returns the stored row).
WITH ins AS (
    INSERT INTO stripe_customers (driver_id, customer_id) VALUES ($1, $2)
    ON CONFLICT (driver_id) DO NOTHING
    RETURNING driver_id, customer_id, default_payment_method_id)
SELECT driver_id, customer_id, default_payment_method_id FROM ins
UNION ALL
SELECT driver_id, customer_id, default_payment_method_id FROM stripe_customers
WHERE driver_id = $1 AND NOT EXISTS (SELECT 1 FROM ins);

-- name: driver_for_customer
-- Which driver a Stripe customer id belongs to.
SELECT driver_id FROM stripe_customers WHERE customer_id = $1;

-- name: set_default_payment_method
-- Make a card the driver's default (NULL: no default).
UPDATE stripe_customers SET default_payment_method_id = $2, updated_at = now()
WHERE driver_id = $1;

-- name: upsert_payment_method
-- Record a card attached to the driver's customer (refreshing its details); returns nothing when the card is another driver's.
INSERT INTO payment_methods
    (payment_method_id, driver_id, customer_id, brand, last4, exp_month, exp_year)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (payment_method_id) DO UPDATE
    SET brand = EXCLUDED.brand, last4 = EXCLUDED.last4,
        exp_month = EXCLUDED.exp_month, exp_year = EXCLUDED.exp_year
    WHERE payment_methods.driver_id = EXCLUDED.driver_id
RETURNING payment_method_id, driver_id, customer_id, brand, last4, exp_month, exp_year,
          created_at;

-- name: list_payment_methods
-- The driver's cards, newest first, after the cursor (created_at, id).
SELECT payment_method_id, driver_id, customer_id, brand, last4, exp_month, exp_year, created_at
FROM payment_methods
WHERE driver_id = $1
  AND ($2::timestamptz IS NULL OR (created_at, payment_method_id) < ($2, $3::text))
ORDER BY created_at DESC, payment_method_id DESC
LIMIT $4;

-- name: payment_method_of_driver
-- One of the driver's cards (nothing when it is not theirs).
SELECT payment_method_id, driver_id, customer_id, brand, last4, exp_month, exp_year, created_at
FROM payment_methods WHERE driver_id = $1 AND payment_method_id = $2;

-- name: delete_payment_method
-- Forget one of the driver's cards.
DELETE FROM payment_methods WHERE driver_id = $1 AND payment_method_id = $2;

-- name: newest_payment_method
-- The driver's most recently added card (the next default after a delete).
SELECT payment_method_id FROM payment_methods WHERE driver_id = $1
ORDER BY created_at DESC, payment_method_id DESC LIMIT 1;

-- name: insert_payment
-- Record a PaymentIntent we created (a repeat of the same one keeps the furthest state).
INSERT INTO payments (payment_intent_id, session_id, driver_id, customer_id, payment_method_id,
                      kind, currency, status, amount_minor, captured_minor, idempotency_key,
                      failure_code, failure_message, latest_charge_id, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)
ON CONFLICT (payment_intent_id) DO UPDATE
    SET status = CASE WHEN payment_status_rank(EXCLUDED.status) > payment_status_rank(payments.status)
                      THEN EXCLUDED.status ELSE payments.status END,
        captured_minor = greatest(payments.captured_minor, EXCLUDED.captured_minor),
        latest_charge_id = coalesce(EXCLUDED.latest_charge_id, payments.latest_charge_id),
        updated_at = EXCLUDED.updated_at
RETURNING payment_intent_id, session_id, driver_id, customer_id, payment_method_id, kind,
          currency, status, amount_minor, captured_minor, refunded_minor, idempotency_key,
          failure_code, failure_message, latest_charge_id, created_at, updated_at;

-- name: payment
-- One PaymentIntent of ours.
SELECT payment_intent_id, session_id, driver_id, customer_id, payment_method_id, kind,
       currency, status, amount_minor, captured_minor, refunded_minor, idempotency_key,
       failure_code, failure_message, latest_charge_id, created_at, updated_at
FROM payments WHERE payment_intent_id = $1;

-- name: payment_by_key
-- The PaymentIntent created with this idempotency key, if any.
SELECT payment_intent_id, session_id, driver_id, customer_id, payment_method_id, kind,
       currency, status, amount_minor, captured_minor, refunded_minor, idempotency_key,
       failure_code, failure_message, latest_charge_id, created_at, updated_at
FROM payments WHERE idempotency_key = $1;

-- name: payment_by_charge
-- The PaymentIntent of one of our charges.
SELECT payment_intent_id, session_id, driver_id, customer_id, payment_method_id, kind,
       currency, status, amount_minor, captured_minor, refunded_minor, idempotency_key,
       failure_code, failure_message, latest_charge_id, created_at, updated_at
FROM payments WHERE latest_charge_id = $1;

-- name: session_payments
-- Every PaymentIntent of a session, holds first, oldest first.
SELECT payment_intent_id, session_id, driver_id, customer_id, payment_method_id, kind,
       currency, status, amount_minor, captured_minor, refunded_minor, idempotency_key,
       failure_code, failure_message, latest_charge_id, created_at, updated_at
FROM payments WHERE session_id = $1
ORDER BY kind DESC, created_at, payment_intent_id;

-- name: lock_session_payments
-- Every PaymentIntent of a session, locked for a refund decision.
SELECT payment_intent_id, session_id, driver_id, customer_id, payment_method_id, kind,
       currency, status, amount_minor, captured_minor, refunded_minor, idempotency_key,
       failure_code, failure_message, latest_charge_id, created_at, updated_at
FROM payments WHERE session_id = $1
ORDER BY kind DESC, created_at, payment_intent_id
FOR UPDATE;

-- name: apply_intent
-- Apply what Stripe says about a PaymentIntent: status only moves forward, the captured amount only grows.
UPDATE payments
SET status = CASE WHEN payment_status_rank($2) > payment_status_rank(status)
                  THEN $2 ELSE status END,
    captured_minor = least(amount_minor, greatest(captured_minor, $3)),
    failure_code = CASE WHEN $4::text IS NOT NULL THEN $4 ELSE failure_code END,
    failure_message = CASE WHEN $5::text IS NOT NULL THEN $5 ELSE failure_message END,
    latest_charge_id = coalesce($6, latest_charge_id),
    updated_at = $7
WHERE payment_intent_id = $1
RETURNING payment_intent_id, session_id, driver_id, customer_id, payment_method_id, kind,
          currency, status, amount_minor, captured_minor, refunded_minor, idempotency_key,
          failure_code, failure_message, latest_charge_id, created_at, updated_at;

-- name: set_refunded
-- What Stripe reports refunded on a PaymentIntent (only grows; never above what was captured).
UPDATE payments SET refunded_minor = least(captured_minor, greatest(refunded_minor, $2)), updated_at = $3
WHERE payment_intent_id = $1;

-- name: add_refunded
-- Count a refund we just made.
UPDATE payments SET refunded_minor = refunded_minor + $2, updated_at = $3
WHERE payment_intent_id = $1;

-- name: insert_capture
-- Decide the capture of a PaymentIntent once (returns the stored decision, new or not).
WITH ins AS (
    INSERT INTO payment_captures (payment_intent_id, amount_minor, idempotency_key, requested_at)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (payment_intent_id) DO NOTHING
    RETURNING payment_intent_id, amount_minor, idempotency_key, status, attempts, last_error,
              requested_at, done_at)
SELECT payment_intent_id, amount_minor, idempotency_key, status, attempts, last_error,
       requested_at, done_at FROM ins
UNION ALL
SELECT payment_intent_id, amount_minor, idempotency_key, status, attempts, last_error,
       requested_at, done_at FROM payment_captures
WHERE payment_intent_id = $1 AND NOT EXISTS (SELECT 1 FROM ins);

-- name: capture_row
-- The capture decision of a PaymentIntent.
SELECT payment_intent_id, amount_minor, idempotency_key, status, attempts, last_error,
       requested_at, done_at
FROM payment_captures WHERE payment_intent_id = $1;

-- name: capture_attempt_failed
-- Count a failed capture attempt; `flagged` when we give up.
UPDATE payment_captures
SET attempts = attempts + 1, last_error = $2, status = CASE WHEN $3 THEN 'flagged' ELSE 'failed' END,
    done_at = CASE WHEN $3 THEN $4 ELSE done_at END
WHERE payment_intent_id = $1 AND status IN ('pending', 'failed')
RETURNING attempts;

-- name: capture_succeeded
-- The capture (or the cancel of a zero amount) went through.
UPDATE payment_captures
SET status = 'succeeded', attempts = attempts + 1, last_error = NULL, done_at = $2
WHERE payment_intent_id = $1 AND status <> 'succeeded';

-- name: insert_extra
-- Decide the extra charge of a session once (returns the stored decision, new or not).
WITH ins AS (
    INSERT INTO payment_extras (session_id, driver_id, amount_minor, currency, idempotency_key,
                                requested_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (session_id) DO NOTHING
    RETURNING session_id, driver_id, amount_minor, currency, idempotency_key, payment_intent_id,
              status, attempts, last_error, requested_at, done_at)
SELECT * FROM ins
UNION ALL
SELECT session_id, driver_id, amount_minor, currency, idempotency_key, payment_intent_id,
       status, attempts, last_error, requested_at, done_at FROM payment_extras
WHERE session_id = $1 AND NOT EXISTS (SELECT 1 FROM ins);

-- name: extra_row
-- The extra charge decided for a session.
SELECT session_id, driver_id, amount_minor, currency, idempotency_key, payment_intent_id,
       status, attempts, last_error, requested_at, done_at
FROM payment_extras WHERE session_id = $1;

-- name: extra_attempt_failed
-- Count a failed extra-charge attempt (`declined` or `flagged` are final).
UPDATE payment_extras
SET attempts = attempts + 1, last_error = $2, status = $3, payment_intent_id = coalesce($4, payment_intent_id),
    done_at = CASE WHEN $3 IN ('declined', 'flagged') THEN $5 ELSE done_at END
WHERE session_id = $1 AND status = 'pending'
RETURNING attempts;

-- name: extra_succeeded
-- The extra charge went through.
UPDATE payment_extras
SET status = 'succeeded', attempts = attempts + 1, last_error = NULL, payment_intent_id = $2,
    done_at = $3
WHERE session_id = $1 AND status <> 'succeeded';

-- name: insert_refund
-- Record a refund (once per Stripe refund id).
INSERT INTO payment_refunds (refund_id, payment_intent_id, session_id, amount_minor, reason,
                             request_key, staff_id, status, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (refund_id) DO NOTHING
RETURNING refund_id;

-- name: refunds_for_request
-- The refunds one refund request made (a replay of the request finds them).
SELECT refund_id, payment_intent_id, session_id, amount_minor, reason, request_key, staff_id,
       status, created_at
FROM payment_refunds WHERE request_key = $1 ORDER BY created_at, refund_id;

-- name: insert_event
-- Claim a Stripe event id; returns nothing when it was applied before.
INSERT INTO stripe_events (event_id, type, object_id, created) VALUES ($1, $2, $3, $4)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id;

-- name: insert_alert
-- Raise a payment operator alert once per dedupe key; returns its id when it is new.
INSERT INTO operator_alerts (kind, reason, detail, dedupe_key, raised_at, payment_intent_id,
                             session_id)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING alert_id;

-- name: stale_holds
-- Holds still uncaptured after $1 with no capture decided, and how their session stands.
SELECT p.payment_intent_id, p.session_id, p.created_at,
       s.status AS session_status, s.ended_at AS session_ended_at,
       (s.session_id IS NOT NULL) AS session_exists
FROM payments p
LEFT JOIN charging_sessions s ON s.session_id = p.session_id
WHERE p.kind = 'hold' AND p.status = 'requires_capture' AND p.created_at < $1
  AND NOT EXISTS (SELECT 1 FROM payment_captures c WHERE c.payment_intent_id = p.payment_intent_id)
ORDER BY p.created_at
LIMIT $2;

-- name: captures_to_check
-- Capture decisions flagged, or failing and not retried since $1.
SELECT payment_intent_id, amount_minor, idempotency_key, status, attempts, last_error,
       requested_at, done_at
FROM payment_captures
WHERE status = 'flagged' OR (status IN ('pending', 'failed') AND requested_at < $1)
ORDER BY requested_at
LIMIT $2;

-- name: intents_to_check
-- PaymentIntents not in a final state, untouched since $1 (Stripe may know better).
SELECT payment_intent_id, session_id, driver_id, customer_id, payment_method_id, kind,
       currency, status, amount_minor, captured_minor, refunded_minor, idempotency_key,
       failure_code, failure_message, latest_charge_id, created_at, updated_at
FROM payments
WHERE status NOT IN ('succeeded', 'canceled', 'requires_payment_method') AND updated_at < $1
ORDER BY updated_at
LIMIT $2;
