"""Payloads of the connectivity endpoints."""

from __future__ import annotations

from typing import Literal

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
