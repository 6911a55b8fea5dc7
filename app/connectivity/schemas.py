"""Payloads of the connectivity endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec


class PushAck(msgspec.Struct, kw_only=True):
    """The answer to a push event: 200 whether it was applied now or already known."""

    event_id: str
    status: Literal["applied", "duplicate"]
    outcome: str
    """What applying it did: `state_changed`, `recorded`, `unknown_charger`, `unknown_type`,
    or the first outcome for a duplicate."""


class ReleaseResult(msgspec.Struct, kw_only=True):
    charger_id: str
    charge_point_id: str
    connectivity: str
    connectivity_reason: str
    bound_imei: str | None = None
    released: bool
    """The charger was quarantined and is not any more."""


AlertKind = Literal[
    "quarantine",
    "offline",
    "degraded",
    "flapping",
    "payment_capture_failed",
    "payment_dispute",
    "payment_stale_hold",
    "payment_mismatch",
    "payment_extra_failed",
]
"""The kinds `operator_alerts` holds (its CHECK constraint, migration 0009): a charger's
connectivity, or a payment problem (about a session or a PaymentIntent, no charger)."""


class Alert(msgspec.Struct, kw_only=True):
    """An operator alert: about one charger's connectivity (`charger_id` set), or about a
    payment (`session_id` / `payment_intent_id` set, no charger)."""

    alert_id: int
    charger_id: str | None
    charge_point_id: str | None
    kind: AlertKind
    reason: str
    """Why (`imei_changed`, `socket_down`, `data_usage_exceeded`, `card_declined`, …)."""
    detail: dict[str, Any]
    raised_at: datetime
    acknowledged_at: datetime | None = None
    delivered_at: datetime | None = None
    """When the operator delivery (`app/notifications/operator.py`) handed it on."""
    session_id: str | None = None
    payment_intent_id: str | None = None


class AlertPage(msgspec.Struct, kw_only=True):
    items: list[Alert]
    next_cursor: str | None
