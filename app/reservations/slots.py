"""Reservation-slot maths: pure functions, no I/O, no clock (API.md "Reservations").

- A **hold** starts now and lasts `duration_min` (default 15, at most 30 minutes).
- A **slot** starts at `start_at` (after now, at most 24 h ahead) and lasts `duration_min`
  when given, else the time the driver's vehicle needs to go from 20 % to 80 % at
  min(connector power, vehicle power); with no vehicle on file, 60 minutes.

Times are timezone-aware datetimes in whole seconds (what the charger's expiryDate carries
and the driver reads); durations are whole minutes (rounded up, so a slot is never shorter
than the charge it is sized for).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Final

import msgspec

HOLD_DEFAULT_MIN: Final = 15
HOLD_MAX_MIN: Final = 30
SLOT_NO_VEHICLE_MIN: Final = 60
SLOT_MIN_MIN: Final = 10  # a computed slot is never shorter (plugging in takes time too)
SLOT_MAX_MIN: Final = 12 * 60
HORIZON: Final = timedelta(hours=24)
FROM_SOC: Final = 20
TO_SOC: Final = 80
# AC connectors (the car's on-board charger limits them); TYPE2 always, NACS and GB/T up to
# 22 kW (both exist as AC and DC), everything else is DC.
AC_TYPES: Final = frozenset({"TYPE2"})
AC_OR_DC_TYPES: Final = frozenset({"NACS", "GBT"})
AC_MAX_W: Final = 22_000


class SlotError(ValueError):
    """The requested window is not allowed; `field` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class VehicleSpec(msgspec.Struct, frozen=True):
    """What the slot maths needs of the driver's vehicle (Wh and W, integers)."""

    battery_wh: int
    max_ac_w: int
    max_dc_w: int


class Window(msgspec.Struct, frozen=True):
    """A reservation's time range [start_at, expires_at) and whether it starts now."""

    start_at: datetime
    expires_at: datetime
    hold: bool

    @property
    def minutes(self) -> int:
        return round((self.expires_at - self.start_at).total_seconds() / 60)


def is_ac(connector_type: str, connector_power_w: int) -> bool:
    """Whether the vehicle's AC (on-board charger) limit applies at this connector."""
    if connector_type in AC_TYPES:
        return True
    return connector_type in AC_OR_DC_TYPES and connector_power_w <= AC_MAX_W


def charging_power_w(vehicle: VehicleSpec, connector_type: str, connector_power_w: int) -> int:
    """min(connector power, the vehicle's limit for this kind of connector); a limit of 0
    (the vehicle reports none, e.g. no DC figure) leaves the connector's power."""
    limit = vehicle.max_ac_w if is_ac(connector_type, connector_power_w) else vehicle.max_dc_w
    return min(connector_power_w, limit) if limit > 0 else connector_power_w


def slot_minutes(vehicle: VehicleSpec | None, connector_type: str, connector_power_w: int) -> int:
    """The default slot length: 20 → 80 % of the battery at the charging power, rounded up
    to whole minutes and kept within [SLOT_MIN_MIN, SLOT_MAX_MIN]; 60 without a vehicle."""
    if vehicle is None:
        return SLOT_NO_VEHICLE_MIN
    power_w = charging_power_w(vehicle, connector_type, connector_power_w)
    if power_w <= 0:
        return SLOT_NO_VEHICLE_MIN
    energy_wh = vehicle.battery_wh * (TO_SOC - FROM_SOC) / 100
    minutes = math.ceil(energy_wh * 60 / power_w - 1e-9)
    return max(SLOT_MIN_MIN, min(SLOT_MAX_MIN, minutes))


def window(
    *,
    now: datetime,
    start_at: datetime | None,
    duration_min: int | None,
    vehicle: VehicleSpec | None,
    connector_type: str,
    connector_power_w: int,
) -> Window:
    """The window a request asks for, or SlotError: a hold without `start_at`, a slot with
    it (strictly after `now`, at most 24 h ahead)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if duration_min is not None and duration_min < 1:
        raise SlotError("duration_min", "must be at least 1 minute")
    if start_at is None:
        minutes = HOLD_DEFAULT_MIN if duration_min is None else duration_min
        if minutes > HOLD_MAX_MIN:
            raise SlotError("duration_min", f"a hold from now lasts at most {HOLD_MAX_MIN} minutes")
        start = whole_second(now)
        return Window(start, start + timedelta(minutes=minutes), hold=True)
    if start_at.tzinfo is None:
        raise SlotError("start_at", "must carry a UTC offset")
    if start_at <= now:
        raise SlotError("start_at", "must be in the future (leave it out to hold now)")
    if start_at - now > HORIZON:
        raise SlotError("start_at", "must be at most 24 hours ahead")
    if duration_min is None:
        minutes = slot_minutes(vehicle, connector_type, connector_power_w)
    elif duration_min > SLOT_MAX_MIN:
        raise SlotError("duration_min", f"a slot lasts at most {SLOT_MAX_MIN} minutes")
    else:
        minutes = duration_min
    start = whole_second(start_at)
    return Window(start, start + timedelta(minutes=minutes), hold=False)


def whole_second(at: datetime) -> datetime:
    return at.replace(microsecond=0)


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """Half-open ranges [start, end) overlap (what the exclusion constraint's && means)."""
    return a_start < b_end and b_start < a_end
