"""A simulated charger's state: connectors, their reservation and transaction, errors."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from app.core.clock import Clock
from app.sim.vehicle import Vehicle

__all__ = [
    "AVAILABLE",
    "CHARGING",
    "FAULTED",
    "FINISHING",
    "PREPARING",
    "RESERVED",
    "SUSPENDED_EV",
    "SUSPENDED_EVSE",
    "UNAVAILABLE",
    "AcceleratedClock",
    "Connector",
    "Reservation",
    "SimError",
    "SimOfflineError",
    "SimStateError",
    "Transaction",
    "Wakeup",
    "append_bounded",
]

# Connector states in OCPP 1.6 words (ChargePointStatus).
AVAILABLE: Final = "Available"
PREPARING: Final = "Preparing"
CHARGING: Final = "Charging"
SUSPENDED_EV: Final = "SuspendedEV"
SUSPENDED_EVSE: Final = "SuspendedEVSE"
FINISHING: Final = "Finishing"
RESERVED: Final = "Reserved"
UNAVAILABLE: Final = "Unavailable"
FAULTED: Final = "Faulted"


class AcceleratedClock(Clock):
    """Wall clock that runs ``speedup`` times faster from the moment it is created.

    Hand it to a SimCharger when the central system should see a sped-up charge with
    consistent timestamps (energy / time gives the real power). Timestamps then run ahead
    of the central system's clock.
    """

    def __init__(self, speedup: float, *, start: datetime | None = None) -> None:
        self.speedup = speedup
        self._start = start or datetime.now(UTC)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self.speedup)


@dataclass(slots=True, eq=False)
class Reservation:
    reservation_id: int
    id_tag: str
    expiry: datetime | None
    parent_id_tag: str | None = None
    expiry_task: asyncio.Task[None] | None = None


@dataclass(slots=True, eq=False)
class Transaction:
    transaction_id: int
    connector_id: int
    id_tag: str
    id_tag_status: str
    meter_start_wh: int
    started_at: datetime
    reservation_id: int | None = None
    vehicle: Vehicle | None = None
    meter_stop_wh: int | None = None
    stopped_at: datetime | None = None
    stop_reason: str | None = None


@dataclass(slots=True, eq=False)
class Connector:
    connector_id: int
    max_power_w: float
    status: str = AVAILABLE
    error_code: str = "NoError"
    meter_wh: float = 0.0  # cumulative Energy.Active.Import.Register
    power_w: float = 0.0
    soc: float | None = None
    reservation: Reservation | None = None
    transaction: Transaction | None = None
    claimed: bool = False  # a start is under way (RemoteStart accepted, StartTransaction out)
    inoperative: bool = False
    inoperative_after_tx: bool = False  # ChangeAvailability "Scheduled"
    charging_task: asyncio.Task[None] | None = None

    def clear_reservation(self) -> None:
        reservation, self.reservation = self.reservation, None
        if reservation is not None and reservation.expiry_task is not None:
            reservation.expiry_task.cancel()
            reservation.expiry_task = None


class SimError(Exception):
    """Base of the simulator's own errors."""


class SimOfflineError(SimError):
    """The charger has no booted connection right now (or lost it during the call)."""


class SimStateError(SimError):
    """The request does not fit the connector's state (busy, unknown, no transaction)."""


_T = TypeVar("_T")


def append_bounded(items: list[_T], item: _T, limit: int = 256) -> None:
    items.append(item)
    if len(items) > limit:
        del items[: len(items) - limit]


class Wakeup:
    """asyncio.Event for a single waiter, without the Event's deque (10,000 chargers × 3)."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self, flag: bool = False) -> None:
        self._flag = flag
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> None:
        if self._flag:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
