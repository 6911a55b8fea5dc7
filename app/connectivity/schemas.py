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


AlertKind = Literal["quarantine", "offline", "degraded", "flapping"]


class Alert(msgspec.Struct, kw_only=True):
    """An operator alert about one charger's connectivity."""

    alert_id: int
    charger_id: str
    charge_point_id: str
    kind: AlertKind
    reason: str
    """The connectivity reason (`imei_changed`, `socket_down`, `data_usage_exceeded`, …)."""
    detail: dict[str, Any]
    raised_at: datetime
    acknowledged_at: datetime | None = None
    delivered_at: datetime | None = None
    """When the SMS issue's delivery sent it (not yet implemented: always null)."""


class AlertPage(msgspec.Struct, kw_only=True):
    items: list[Alert]
    next_cursor: str | None
