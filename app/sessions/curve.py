"""How long a charge still takes: an estimate from the power curve (pure, no I/O).

The curve is the usual shape of a lithium-ion charge (the one the simulator's cars follow,
`app/sim/vehicle.py`): flat at the plateau up to ``TAPER_START`` (80 %), then falling
linearly to ``TAPER_END_RATIO`` (10 %) of the plateau at 100 %. From what a session shows
now — the state of charge, the power drawn — the plateau is inferred (the power itself
below 80 %, the power divided by the curve's share above it) and capped by what the
connector and the car can do; the time to a target SoC is the closed-form integral of
that curve. It is stated as an estimate (API: "about"), and ``None`` when it cannot be
known: no SoC, no battery size (neither on the profile nor inferable), or no power.
"""

from __future__ import annotations

import math

import msgspec

TAPER_START = 80.0
TAPER_END_RATIO = 0.10
_SLOPE = (1.0 - TAPER_END_RATIO) / (100.0 - TAPER_START)
# Inferring the battery from energy per SoC point needs enough of both to mean something.
MIN_SOC_SPAN = 5.0
MIN_ENERGY_WH = 500.0


class Estimate(msgspec.Struct, frozen=True, kw_only=True):
    """Minutes until 80 % and until full (``None`` = cannot tell; 0 = there already)."""

    minutes_to_80: int | None
    minutes_to_full: int | None


def share_at(soc: float) -> float:
    """The curve's power at ``soc`` as a share of the plateau (1.0 up to 80 %)."""
    if soc >= 100.0:
        return TAPER_END_RATIO
    if soc <= TAPER_START:
        return 1.0
    return 1.0 - _SLOPE * (soc - TAPER_START)


def seconds_to(soc_from: float, soc_to: float, *, battery_wh: float, plateau_w: float) -> float:
    """Seconds the curve needs from one SoC to a higher one (``inf`` without power)."""
    soc_to = min(soc_to, 100.0)
    if soc_to <= soc_from:
        return 0.0
    if plateau_w <= 0.0 or battery_wh <= 0.0:
        return math.inf
    rate = plateau_w * 100.0 / (3600.0 * battery_wh)  # SoC points per second on the plateau
    seconds = 0.0
    if soc_from < TAPER_START:
        flat_end = min(soc_to, TAPER_START)
        seconds += (flat_end - soc_from) / rate
        soc_from = flat_end
    if soc_to > soc_from:
        y_from = share_at(soc_from)
        y_to = 1.0 - _SLOPE * (soc_to - TAPER_START)
        if y_to <= 0.0:
            return math.inf
        seconds += math.log(y_from / y_to) / (_SLOPE * rate)
    return seconds


def infer_battery_wh(
    *,
    soc_first: float | None,
    energy_at_first_wh: float | None,
    soc_now: float,
    energy_now_wh: float,
) -> float | None:
    """The battery size implied by energy delivered per SoC point, when both moved enough."""
    if soc_first is None or energy_at_first_wh is None:
        return None
    soc_span = soc_now - soc_first
    energy = energy_now_wh - energy_at_first_wh
    if soc_span < MIN_SOC_SPAN or energy < MIN_ENERGY_WH:
        return None
    return energy * 100.0 / soc_span


def _minutes(seconds: float) -> int | None:
    if math.isinf(seconds) or math.isnan(seconds):
        return None
    return max(0, math.ceil(seconds / 60.0))


def estimate(
    *,
    soc: float | None,
    power_w: float | None,
    battery_wh: float | None,
    max_power_w: float | None = None,
) -> Estimate:
    """Minutes to 80 % and to full from the SoC and power shown now.

    ``max_power_w`` (the lower of the connector's and the car's limit) caps the inferred
    plateau: a car drawing little because it is cold does not make the estimate shorter
    than the hardware allows, nor does a noisy power reading above it.
    """
    if soc is None or not math.isfinite(soc):
        return Estimate(minutes_to_80=None, minutes_to_full=None)
    soc = min(max(soc, 0.0), 100.0)
    done_80 = 0 if soc >= TAPER_START else None
    done_full = 0 if soc >= 100.0 else None
    if done_80 is not None and done_full is not None:
        return Estimate(minutes_to_80=0, minutes_to_full=0)
    if battery_wh is None or battery_wh <= 0.0 or power_w is None or power_w <= 0.0:
        return Estimate(minutes_to_80=done_80, minutes_to_full=done_full)
    plateau = power_w / share_at(soc)
    if max_power_w is not None and max_power_w > 0.0:
        plateau = min(plateau, max_power_w)
    to_80 = (
        done_80
        if done_80 is not None
        else _minutes(seconds_to(soc, TAPER_START, battery_wh=battery_wh, plateau_w=plateau))
    )
    to_full = _minutes(seconds_to(soc, 100.0, battery_wh=battery_wh, plateau_w=plateau))
    return Estimate(minutes_to_80=to_80, minutes_to_full=to_full)
