"""The session state machine (pure): which OCPP event moves a session where.

    STARTING ──StartTransaction──► CHARGING ⇄ SUSPENDED ──► FINISHING ──StopTransaction──► COMPLETED
        │                              └──────────────┴─────────┴──StopTransaction──────────┘
        └─ hold declined / RemoteStart Rejected or unanswered / never started ──► FAILED

- STARTING: the hold is being placed or is in place and the charger has been asked
  (RemoteStartTransaction) or has asked us (Authorize); no transaction yet.
- CHARGING / SUSPENDED / FINISHING follow the connector's StatusNotification once the
  transaction runs (`Charging`; `SuspendedEV`/`SuspendedEVSE`; `Finishing`). The charger is
  the authority on its connector, so these three move freely among each other.
- COMPLETED on StopTransaction (then billed); FAILED never moves again.

"Idle" (PARKING_TIME) starts when the *car* stops drawing power while plugged in
(`SuspendedEV`, `Finishing`) — not `SuspendedEVSE`, where the charger holds the power back
(load management), which the driver must not pay parking for — and ends if it charges again.
"""

from __future__ import annotations

from typing import Final, Literal

Status = Literal["STARTING", "CHARGING", "SUSPENDED", "FINISHING", "COMPLETED", "FAILED"]

ACTIVE: Final[frozenset[str]] = frozenset({"STARTING", "CHARGING", "SUSPENDED", "FINISHING"})
# Statuses a StatusNotification may move a session out of (the transaction is running).
LIVE: Final[tuple[str, ...]] = ("CHARGING", "SUSPENDED", "FINISHING")
FINAL: Final[frozenset[str]] = frozenset({"COMPLETED", "FAILED"})

# OCPP ChargePointStatus → the running session's status (others leave it as it is).
BY_OCPP_STATUS: Final[dict[str, str]] = {
    "Charging": "CHARGING",
    "SuspendedEV": "SUSPENDED",
    "SuspendedEVSE": "SUSPENDED",
    "Finishing": "FINISHING",
}
# OCPP statuses in which the car no longer draws power although it is plugged in.
IDLE_OCPP_STATUSES: Final[frozenset[str]] = frozenset({"SuspendedEV", "Finishing"})

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "STARTING": frozenset({"CHARGING", "FAILED"}),
    "CHARGING": frozenset({"SUSPENDED", "FINISHING", "COMPLETED"}),
    "SUSPENDED": frozenset({"CHARGING", "FINISHING", "COMPLETED"}),
    "FINISHING": frozenset({"CHARGING", "SUSPENDED", "COMPLETED"}),
    "COMPLETED": frozenset(),
    "FAILED": frozenset(),
}


def can_move(current: str, new: str) -> bool:
    """Whether a session may go from ``current`` to ``new`` (staying put is no move)."""
    return new in TRANSITIONS.get(current, frozenset())


def on_status_notification(current: str, ocpp_status: str) -> str | None:
    """The status a StatusNotification gives a session in ``current``, or None (no change)."""
    new = BY_OCPP_STATUS.get(ocpp_status)
    if new is None or new == current or current not in LIVE:
        return None
    return new if can_move(current, new) else None


def is_idle(ocpp_status: str) -> bool:
    """The car stopped drawing power while plugged in (parking time runs)."""
    return ocpp_status in IDLE_OCPP_STATUSES


def on_stop(current: str) -> str:
    """StopTransaction: a running session completes; anything else stays as it is."""
    return "COMPLETED" if current in LIVE else current
