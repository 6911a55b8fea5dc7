"""Payments use cases: Stripe customer per driver, saved cards, pre-authorisation holds,
captures, extra charges, refunds, webhook events and reconciliation.

Used by the sessions domain (COORD.md): `place_hold`, `capture`, `cancel_hold`,
`charge_extra` talk to Stripe; `settle_session` / `request_capture` decide captures in the
caller's transaction and leave the Stripe calls to the `capture_payment` job (retried with
the same idempotency key; `payment_captures` has one row per PaymentIntent, so a second
capture cannot even be asked for); `session_payment` is the `payment` block of a session.

Everything Stripe says (an API answer, a webhook, a re-read) is applied as a fact about the
object's latest state, and facts only move a row forward (`payment_status_rank`,
captured/refunded amounts only grow), so duplicates, shuffles and late arrivals converge.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict, Unpack

import stripe

from app.core import outbox
from app.core.auth import StaffPrincipal
from app.core.clock import Clock
from app.core.errors import Conflict, DomainError, NotFound
from app.core.pagination import CursorText, CursorTime, decode_cursor, encode_cursor
from app.core.settings import Settings
from app.core.sql import Executor
from app.payments import queries as q
from app.payments.schemas import (
    CaptureOutcome,
    CaptureRow,
    CustomerRow,
    Hold,
    PaymentMethodOut,
    PaymentMethodPage,
    PaymentMethodRow,
    PaymentRow,
    PaymentSummary,
    RefundOut,
    WebhookAck,
)
from app.payments.stripe_client import (
    CardFacts,
    Gateway,
    IntentFacts,
    StripeUnavailable,
    card_facts,
    charge_facts,
    intent_facts,
    to_dict,
)

log = logging.getLogger("app.payments")

CAPTURE_JOB = "capture_payment"
EXTRA_JOB = "charge_extra_payment"
TEST_CARDS: Mapping[str, str] = {
    # localstripe's (and Stripe test mode's) magic ids: each use makes a new PaymentMethod
    "visa": "pm_card_visa",
    "declined_charge": "pm_card_chargeCustomerFail",  # 4000000000000341
}


# --- Errors --------------------------------------------------------------------------


class PaymentsUnavailable(DomainError):
    status, code, title = 503, "payments_unavailable", "Payments are unavailable"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or "Stripe cannot be reached; try again shortly")
        self.headers = {"Retry-After": "5"}


class PaymentMethodInvalid(DomainError):
    status, code, title = 422, "payment_method_invalid", "The payment method is not valid"


class PaymentMethodRequired(DomainError):
    status, code, title = 402, "payment_method_required", "A card on file is required"


class CardDeclined(DomainError):
    status, code, title = 402, "card_declined", "The card was declined"

    def __init__(self, detail: str = "", *, decline_code: str | None = None) -> None:
        super().__init__(detail)
        self.decline_code = decline_code


class CaptureFailed(DomainError):
    """Stripe refused the capture or cancel for good (the job flags it)."""

    status, code, title = 409, "capture_failed", "The payment could not be captured"


class CaptureConflict(Conflict):
    code, title = "capture_conflict", "A different capture was decided already"


class RefundExceedsCaptured(Conflict):
    code, title = "refund_exceeds_captured", "Refunds would exceed what was captured"


def _now(now: datetime | None) -> datetime:
    return now if now is not None else Clock().now()


def _key(*parts: object) -> str:
    return ":".join(str(p) for p in parts)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _metadata(values: Mapping[str, Any]) -> dict[str, str]:
    """Stripe metadata: string values, at most 50 keys of ≤ 40 chars, values ≤ 500."""
    return {str(k)[:40]: str(v)[:500] for k, v in list(values.items())[:50] if v is not None}


# --- Customers and cards -------------------------------------------------------------


async def ensure_customer(
    db: Executor, gateway: Gateway, *, driver_id: uuid.UUID | str
) -> CustomerRow:
    """The driver's Stripe customer, created on first use. Pass the pool (not the
    request's transaction): the row must outlive a request that fails later. The
    idempotency key makes two concurrent first uses one customer at Stripe."""
    driver = _uuid(driver_id)
    row = await q.customer_for_driver(db, driver_id=driver)
    if row is not None:
        return row
    try:
        customer = await gateway.call(
            gateway.v1.customers.create_async(
                {"metadata": {"driver_id": str(driver)}},
                options={"idempotency_key": _key("customer", driver)},
            )
        )
    except StripeUnavailable as exc:
        raise PaymentsUnavailable() from exc
    return await q.insert_customer(db, driver_id=driver, customer_id=str(customer.id))


async def create_setup_intent(
    pool: Executor, gateway: Gateway, *, driver_id: str, request_key: str | None
) -> tuple[str, str]:
    """A SetupIntent (`usage=off_session`) on the driver's customer: (id, client_secret)."""
    customer = await ensure_customer(pool, gateway, driver_id=driver_id)
    try:
        intent = await gateway.call(
            gateway.v1.setup_intents.create_async(
                {
                    "customer": customer.customer_id,
                    "usage": "off_session",
                    "payment_method_types": ["card"],
                    "metadata": {"driver_id": driver_id},
                },
                options={"idempotency_key": _key("setup", driver_id, request_key or uuid.uuid4())},
            )
        )
    except StripeUnavailable as exc:
        raise PaymentsUnavailable() from exc
    return str(intent.id), str(intent.client_secret)


def _card_out(row: PaymentMethodRow, default_id: str | None) -> PaymentMethodOut:
    return PaymentMethodOut(
        payment_method_id=row.payment_method_id,
        brand=row.brand,
        last4=row.last4,
        exp_month=row.exp_month,
        exp_year=row.exp_year,
        default=row.payment_method_id == default_id,
    )


async def _save_card(
    db: Executor, card: CardFacts, *, driver_id: uuid.UUID, customer_id: str
) -> PaymentMethodRow | None:
    """Store (or refresh) a card attached to the driver's customer; None when the card is
    another driver's."""
    return await q.upsert_payment_method(
        db,
        payment_method_id=card.id,
        driver_id=driver_id,
        customer_id=customer_id,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
    )


async def attach_payment_method(
    db: Executor,
    pool: Executor,
    gateway: Gateway,
    *,
    driver_id: str,
    payment_method_id: str,
) -> PaymentMethodOut:
    """Attach a card (by its Stripe id) to the driver's customer and make it the default.
    Unknown to Stripe, not a card, or attached to another customer → 422
    `payment_method_invalid`; refused by the issuer when attached → 402 `card_declined`."""
    driver = _uuid(driver_id)
    customer = await ensure_customer(pool, gateway, driver_id=driver)
    try:
        method = await gateway.call(gateway.v1.payment_methods.retrieve_async(payment_method_id))
        card = card_facts(method)
        if card.type != "card":
            raise PaymentMethodInvalid("only cards can be saved")
        if card.customer is not None and card.customer != customer.customer_id:
            raise PaymentMethodInvalid("this payment method belongs to someone else")
        if card.customer is None:
            method = await gateway.call(
                gateway.v1.payment_methods.attach_async(
                    payment_method_id,
                    {"customer": customer.customer_id},
                    options={"idempotency_key": _key("attach", customer.customer_id, card.id)},
                )
            )
            card = card_facts(method)  # a test-mode magic id (pm_card_visa) makes a new one
        await gateway.call(
            gateway.v1.customers.update_async(
                customer.customer_id,
                {"invoice_settings": {"default_payment_method": card.id}},
                options={"idempotency_key": _key("default", card.id, uuid.uuid4())},
            )
        )
    except stripe.CardError as exc:
        raise CardDeclined(exc.user_message or "the card was declined") from exc
    except stripe.InvalidRequestError as exc:
        raise PaymentMethodInvalid("Stripe does not know this payment method") from exc
    except StripeUnavailable as exc:
        raise PaymentsUnavailable() from exc
    row = await _save_card(db, card, driver_id=driver, customer_id=customer.customer_id)
    if row is None:
        raise PaymentMethodInvalid("this payment method belongs to someone else")
    await q.set_default_payment_method(db, driver_id=driver, payment_method_id=card.id)
    return _card_out(row, card.id)


async def list_payment_methods(
    db: Executor, *, driver_id: str, limit: int, cursor: str | None
) -> PaymentMethodPage:
    driver = _uuid(driver_id)
    after = decode_cursor(cursor, tuple[CursorTime, CursorText])
    customer = await q.customer_for_driver(db, driver_id=driver)
    rows = await q.list_payment_methods(db, driver_id=driver, after=after, limit=limit + 1)
    default_id = customer.default_payment_method_id if customer else None
    items = [_card_out(r, default_id) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor((last.created_at, last.payment_method_id))
    return PaymentMethodPage(items=items, next_cursor=next_cursor)


async def delete_payment_method(
    db: Executor, gateway: Gateway, *, driver_id: str, payment_method_id: str
) -> None:
    """Detach one of the driver's cards (another driver's → 404). When it was the default,
    the newest remaining card becomes the default."""
    driver = _uuid(driver_id)
    row = await q.payment_method_of_driver(
        db, driver_id=driver, payment_method_id=payment_method_id
    )
    if row is None:
        raise NotFound("no such payment method")
    try:
        await gateway.call(
            gateway.v1.payment_methods.detach_async(
                payment_method_id,
                options={"idempotency_key": _key("detach", payment_method_id)},
            )
        )
    except stripe.InvalidRequestError:
        log.info("payment method %s was detached at Stripe already", payment_method_id)
    except StripeUnavailable as exc:
        raise PaymentsUnavailable() from exc
    await q.delete_payment_method(db, driver_id=driver, payment_method_id=payment_method_id)
    customer = await q.customer_for_driver(db, driver_id=driver)
    if customer is None or customer.default_payment_method_id != payment_method_id:
        return
    successor = await q.newest_payment_method(db, driver_id=driver)
    await q.set_default_payment_method(db, driver_id=driver, payment_method_id=successor)
    try:
        await gateway.call(
            gateway.v1.customers.update_async(
                customer.customer_id,
                {"invoice_settings": {"default_payment_method": successor or ""}},
                options={"idempotency_key": _key("default", successor, uuid.uuid4())},
            )
        )
    except (stripe.StripeError, StripeUnavailable) as exc:  # holds use our default anyway
        log.warning("could not move the default card at Stripe: %r", exc)


# --- Holds, captures, extra charges (the sessions domain's API) ----------------------


def _hold_from(row: PaymentRow) -> Hold:
    if row.status == "requires_payment_method":
        raise CardDeclined(
            row.failure_message or "the card was declined", decline_code=row.failure_code
        )
    return Hold(
        payment_intent_id=row.payment_intent_id,
        amount_minor=row.amount_minor,
        status=row.status,
        currency=row.currency,
    )


def _failure_message(facts: IntentFacts) -> str | None:
    """Stripe's message for the last failed payment attempt (what the row keeps of it)."""
    error = facts.last_payment_error or {}
    return str(error["message"])[:500] if error.get("message") else None


async def _confirm_off_session(
    db: Executor,
    gateway: Gateway,
    *,
    kind: str,
    driver_id: uuid.UUID | str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    metadata: Mapping[str, Any],
    session_id: uuid.UUID | str | None = None,
    now: datetime | None = None,
) -> PaymentRow:
    """Create and confirm a PaymentIntent off-session on the driver's default card."""
    if amount_minor <= 0:
        raise ValueError("amount_minor must be positive")
    at = _now(now)
    driver = _uuid(driver_id)
    session = _uuid(session_id) if session_id else None
    if session is None and metadata.get("session_id"):
        session = _uuid(str(metadata["session_id"]))
    existing = await q.payment_by_key(db, idempotency_key=idempotency_key)
    if existing is not None:
        return existing
    customer = await q.customer_for_driver(db, driver_id=driver)
    if customer is None or not customer.default_payment_method_id:
        raise PaymentMethodRequired("add a card first (POST /v1/me/payment-methods)")

    async def record(facts: IntentFacts) -> PaymentRow:
        """Our row of the PaymentIntent Stripe made (or declined) for this request."""
        captured = 0
        if facts.status == "succeeded":
            captured = facts.amount_received if facts.amount_received is not None else facts.amount
        return await q.insert_payment(
            db,
            payment_intent_id=facts.id,
            session_id=session,
            driver_id=driver,
            customer_id=customer.customer_id,
            payment_method_id=customer.default_payment_method_id,
            kind=kind,
            currency=currency.upper(),
            status=facts.status,
            amount_minor=facts.amount,
            captured_minor=captured,
            idempotency_key=idempotency_key,
            failure_code=facts.failure_code,
            failure_message=_failure_message(facts),
            latest_charge_id=facts.charge_id,
            now=at,
        )

    params: dict[str, Any] = {
        "amount": amount_minor,
        "currency": currency.lower(),
        "customer": customer.customer_id,
        "payment_method": customer.default_payment_method_id,
        "confirm": True,
        "off_session": True,
        "metadata": _metadata(
            {
                **metadata,
                "driver_id": driver,
                "session_id": session,
                "voltway_kind": kind,
            }
        ),
    }
    if kind == "hold":
        params["capture_method"] = "manual"
    try:
        intent = await gateway.call(
            gateway.v1.payment_intents.create_async(
                params, options={"idempotency_key": idempotency_key}
            )
        )
    except stripe.CardError as exc:
        error = exc.error
        failed = getattr(error, "payment_intent", None) if error is not None else None
        if failed is not None:  # real Stripe names the declined PaymentIntent
            await record(intent_facts(failed))
        code = (getattr(error, "decline_code", None) or exc.code) if error else exc.code
        raise CardDeclined(exc.user_message or "the card was declined", decline_code=code) from exc
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_missing" or exc.http_status == 404:
            raise PaymentMethodRequired("the card on file is gone; add a card again") from exc
        log.error("Stripe refused a PaymentIntent: %s %s", exc.http_status, exc.code)
        raise PaymentsUnavailable("Stripe refused the request") from exc
    except StripeUnavailable as exc:
        raise PaymentsUnavailable() from exc
    facts = intent_facts(intent)
    row = await record(facts)
    if facts.status == "requires_action":
        # Off-session and the issuer wants the driver present (SCA): not a usable card now.
        try:
            await cancel_hold(
                gateway,
                payment_intent_id=facts.id,
                idempotency_key=_key("cancel", facts.id),
                db=db,
                now=at,
            )
        except (CaptureFailed, PaymentsUnavailable) as exc:
            log.warning("could not cancel %s needing authentication: %r", facts.id, exc)
        raise CardDeclined(
            "the card needs the driver's authentication", decline_code="authentication_required"
        )
    return row


class OffSessionPayment(TypedDict):
    """The keyword arguments of `place_hold` and `charge_extra`."""

    driver_id: uuid.UUID | str
    amount_minor: int
    currency: str
    idempotency_key: str
    metadata: Mapping[str, Any]
    session_id: NotRequired[uuid.UUID | str | None]
    now: NotRequired[datetime | None]


async def place_hold(db: Executor, gateway: Gateway, **payment: Unpack[OffSessionPayment]) -> Hold:
    """Pre-authorise `amount_minor` on the driver's default card: a PaymentIntent with
    `capture_method=manual`, confirmed off-session, keyed by `idempotency_key` (derive it
    from the session id: a repeat returns the same hold). `status == "requires_capture"`
    means the hold is in place. No card → `PaymentMethodRequired` (402); declined →
    `CardDeclined` (402); Stripe away → `PaymentsUnavailable` (503). `session_id` (or
    `metadata["session_id"]`) links the payment row to the session."""
    hold = _hold_from(await _confirm_off_session(db, gateway, kind="hold", **payment))
    if hold.status not in ("requires_capture", "succeeded"):
        raise PaymentsUnavailable(f"the hold is {hold.status}, not in place")
    return hold


async def charge_extra(
    db: Executor, gateway: Gateway, **payment: Unpack[OffSessionPayment]
) -> Hold:
    """Charge `amount_minor` at once, off-session on the default card (what a bill
    exceeds the hold by: a second payment, shown as such). Errors as `place_hold`."""
    return _hold_from(await _confirm_off_session(db, gateway, kind="extra", **payment))


async def _apply_facts(db: Executor, facts: IntentFacts, now: datetime) -> PaymentRow | None:
    """Apply a PaymentIntent's state to our row (only ever forward)."""
    captured = 0
    if facts.status == "succeeded":
        if facts.amount_received is not None:
            captured = facts.amount_received
        else:  # localstripe has no amount_received: what we decided to capture
            decided = await q.capture_row(db, payment_intent_id=facts.id)
            current = await q.payment(db, payment_intent_id=facts.id)
            if decided is not None:
                captured = decided.amount_minor
            elif current is not None and current.kind == "extra":
                captured = facts.amount
    row = await q.apply_intent(
        db,
        payment_intent_id=facts.id,
        status=facts.status,
        captured_minor=captured,
        failure_code=facts.failure_code if facts.status == "requires_payment_method" else None,
        failure_message=_failure_message(facts),
        latest_charge_id=facts.charge_id,
        now=now,
    )
    if row is not None and row.status in ("succeeded", "canceled"):
        decided = await q.capture_row(db, payment_intent_id=facts.id)
        if decided is not None and decided.status != "succeeded":
            expected = "canceled" if decided.amount_minor == 0 else "succeeded"
            if row.status == expected:
                await q.capture_succeeded(db, payment_intent_id=facts.id, now=now)
    return row


async def _retrieve(gateway: Gateway, payment_intent_id: str) -> IntentFacts:
    intent = await gateway.call(gateway.v1.payment_intents.retrieve_async(payment_intent_id))
    return intent_facts(intent)


async def _settle(
    gateway: Gateway,
    payment_intent_id: str,
    request: Awaitable[Any],
    *,
    action: str,
    done: str,
) -> IntentFacts:
    """Send a capture or cancel `request`. Refused, but the PaymentIntent is `done` already
    (an attempt whose answer was lost) → its facts; else refused → `CaptureFailed`."""
    try:
        try:
            return intent_facts(await gateway.call(request))
        except stripe.InvalidRequestError as exc:
            # Already done by an attempt whose answer was lost, expired, canceled…
            facts = await _retrieve(gateway, payment_intent_id)
            if facts.status != done:
                raise CaptureFailed(
                    f"Stripe refused the {action} ({exc.code or exc.http_status}); "
                    f"the PaymentIntent is {facts.status}"
                ) from exc
            return facts
    except StripeUnavailable as exc:
        raise PaymentsUnavailable() from exc


async def capture(
    gateway: Gateway,
    *,
    payment_intent_id: str,
    amount_minor: int,
    idempotency_key: str,
    db: Executor | None = None,
    now: datetime | None = None,
) -> CaptureOutcome:
    """Capture `amount_minor` (≤ the hold) of a hold; zero cancels it instead. Safe to
    repeat with the same key: an earlier attempt that went through (its answer lost) is
    recognised by re-reading the PaymentIntent. With `db` the outcome is recorded.
    Raises `PaymentsUnavailable` (try again later) or `CaptureFailed` (for good)."""
    if amount_minor < 0:
        raise ValueError("amount_minor must not be negative")
    if amount_minor == 0:
        return await cancel_hold(
            gateway,
            payment_intent_id=payment_intent_id,
            idempotency_key=idempotency_key,
            db=db,
            now=now,
        )
    facts = await _settle(
        gateway,
        payment_intent_id,
        gateway.v1.payment_intents.capture_async(
            payment_intent_id,
            {"amount_to_capture": amount_minor},
            options={"idempotency_key": idempotency_key},
        ),
        action="capture",
        done="succeeded",
    )
    if facts.status != "succeeded":
        raise CaptureFailed(f"the PaymentIntent is {facts.status} after the capture")
    captured = facts.amount_received if facts.amount_received is not None else amount_minor
    if db is not None:
        await _apply_facts(db, facts, _now(now))
    return CaptureOutcome(
        payment_intent_id=payment_intent_id, status="succeeded", captured_minor=captured
    )


async def cancel_hold(
    gateway: Gateway,
    *,
    payment_intent_id: str,
    idempotency_key: str,
    db: Executor | None = None,
    now: datetime | None = None,
) -> CaptureOutcome:
    """Release a hold (cancel the PaymentIntent); canceling a canceled one is a success.
    A PaymentIntent captured already cannot be canceled → `CaptureFailed`."""
    facts = await _settle(
        gateway,
        payment_intent_id,
        gateway.v1.payment_intents.cancel_async(
            payment_intent_id, options={"idempotency_key": idempotency_key}
        ),
        action="cancel",
        done="canceled",
    )
    if db is not None:
        await _apply_facts(db, facts, _now(now))
    return CaptureOutcome(payment_intent_id=payment_intent_id, status="canceled", captured_minor=0)


async def record_outcome(db: Executor, outcome: CaptureOutcome, *, now: datetime) -> None:
    """Store a capture's (or release's) outcome and close its decision."""
    await q.apply_intent(
        db,
        payment_intent_id=outcome.payment_intent_id,
        status=outcome.status,
        captured_minor=outcome.captured_minor,
        failure_code=None,
        failure_message=None,
        latest_charge_id=None,
        now=now,
    )
    await q.capture_succeeded(db, payment_intent_id=outcome.payment_intent_id, now=now)


async def refresh_intent(
    db: Executor, gateway: Gateway, payment_intent_id: str, *, now: datetime
) -> IntentFacts:
    """Re-read a PaymentIntent from Stripe and apply it (forward only)."""
    try:
        facts = await _retrieve(gateway, payment_intent_id)
    except StripeUnavailable as exc:
        raise PaymentsUnavailable() from exc
    await _apply_facts(db, facts, now)
    return facts


async def request_capture(
    db: Executor, *, payment_intent_id: str, amount_minor: int, now: datetime
) -> CaptureRow:
    """Decide, in the caller's transaction, to capture `amount_minor` of a hold (0 =
    release it); the `capture_payment` job does it. Asking again for the same amount is a
    no-op; another amount → `CaptureConflict` (409): one capture per PaymentIntent."""
    row = await q.payment(db, payment_intent_id=payment_intent_id)
    if row is None:
        raise NotFound("no such payment")
    if not 0 <= amount_minor <= row.amount_minor:
        raise ValueError(f"capture {amount_minor} outside 0..{row.amount_minor}")
    decided = await q.insert_capture(
        db,
        payment_intent_id=payment_intent_id,
        amount_minor=amount_minor,
        idempotency_key=_key("capture", payment_intent_id),
        now=now,
    )
    if decided.amount_minor != amount_minor:
        raise CaptureConflict(
            f"{payment_intent_id} is to be captured for {decided.amount_minor} already"
        )
    await outbox.enqueue(
        db,
        job=CAPTURE_JOB,
        args={"payment_intent_id": payment_intent_id},
        dedupe_key=_key("capture", payment_intent_id, 0),
    )
    return decided


async def settle_session(
    db: Executor,
    *,
    session_id: uuid.UUID | str,
    driver_id: uuid.UUID | str,
    total_minor: int,
    currency: str,
    now: datetime,
) -> PaymentSummary:
    """Decide how a billed session is paid, in the caller's transaction (call it once,
    where the bill is written): the holds in place are captured oldest first up to
    `total_minor` (a hold not needed is released), and what exceeds them all is charged
    as one extra off-session payment. Jobs do the Stripe calls (retried, never twice)."""
    session = _uuid(session_id)
    remaining = max(0, total_minor)
    for row in await q.session_payments(db, session_id=session):
        if row.kind != "hold" or row.status != "requires_capture":
            continue
        part = min(remaining, row.amount_minor)
        await request_capture(
            db, payment_intent_id=row.payment_intent_id, amount_minor=part, now=now
        )
        remaining -= part
    if remaining > 0:
        await q.insert_extra(
            db,
            session_id=session,
            driver_id=_uuid(driver_id),
            amount_minor=remaining,
            currency=currency.upper(),
            idempotency_key=_key("extra", session),
            now=now,
        )
        await outbox.enqueue(
            db,
            job=EXTRA_JOB,
            args={"session_id": str(session)},
            dedupe_key=_key("extra", session, 0),
        )
    return await session_payment(db, session_id=session)


async def session_payment(db: Executor, *, session_id: uuid.UUID | str) -> PaymentSummary:
    """The `payment` block of a session: status and amounts over all its PaymentIntents."""
    session = _uuid(session_id)
    rows = await q.session_payments(db, session_id=session)
    if not rows:
        return PaymentSummary(status="none")
    holds = [r for r in rows if r.kind == "hold"]
    authorised = [r for r in holds if r.status in ("requires_capture", "succeeded", "canceled")]
    captured = sum(r.captured_minor for r in rows)
    refunded = sum(r.refunded_minor for r in rows)
    extra = sum(r.captured_minor for r in rows if r.kind == "extra")
    decisions = [await q.capture_row(db, payment_intent_id=r.payment_intent_id) for r in holds]
    extra_row = await q.extra_row(db, session_id=session)
    if any(d is not None and d.status == "flagged" for d in decisions) or (
        extra_row is not None and extra_row.status in ("flagged", "declined")
    ):
        status = "flagged"
    elif any(d is not None and d.status in ("pending", "failed") for d in decisions) or (
        extra_row is not None and extra_row.status == "pending"
    ):
        status = "capture_pending"
    elif captured > 0:
        if refunded >= captured:
            status = "refunded"
        elif refunded > 0:
            status = "partially_refunded"
        else:
            status = "captured"
    elif any(r.status == "requires_capture" for r in holds):
        status = "authorized"
    elif holds and all(r.status == "canceled" for r in holds):
        status = "canceled"
    else:
        status = "failed"
    return PaymentSummary(
        status=status,
        preauth_minor=sum(r.amount_minor for r in authorised),
        captured_minor=captured,
        refunded_minor=refunded,
        extra_minor=extra,
        currency=rows[0].currency,
    )


# --- Alerts --------------------------------------------------------------------------


async def raise_alert(
    db: Executor,
    *,
    kind: str,
    reason: str,
    dedupe_key: str,
    now: datetime,
    payment_intent_id: str | None = None,
    session_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> bool:
    """An operator alert about a payment (`operator_alerts`), once per dedupe key."""
    alert_id = await q.insert_alert(
        db,
        kind=kind,
        reason=reason,
        detail=detail or {},
        dedupe_key=dedupe_key,
        now=now,
        payment_intent_id=payment_intent_id,
        session_id=session_id,
    )
    if alert_id is not None:
        log.warning("payment alert %s: %s (%s)", kind, reason, payment_intent_id or session_id)
    return alert_id is not None


# --- Refunds -------------------------------------------------------------------------


async def refund_session(
    db: Executor,
    gateway: Gateway | None,
    *,
    session_id: uuid.UUID | str,
    amount_minor: int,
    reason: str,
    staff: StaffPrincipal,
    request_key: str,
    now: datetime,
    request_id: str | None = None,
) -> RefundOut:
    """Refund `amount_minor` of what a session paid (its holds' captures first, then the
    extra payment); all refunds together never exceed what was captured (409). The same
    `request_key` (the request's Idempotency-Key) makes the same refund, at Stripe too."""
    from app.core.audit import record

    session = _uuid(session_id)
    done = [
        r
        for r in await q.refunds_for_request(db, request_key=request_key)
        if r.session_id == session
    ]
    rows = await q.lock_session_payments(db, session_id=session)
    if not rows:
        raise NotFound("no payment for this session")
    captured = sum(r.captured_minor for r in rows)
    refunded = sum(r.refunded_minor for r in rows)
    if done:  # a replay of a refund request that was recorded
        return RefundOut(
            refund_id=done[0].refund_id,
            amount_minor=sum(r.amount_minor for r in done),
            refunded_minor=refunded,
            captured_minor=captured,
            currency=rows[0].currency,
        )
    if gateway is None:
        raise PaymentsUnavailable("Stripe is not configured (STRIPE_SECRET_KEY)")
    if refunded + amount_minor > captured:
        raise RefundExceedsCaptured(
            f"captured {captured}, refunded {refunded}: at most {captured - refunded} more"
        )
    remaining = amount_minor
    refund_ids: list[str] = []
    for row in rows:
        room = row.captured_minor - row.refunded_minor
        if remaining <= 0 or room <= 0:
            continue
        part = min(room, remaining)
        try:
            refund = await gateway.call(
                gateway.v1.refunds.create_async(
                    {
                        "payment_intent": row.payment_intent_id,
                        "amount": part,
                        "metadata": _metadata(
                            {"reason": reason, "session_id": session, "staff_id": staff.staff_id}
                        ),
                    },
                    options={"idempotency_key": _key("refund", request_key, row.payment_intent_id)},
                )
            )
        except StripeUnavailable as exc:
            raise PaymentsUnavailable() from exc
        except stripe.InvalidRequestError as exc:
            raise RefundExceedsCaptured(f"Stripe refused the refund: {exc.user_message}") from exc
        data = to_dict(refund)
        refund_id = str(data["id"])
        await q.insert_refund(
            db,
            refund_id=refund_id,
            payment_intent_id=row.payment_intent_id,
            session_id=session,
            amount_minor=part,
            reason=reason,
            request_key=request_key,
            staff_id=staff.staff_id,
            status=str(data.get("status") or "succeeded"),
            now=now,
        )
        await q.add_refunded(
            db, payment_intent_id=row.payment_intent_id, amount_minor=part, now=now
        )
        refund_ids.append(refund_id)
        remaining -= part
    await record(
        db,  # type: ignore[arg-type]
        actor=staff,
        action="session.refund",
        entity_type="charging_session",
        entity_id=str(session),
        before={"refunded_minor": refunded, "captured_minor": captured},
        after={
            "refunded_minor": refunded + amount_minor,
            "amount_minor": amount_minor,
            "reason": reason,
            "refund_ids": refund_ids,
        },
        request_id=request_id,
    )
    return RefundOut(
        refund_id=refund_ids[0],
        amount_minor=amount_minor,
        refunded_minor=refunded + amount_minor,
        captured_minor=captured,
        currency=rows[0].currency,
    )


# --- Webhook events ------------------------------------------------------------------


class InvalidSignature(DomainError):
    status, code, title = 400, "invalid_signature", "The webhook signature is not valid"


def verify_event(settings: Settings, body: bytes, signature: str | None) -> dict[str, Any]:
    """The event of a webhook body, once `Stripe-Signature` checks out with the endpoint
    secret and is at most `STRIPE_WEBHOOK_TOLERANCE_S` old; else `InvalidSignature`."""
    secret = settings.stripe_webhook_secret
    if not secret:
        log.warning("Stripe webhook refused: STRIPE_WEBHOOK_SECRET is not set")
        raise InvalidSignature("no endpoint secret is configured")
    try:
        event = stripe.Webhook.construct_event(
            body, signature, secret, tolerance=settings.stripe_webhook_tolerance_s
        )
    except stripe.SignatureVerificationError:
        raise InvalidSignature("Stripe-Signature is missing, wrong or too old") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidSignature("the body is not a Stripe event") from None
    data = to_dict(event)
    if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise InvalidSignature("the body is not a Stripe event")
    return data


async def handle_event(
    db: Executor, gateway: Gateway | None, event: Mapping[str, Any], *, now: datetime
) -> WebhookAck:
    """Apply a verified event once (its id is claimed in `stripe_events` in the same
    transaction). Objects are re-read from Stripe when it answers, else the event's own
    copy is used; either way only forward."""
    obj = (event.get("data") or {}).get("object") or {}
    object_id = obj.get("id") if isinstance(obj, dict) else None
    created = datetime.fromtimestamp(int(event.get("created") or now.timestamp()), UTC)
    kind = str(event["type"])
    fresh = await q.insert_event(
        db, event_id=str(event["id"]), type=kind, object_id=object_id, created=created
    )
    if not fresh:
        return WebhookAck(received=True, duplicate=True)
    if not isinstance(obj, dict):
        return WebhookAck(received=True)
    if kind.startswith("payment_intent."):
        await _on_payment_intent(db, gateway, kind, obj, now)
    elif kind == "charge.refunded":
        await _on_charge_refunded(db, gateway, obj, now)
    elif kind == "charge.dispute.created":
        await _on_dispute(db, obj, now)
    elif kind == "setup_intent.succeeded":
        await _on_setup_intent(db, gateway, obj)
    return WebhookAck(received=True)


async def _fresh_intent(gateway: Gateway | None, intent_id: str) -> IntentFacts | None:
    """The PaymentIntent as Stripe has it now, or None when it cannot say."""
    if gateway is None:
        return None
    try:
        return await _retrieve(gateway, intent_id)
    except (StripeUnavailable, stripe.StripeError) as exc:
        log.info("could not re-read %s (%r); the event's copy stands", intent_id, exc)
        return None


async def _on_payment_intent(
    db: Executor, gateway: Gateway | None, kind: str, obj: Mapping[str, Any], now: datetime
) -> None:
    ours = await q.payment(db, payment_intent_id=str(obj.get("id")))
    if ours is None:
        return  # not one of ours (or not recorded yet: reconciliation has the row later)
    # The event's copy is a fact as of its time, the re-read one as of now: both only
    # move the row forward, so applying both (in either order) is safe.
    facts = intent_facts(obj)
    row = await _apply_facts(db, facts, now)
    fresh = await _fresh_intent(gateway, facts.id)
    if fresh is not None:
        facts = fresh
        row = await _apply_facts(db, facts, now) or row
    if row is None:
        return
    if row.kind == "extra" and facts.status == "requires_payment_method":
        await raise_alert(
            db,
            kind="payment_extra_failed",
            reason=facts.failure_code or "payment_failed",
            dedupe_key=_key("extra_failed", row.payment_intent_id),
            now=now,
            payment_intent_id=row.payment_intent_id,
            session_id=row.session_id,
        )


async def _on_charge_refunded(
    db: Executor, gateway: Gateway | None, obj: Mapping[str, Any], now: datetime
) -> None:
    charge = charge_facts(obj)
    ours = await q.payment_by_charge(db, charge_id=charge.id)
    if ours is None and charge.payment_intent:
        ours = await q.payment(db, payment_intent_id=charge.payment_intent)
    if ours is None:
        return
    if gateway is not None:
        try:
            charge = charge_facts(await gateway.call(gateway.v1.charges.retrieve_async(charge.id)))
        except (StripeUnavailable, stripe.StripeError) as exc:
            log.info("could not re-read %s (%r); applying the event's copy", charge.id, exc)
    if charge.captured and charge.amount_captured is not None:
        # A refunded charge was captured: that is a fact about the PaymentIntent too (and
        # the refund may arrive before `payment_intent.succeeded`).
        await q.apply_intent(
            db,
            payment_intent_id=ours.payment_intent_id,
            status="succeeded",
            captured_minor=charge.amount_captured,
            failure_code=None,
            failure_message=None,
            latest_charge_id=charge.id,
            now=now,
        )
        refunded = charge.amount_refunded
    else:  # localstripe: no amount_captured, and a partial capture's rest booked as a refund
        ours = await q.payment(db, payment_intent_id=ours.payment_intent_id) or ours
        refunded = charge.amount_refunded - (charge.amount - ours.captured_minor)
    await q.set_refunded(
        db, payment_intent_id=ours.payment_intent_id, refunded_minor=refunded, now=now
    )


async def _on_dispute(db: Executor, obj: Mapping[str, Any], now: datetime) -> None:
    dispute_id = str(obj.get("id"))
    intent_id = obj.get("payment_intent") if isinstance(obj.get("payment_intent"), str) else None
    charge_id = obj.get("charge") if isinstance(obj.get("charge"), str) else None
    ours = None
    if charge_id:
        ours = await q.payment_by_charge(db, charge_id=charge_id)
    if ours is None and intent_id:
        ours = await q.payment(db, payment_intent_id=intent_id)
    await raise_alert(
        db,
        kind="payment_dispute",
        reason=str(obj.get("reason") or "dispute"),
        dedupe_key=_key("dispute", dispute_id),
        now=now,
        payment_intent_id=ours.payment_intent_id if ours else intent_id,
        session_id=ours.session_id if ours else None,
        detail={
            "dispute_id": dispute_id,
            "charge_id": charge_id,
            "amount_minor": obj.get("amount"),
            "currency": obj.get("currency"),
            "status": obj.get("status"),
        },
    )


async def _on_setup_intent(db: Executor, gateway: Gateway | None, obj: Mapping[str, Any]) -> None:
    """A card saved through the app's SDK: remember it when Stripe attached it to the
    driver's customer (it becomes the default only when the driver has none)."""
    customer_id = obj.get("customer")
    method_id = obj.get("payment_method")
    if not isinstance(customer_id, str) or not isinstance(method_id, str) or gateway is None:
        return
    driver = await q.driver_for_customer(db, customer_id=customer_id)
    if driver is None:
        return
    try:
        card = card_facts(await gateway.call(gateway.v1.payment_methods.retrieve_async(method_id)))
    except (StripeUnavailable, stripe.StripeError) as exc:
        log.info("could not read %s (%r); the app will attach it", method_id, exc)
        return
    if card.customer != customer_id or card.type != "card":
        return
    row = await _save_card(db, card, driver_id=driver, customer_id=customer_id)
    customer = await q.customer_for_driver(db, driver_id=driver)
    if row is not None and customer is not None and not customer.default_payment_method_id:
        await q.set_default_payment_method(db, driver_id=driver, payment_method_id=card.id)
