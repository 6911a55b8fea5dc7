"""Payloads of the payment-method routes, the refund route, and the rows of the payments
tables as the services see them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

PaymentMethodId = Annotated[
    str,
    msgspec.Meta(
        min_length=4,
        max_length=255,
        pattern=r"^[A-Za-z0-9_]+$",
        description="A Stripe PaymentMethod id (`pm_…`), e.g. from a confirmed SetupIntent",
        examples=["pm_1PqRsT2uVwXyZ"],
    ),
]


# --- Driver API --------------------------------------------------------------------


class SetupIntentOut(msgspec.Struct, kw_only=True):
    setup_intent_id: str
    client_secret: str
    """For the app's Stripe SDK (`confirmCardSetup`); never logged by us."""


class AttachPaymentMethod(msgspec.Struct, forbid_unknown_fields=True):
    payment_method_id: PaymentMethodId


class PaymentMethodOut(msgspec.Struct, kw_only=True):
    payment_method_id: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    default: bool


class PaymentMethodPage(msgspec.Struct, kw_only=True):
    items: list[PaymentMethodOut]
    next_cursor: str | None = None


TestCard = Literal["visa", "declined_charge"]


class DevTestCard(msgspec.Struct, forbid_unknown_fields=True):
    card: TestCard = "visa"
    """`visa` charges fine; `declined_charge` attaches, then every charge is declined."""


# --- Admin API ---------------------------------------------------------------------


class RefundRequest(msgspec.Struct, forbid_unknown_fields=True):
    amount_minor: Annotated[int, msgspec.Meta(gt=0, le=10**9)]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class RefundOut(msgspec.Struct, kw_only=True):
    refund_id: str
    amount_minor: int
    refunded_minor: int = 0
    """Everything refunded on this session so far, this refund included."""
    captured_minor: int = 0
    currency: str = ""


# --- Rows --------------------------------------------------------------------------


class CustomerRow(msgspec.Struct, kw_only=True):
    driver_id: uuid.UUID
    customer_id: str
    default_payment_method_id: str | None


class PaymentMethodRow(msgspec.Struct, kw_only=True):
    payment_method_id: str
    driver_id: uuid.UUID
    customer_id: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None
    created_at: datetime


class PaymentRow(msgspec.Struct, kw_only=True):
    payment_intent_id: str
    session_id: uuid.UUID | None
    driver_id: uuid.UUID | None
    customer_id: str
    payment_method_id: str | None
    kind: str
    currency: str
    status: str
    amount_minor: int
    captured_minor: int
    refunded_minor: int
    idempotency_key: str
    failure_code: str | None
    failure_message: str | None
    latest_charge_id: str | None
    created_at: datetime
    updated_at: datetime


class CaptureRow(msgspec.Struct, kw_only=True):
    payment_intent_id: str
    amount_minor: int
    idempotency_key: str
    status: str
    attempts: int
    last_error: str | None
    requested_at: datetime
    done_at: datetime | None


class ExtraRow(msgspec.Struct, kw_only=True):
    session_id: uuid.UUID
    driver_id: uuid.UUID
    amount_minor: int
    currency: str
    idempotency_key: str
    payment_intent_id: str | None
    status: str
    attempts: int
    last_error: str | None
    requested_at: datetime
    done_at: datetime | None


class RefundRow(msgspec.Struct, kw_only=True):
    refund_id: str
    payment_intent_id: str
    session_id: uuid.UUID | None
    amount_minor: int
    reason: str
    request_key: str
    staff_id: str | None
    status: str
    created_at: datetime


# --- What other domains get back ---------------------------------------------------


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    """A pre-authorisation hold: `status == "requires_capture"` means it is in place."""

    payment_intent_id: str
    amount_minor: int
    status: str
    currency: str = ""


class CaptureOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """The result of a capture (or of the cancel a zero amount turns into)."""

    payment_intent_id: str
    status: str
    """Stripe's PaymentIntent status afterwards: `succeeded` or `canceled`."""
    captured_minor: int


class PaymentSummary(msgspec.Struct, kw_only=True):
    """A session's payment as `GET /v1/sessions/{id}` shows it (`payment`)."""

    status: str
    """`none`, `authorized`, `capture_pending`, `captured`, `partially_refunded`,
    `refunded`, `canceled`, `failed` or `flagged`."""
    preauth_minor: int = 0
    captured_minor: int = 0
    refunded_minor: int = 0
    extra_minor: int = 0
    """What was charged in a second payment above the hold (part of `captured_minor`)."""
    currency: str = ""


class WebhookAck(msgspec.Struct, kw_only=True):
    received: bool = True
    duplicate: bool = False
    """True when this event id was applied before (nothing changed now)."""
