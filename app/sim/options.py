"""Knobs of one simulated charger and of the car plugged into it."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ConnectorSpec", "SessionPlan", "SimOptions", "StopReason"]

StopReason = Literal[
    "EmergencyStop",
    "EVDisconnected",
    "HardReset",
    "Local",
    "Other",
    "PowerLoss",
    "Reboot",
    "Remote",
    "SoftReset",
    "UnlockCommand",
    "DeAuthorized",
]


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """What the car plugged in for a transaction does."""

    battery_kwh: float = 60.0
    start_soc: float = 20.0
    target_soc: float = 100.0
    car_max_power_w: float = 150_000.0
    # The car pauses (SuspendedEV, e.g. waiting for off-peak) once it reaches this SoC.
    suspend_at_soc: float | None = None
    suspend_for_s: float = 0.0  # simulated seconds
    # At the target: "stop" = Finishing → StopTransaction → Available; "suspend" = the car
    # stays plugged in, SuspendedEV, until someone stops the transaction.
    when_done: Literal["stop", "suspend"] = "stop"
    stop_reason: StopReason = "EVDisconnected"
    report_soc: bool = True  # SoC is optional in the field (AC chargers rarely know it)


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    connector_id: int
    max_power_w: float | None = None  # None → SimOptions.max_power_w


@dataclass(slots=True)
class SimOptions:
    """Knobs of one simulated charger; the defaults behave like a real AC charger."""

    vendor: str = "Voltway"
    model: str = "SimCharger"
    serial_number: str | None = None
    firmware_version: str = "sim-1.0"
    max_power_w: float = 22_000.0  # per connector unless its ConnectorSpec says otherwise
    meter_start_wh: int = 0  # energy register of every connector at start-up
    # Simulated time runs `speedup` times faster than the event loop's (charging only).
    speedup: float = 1.0
    meter_interval_s: float = 60.0  # simulated seconds between MeterValues while charging
    # Demo only: the car charges this many times faster than physics while the clock (and
    # every timestamp) stays real, so started → 80 % → complete fit in a few minutes.
    charge_factor: float = 1.0
    response_timeout_s: float = 30.0  # how long our CALLs wait for the central system
    open_timeout_s: float = 30.0
    ping_interval_s: float | None = None  # WebSocket pings (OCPP heartbeats run anyway)
    max_frame_bytes: int = 1 << 20
    ssl_context: ssl.SSLContext | None = None  # for wss:// with a private CA (profile 2)
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    boot_on_reconnect: bool = True
    validate_messages: bool = True  # schema-check our own outgoing CALLs and their results
    tx_message_attempts: int = 3  # TransactionMessageAttempts
    tx_retry_interval_s: float = 5.0  # TransactionMessageRetryInterval
    max_outbox: int = 1000  # queued transaction messages kept while offline
    remote_start_policy: Literal["accept", "reject"] = "accept"
    # The car that shows up on RemoteStartTransaction; None = no charging simulated.
    remote_start_plan: SessionPlan | Callable[[], SessionPlan] | None = field(
        default_factory=SessionPlan
    )
