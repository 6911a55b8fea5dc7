"""Typed functions over `sql/queries/payments.sql` (one per block)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from app.core.sql import Executor, execute, fetch_all, fetch_one, fetch_returned, fetch_val
from app.payments.schemas import (
    CaptureRow,
    CustomerRow,
    ExtraRow,
    PaymentMethodRow,
    PaymentRow,
    RefundRow,
)


class StaleHold(msgspec.Struct, kw_only=True):
    payment_intent_id: str
    session_id: uuid.UUID | None
    created_at: datetime
    session_status: str | None
    session_ended_at: datetime | None
    session_exists: bool


# --- Customers and cards -------------------------------------------------------------


async def customer_for_driver(db: Executor, *, driver_id: uuid.UUID) -> CustomerRow | None:
    return await fetch_one(db, "payments.customer_for_driver", CustomerRow, driver_id)


async def insert_customer(db: Executor, *, driver_id: uuid.UUID, customer_id: str) -> CustomerRow:
    return await fetch_returned(db, "payments.insert_customer", CustomerRow, driver_id, customer_id)


async def driver_for_customer(db: Executor, *, customer_id: str) -> uuid.UUID | None:
    value = await fetch_val(db, "payments.driver_for_customer", customer_id)
    return value if isinstance(value, uuid.UUID) else None


async def set_default_payment_method(
    db: Executor, *, driver_id: uuid.UUID, payment_method_id: str | None
) -> None:
    await execute(db, "payments.set_default_payment_method", driver_id, payment_method_id)


async def upsert_payment_method(
    db: Executor,
    *,
    payment_method_id: str,
    driver_id: uuid.UUID,
    customer_id: str,
    brand: str,
    last4: str,
    exp_month: int | None,
    exp_year: int | None,
) -> PaymentMethodRow | None:
    return await fetch_one(
        db,
        "payments.upsert_payment_method",
        PaymentMethodRow,
        payment_method_id,
        driver_id,
        customer_id,
        brand,
        last4,
        exp_month,
        exp_year,
    )


async def list_payment_methods(
    db: Executor,
    *,
    driver_id: uuid.UUID,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[PaymentMethodRow]:
    return await fetch_all(
        db,
        "payments.list_payment_methods",
        PaymentMethodRow,
        driver_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )


async def payment_method_of_driver(
    db: Executor, *, driver_id: uuid.UUID, payment_method_id: str
) -> PaymentMethodRow | None:
    return await fetch_one(
        db, "payments.payment_method_of_driver", PaymentMethodRow, driver_id, payment_method_id
    )


async def delete_payment_method(
    db: Executor, *, driver_id: uuid.UUID, payment_method_id: str
) -> int:
    return await execute(db, "payments.delete_payment_method", driver_id, payment_method_id)


async def newest_payment_method(db: Executor, *, driver_id: uuid.UUID) -> str | None:
    value = await fetch_val(db, "payments.newest_payment_method", driver_id)
    return str(value) if value is not None else None


# --- PaymentIntents ------------------------------------------------------------------


async def insert_payment(
    db: Executor,
    *,
    payment_intent_id: str,
    session_id: uuid.UUID | None,
    driver_id: uuid.UUID | None,
    customer_id: str,
    payment_method_id: str | None,
    kind: str,
    currency: str,
    status: str,
    amount_minor: int,
    captured_minor: int,
    idempotency_key: str,
    failure_code: str | None,
    failure_message: str | None,
    latest_charge_id: str | None,
    now: datetime,
) -> PaymentRow:
    return await fetch_returned(
        db,
        "payments.insert_payment",
        PaymentRow,
        payment_intent_id,
        session_id,
        driver_id,
        customer_id,
        payment_method_id,
        kind,
        currency,
        status,
        amount_minor,
        captured_minor,
        idempotency_key,
        failure_code,
        failure_message,
        latest_charge_id,
        now,
    )


async def payment(db: Executor, *, payment_intent_id: str) -> PaymentRow | None:
    return await fetch_one(db, "payments.payment", PaymentRow, payment_intent_id)


async def payment_by_key(db: Executor, *, idempotency_key: str) -> PaymentRow | None:
    return await fetch_one(db, "payments.payment_by_key", PaymentRow, idempotency_key)


async def payment_by_charge(db: Executor, *, charge_id: str) -> PaymentRow | None:
    return await fetch_one(db, "payments.payment_by_charge", PaymentRow, charge_id)


async def session_payments(db: Executor, *, session_id: uuid.UUID) -> list[PaymentRow]:
    return await fetch_all(db, "payments.session_payments", PaymentRow, session_id)


async def lock_session_payments(db: Executor, *, session_id: uuid.UUID) -> list[PaymentRow]:
    return await fetch_all(db, "payments.lock_session_payments", PaymentRow, session_id)


async def apply_intent(
    db: Executor,
    *,
    payment_intent_id: str,
    status: str,
    captured_minor: int,
    failure_code: str | None,
    failure_message: str | None,
    latest_charge_id: str | None,
    now: datetime,
) -> PaymentRow | None:
    return await fetch_one(
        db,
        "payments.apply_intent",
        PaymentRow,
        payment_intent_id,
        status,
        captured_minor,
        failure_code,
        failure_message,
        latest_charge_id,
        now,
    )


async def set_refunded(
    db: Executor, *, payment_intent_id: str, refunded_minor: int, now: datetime
) -> None:
    await execute(db, "payments.set_refunded", payment_intent_id, refunded_minor, now)


async def add_refunded(
    db: Executor, *, payment_intent_id: str, amount_minor: int, now: datetime
) -> None:
    await execute(db, "payments.add_refunded", payment_intent_id, amount_minor, now)


# --- Capture decisions and extra charges ---------------------------------------------


async def insert_capture(
    db: Executor,
    *,
    payment_intent_id: str,
    amount_minor: int,
    idempotency_key: str,
    now: datetime,
) -> CaptureRow:
    return await fetch_returned(
        db,
        "payments.insert_capture",
        CaptureRow,
        payment_intent_id,
        amount_minor,
        idempotency_key,
        now,
    )


async def capture_row(db: Executor, *, payment_intent_id: str) -> CaptureRow | None:
    return await fetch_one(db, "payments.capture_row", CaptureRow, payment_intent_id)


async def capture_attempt_failed(
    db: Executor, *, payment_intent_id: str, error: str, give_up: bool, now: datetime
) -> int | None:
    value = await fetch_val(
        db, "payments.capture_attempt_failed", payment_intent_id, error[:500], give_up, now
    )
    return int(value) if value is not None else None


async def capture_succeeded(db: Executor, *, payment_intent_id: str, now: datetime) -> None:
    await execute(db, "payments.capture_succeeded", payment_intent_id, now)


async def insert_extra(
    db: Executor,
    *,
    session_id: uuid.UUID,
    driver_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    now: datetime,
) -> ExtraRow:
    return await fetch_returned(
        db,
        "payments.insert_extra",
        ExtraRow,
        session_id,
        driver_id,
        amount_minor,
        currency,
        idempotency_key,
        now,
    )


async def extra_row(db: Executor, *, session_id: uuid.UUID) -> ExtraRow | None:
    return await fetch_one(db, "payments.extra_row", ExtraRow, session_id)


async def extra_attempt_failed(
    db: Executor,
    *,
    session_id: uuid.UUID,
    error: str,
    status: str,
    payment_intent_id: str | None,
    now: datetime,
) -> int | None:
    value = await fetch_val(
        db,
        "payments.extra_attempt_failed",
        session_id,
        error[:500],
        status,
        payment_intent_id,
        now,
    )
    return int(value) if value is not None else None


async def extra_succeeded(
    db: Executor, *, session_id: uuid.UUID, payment_intent_id: str, now: datetime
) -> None:
    await execute(db, "payments.extra_succeeded", session_id, payment_intent_id, now)


# --- Refunds, events, alerts ---------------------------------------------------------


async def insert_refund(
    db: Executor,
    *,
    refund_id: str,
    payment_intent_id: str,
    session_id: uuid.UUID | None,
    amount_minor: int,
    reason: str,
    request_key: str,
    staff_id: str | None,
    status: str,
    now: datetime,
) -> bool:
    value = await fetch_val(
        db,
        "payments.insert_refund",
        refund_id,
        payment_intent_id,
        session_id,
        amount_minor,
        reason,
        request_key,
        staff_id,
        status,
        now,
    )
    return value is not None


async def refunds_for_request(db: Executor, *, request_key: str) -> list[RefundRow]:
    return await fetch_all(db, "payments.refunds_for_request", RefundRow, request_key)


async def insert_event(
    db: Executor, *, event_id: str, type: str, object_id: str | None, created: datetime
) -> bool:
    """True when the event id is new (apply it), False when it was applied before."""
    value = await fetch_val(db, "payments.insert_event", event_id, type, object_id, created)
    return value is not None


async def insert_alert(
    db: Executor,
    *,
    kind: str,
    reason: str,
    detail: dict[str, Any],
    dedupe_key: str,
    now: datetime,
    payment_intent_id: str | None,
    session_id: uuid.UUID | None,
) -> int | None:
    value = await fetch_val(
        db,
        "payments.insert_alert",
        kind,
        reason,
        detail,
        dedupe_key,
        now,
        payment_intent_id,
        session_id,
    )
    return int(value) if value is not None else None


# --- Reconciliation ------------------------------------------------------------------


async def stale_holds(db: Executor, *, before: datetime, limit: int) -> list[StaleHold]:
    return await fetch_all(db, "payments.stale_holds", StaleHold, before, limit)


async def captures_to_check(db: Executor, *, before: datetime, limit: int) -> list[CaptureRow]:
    return await fetch_all(db, "payments.captures_to_check", CaptureRow, before, limit)


async def intents_to_check(db: Executor, *, before: datetime, limit: int) -> list[PaymentRow]:
    return await fetch_all(db, "payments.intents_to_check", PaymentRow, before, limit)
