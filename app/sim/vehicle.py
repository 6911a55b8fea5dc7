"""A virtual car for the charge-point simulator: battery, state of charge, power curve.

Pure: no I/O and no clock; the caller says how much time passed. The power curve is the
usual shape of a lithium-ion charge: flat at ``min(charger, car)`` up to ``taper_start_soc``
(80 %), then falling linearly to ``taper_end_ratio`` (10 %) of that plateau at 100 %.
Integration is exact (closed form per segment), so one long step equals many short ones.
"""

from __future__ import annotations

import math

__all__ = ["Vehicle", "power_at_soc", "seconds_to_soc"]


def power_at_soc(
    soc: float,
    plateau_w: float,
    *,
    taper_start_soc: float = 80.0,
    taper_end_ratio: float = 0.10,
) -> float:
    """Charging power (W) the car draws at a given state of charge (%)."""
    if soc >= 100.0:
        return 0.0
    if soc <= taper_start_soc:
        return plateau_w
    slope = (1.0 - taper_end_ratio) / (100.0 - taper_start_soc)
    return plateau_w * (1.0 - slope * (soc - taper_start_soc))


def seconds_to_soc(
    soc_from: float,
    soc_to: float,
    *,
    battery_wh: float,
    plateau_w: float,
    taper_start_soc: float = 80.0,
    taper_end_ratio: float = 0.10,
) -> float:
    """Time (s) the curve needs to go from one state of charge to a higher one.

    This is the "10 minutes remaining" estimate when the battery size is known.
    """
    if soc_to <= soc_from:
        return 0.0
    if plateau_w <= 0.0:
        return math.inf
    soc_to = min(soc_to, 100.0)
    rate = plateau_w * 100.0 / (3600.0 * battery_wh)  # % per second on the plateau
    seconds = 0.0
    if soc_from < taper_start_soc:
        flat_end = min(soc_to, taper_start_soc)
        seconds += (flat_end - soc_from) / rate
        soc_from = flat_end
    if soc_to > soc_from:
        slope = (1.0 - taper_end_ratio) / (100.0 - taper_start_soc)
        y_from = 1.0 - slope * (soc_from - taper_start_soc)
        y_to = 1.0 - slope * (soc_to - taper_start_soc)
        if slope == 0.0:
            seconds += (soc_to - soc_from) / rate
        else:
            seconds += math.log(y_from / y_to) / (slope * rate)
    return seconds


class Vehicle:
    """A car plugged into a charger: call :meth:`step` as (simulated) time passes."""

    def __init__(
        self,
        battery_kwh: float,
        start_soc: float,
        max_charger_power_w: float,
        *,
        max_car_power_w: float | None = None,
        target_soc: float = 100.0,
        taper_start_soc: float = 80.0,
        taper_end_ratio: float = 0.10,
    ) -> None:
        if battery_kwh <= 0.0:
            raise ValueError("battery_kwh must be positive")
        if not 0.0 <= start_soc <= 100.0:
            raise ValueError("start_soc must be within 0..100")
        if not 0.0 < target_soc <= 100.0:
            raise ValueError("target_soc must be within (0, 100]")
        if not 0.0 < taper_start_soc < 100.0:
            raise ValueError("taper_start_soc must be within (0, 100)")
        if not 0.0 < taper_end_ratio <= 1.0:
            raise ValueError("taper_end_ratio must be within (0, 1]")
        if max_charger_power_w < 0.0 or (max_car_power_w is not None and max_car_power_w < 0.0):
            raise ValueError("power limits must not be negative")
        self.battery_wh = battery_kwh * 1000.0
        self.soc = float(start_soc)
        self.target_soc = float(target_soc)
        self.max_charger_power_w = float(max_charger_power_w)
        self.max_car_power_w = float(
            max_charger_power_w if max_car_power_w is None else max_car_power_w
        )
        self.taper_start_soc = float(taper_start_soc)
        self.taper_end_ratio = float(taper_end_ratio)
        self.energy_wh = 0.0  # delivered since plug-in

    @property
    def plateau_w(self) -> float:
        """The flat part of the curve: the lower of the charger's and the car's limit."""
        return min(self.max_charger_power_w, self.max_car_power_w)

    @property
    def done(self) -> bool:
        """The target state of charge is reached: the car draws no more power."""
        return self.soc >= self.target_soc or self.plateau_w <= 0.0

    @property
    def power_w(self) -> float:
        """Instantaneous power (W) drawn now."""
        if self.done:
            return 0.0
        return power_at_soc(
            self.soc,
            self.plateau_w,
            taper_start_soc=self.taper_start_soc,
            taper_end_ratio=self.taper_end_ratio,
        )

    def seconds_to(self, soc: float) -> float:
        """Time (s) from now until the given state of charge (capped at the target)."""
        return seconds_to_soc(
            self.soc,
            min(soc, self.target_soc),
            battery_wh=self.battery_wh,
            plateau_w=self.plateau_w,
            taper_start_soc=self.taper_start_soc,
            taper_end_ratio=self.taper_end_ratio,
        )

    def step(self, dt_s: float) -> tuple[float, float, float]:
        """Charge for ``dt_s`` seconds; return (energy Wh delivered, power W now, SoC %)."""
        if dt_s < 0.0:
            raise ValueError("dt_s must not be negative")
        if dt_s == 0.0 or self.done:
            return 0.0, self.power_w, self.soc
        start = self.soc
        soc = start
        remaining = dt_s
        rate = self.plateau_w * 100.0 / (3600.0 * self.battery_wh)  # % per second, flat part
        if soc < self.taper_start_soc:
            flat_end = min(self.taper_start_soc, self.target_soc)
            t_flat = (flat_end - soc) / rate
            if remaining < t_flat:
                soc += rate * remaining
                remaining = 0.0
            else:
                soc = flat_end
                remaining -= t_flat
        if remaining > 0.0 and soc < self.target_soc:
            slope = (1.0 - self.taper_end_ratio) / (100.0 - self.taper_start_soc)
            if slope == 0.0:  # no taper at all
                soc = min(self.target_soc, soc + rate * remaining)
            else:
                y0 = 1.0 - slope * (soc - self.taper_start_soc)  # power as a share of plateau
                y_target = 1.0 - slope * (self.target_soc - self.taper_start_soc)
                # dSoC/dt = rate * y and y falls linearly with SoC: y decays exponentially.
                t_target = math.log(y0 / y_target) / (slope * rate)
                if remaining >= t_target:
                    soc = self.target_soc
                else:
                    y = y0 * math.exp(-slope * rate * remaining)
                    soc = self.taper_start_soc + (1.0 - y) / slope
        soc = min(max(soc, start), self.target_soc)
        energy = (soc - start) / 100.0 * self.battery_wh
        self.soc = soc
        self.energy_wh += energy
        return energy, self.power_w, soc
