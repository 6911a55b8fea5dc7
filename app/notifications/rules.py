"""Which SMS alerts a charging session is due, from its state and recent meter samples.

Pure: no I/O, no clock (`now` is passed in). `due_alerts(state, now)` returns the kinds
due now that were not sent yet (`state.sent`); the caller queues them, and the database
keeps each kind once per session whatever runs twice. The rules (API.md "Notifications",
INTEGRATIONS.md §1):

- `session_started`: the transaction runs (not STARTING, not FAILED, not ended yet).
- `soc_80`: the reported SoC reaches 80 %; a car that never reports SoC: energy delivered
  reaches 60 % of the driver's battery.
- `ten_minutes_left`: the estimate from the power curve (`estimate_minutes_left`, the
  sessions domain's charge curve, or a falling power line without SoC) is 10 minutes or
  less while charging; worded "about" in the text.
- `session_complete`: the transaction stopped, or the car has drawn no power for 10 minutes
  in `SuspendedEV` after reaching 95 % SoC. Never while charging and never on a pause
  alone: a car in `SuspendedEV` waiting for off-peak (below 95 %, or without SoC) is not
  complete, nor is a pause the charger imposes (`SuspendedEVSE`).
- `idle_fee_warning`: the car is full (the condition above) but still plugged in, and the
  tariff charges for parking (`parking_minor_per_hour`).

Event kinds (`hold_exhausted`, `payment_failed`, the reservation kinds) are raised by the
domains that see the event, through `app.notifications.alerts.queue_alert`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

from app.pricing import engine
from app.sessions import curve

SESSION_KINDS: Final = (
    "session_started",
    "soc_80",
    "ten_minutes_left",
    "session_complete",
    "idle_fee_warning",
)
KINDS: Final = (
    *SESSION_KINDS,
    "reservation_expiring",
    "reservation_moved",
    "reservation_cancelled",
    "hold_exhausted",
    "payment_failed",
)
SOC_ALERT: Final = 80.0
ENERGY_SHARE_ALERT: Final = 0.60  # soc_80 without SoC: this share of the battery
FULL_SOC: Final = 95.0
IDLE_FOR: Final = timedelta(minutes=10)
NO_POWER_W: Final = 100.0  # below this a car is drawing nothing (standby, metering noise)
MINUTES_LEFT_ALERT: Final = 10.0
CURVE_WINDOW: Final = timedelta(minutes=5)  # the recent power curve an estimate uses
MIN_CHARGING_FOR_ESTIMATE: Final = timedelta(minutes=2)

OPEN_STATUSES: Final = frozenset({"CHARGING", "SUSPENDED", "FINISHING"})


class Sample(msgspec.Struct, frozen=True):
    """One MeterValues instant of the session: any of the three may be missing."""

    at: datetime
    energy_wh: float | None = None  # energy delivered in this session so far
    power_w: float | None = None
    soc_percent: float | None = None


class SessionState(msgspec.Struct, frozen=True, kw_only=True):
    """What the rules look at; `samples` are the recent ones (≥ 15 min), oldest first."""

    status: str  # charging_sessions.status
    ocpp_status: str | None = None  # the connector's last OCPP status (SuspendedEV, …)
    started_at: datetime
    ended_at: datetime | None = None
    energy_wh: float = 0.0
    power_w: float | None = None
    soc_percent: float | None = None
    battery_wh: float | None = None  # the driver's vehicle, when on file
    samples: Sequence[Sample] = ()
    sent: frozenset[str] = frozenset()
    parking_minor_per_hour: int | None = None
    parking_starts_at: datetime | None = None


class Due(msgspec.Struct, frozen=True):
    kind: str
    facts: dict[str, Any]


def _latest_soc(state: SessionState) -> float | None:
    if state.soc_percent is not None:
        return state.soc_percent
    for s in reversed(state.samples):
        if s.soc_percent is not None:
            return s.soc_percent
    return None


def _max_soc(state: SessionState) -> float | None:
    socs = [s.soc_percent for s in state.samples if s.soc_percent is not None]
    if state.soc_percent is not None:
        socs.append(state.soc_percent)
    return max(socs) if socs else None


def no_power_since(samples: Sequence[Sample], now: datetime) -> datetime | None:
    """Since when the car has drawn no power, from the samples that report power: the first
    power sample after the last one above `NO_POWER_W`. None while it draws power or when
    the samples say nothing about power."""
    since: datetime | None = None
    for s in samples:
        if s.power_w is None or s.at > now:
            continue
        if s.power_w >= NO_POWER_W:
            since = None
        elif since is None:
            since = s.at
    return since


def is_full(state: SessionState, now: datetime) -> bool:
    """Charged to the end: ≥ 95 % SoC, and no power for 10 minutes in `SuspendedEV`
    (or suspended with the OCPP cause unknown). Off-peak waits and charger-side pauses are
    not this."""
    if state.ended_at is not None or state.status not in OPEN_STATUSES:
        return False
    if state.ocpp_status is not None:
        if state.ocpp_status not in ("SuspendedEV", "Finishing"):
            return False
    elif state.status not in ("SUSPENDED", "FINISHING"):
        return False
    soc = _latest_soc(state)
    if soc is None or soc < FULL_SOC:
        return False
    since = no_power_since(state.samples, now)
    if since is None or (state.power_w is not None and state.power_w >= NO_POWER_W):
        return False
    return now - since >= IDLE_FOR


def estimate_minutes_left(state: SessionState, now: datetime) -> float | None:
    """Minutes until the battery is full, from the power curve — an estimate.

    With SoC: the charge curve of `app.sessions.curve` (the one `GET /v1/sessions` shows as
    `estimated_minutes_remaining`: flat to 80 %, then tapering), its plateau inferred from
    the power drawn now, the battery from the driver's vehicle or from energy per SoC point
    over the recent samples. Without SoC: only while the power is already tapering, the
    time until the falling power line reaches zero. None when it cannot be known."""
    recent = [s for s in state.samples if now - CURVE_WINDOW <= s.at <= now]
    powers = [s.power_w for s in recent if s.power_w is not None]
    power = state.power_w if state.power_w is not None else (powers[-1] if powers else None)
    if power is None or power < NO_POWER_W:
        return None
    soc = _latest_soc(state)
    if soc is not None:
        battery = state.battery_wh or _inferred_battery_wh(state, soc)
        minutes = curve.estimate(soc=soc, power_w=power, battery_wh=battery).minutes_to_full
        return None if minutes is None else float(minutes)
    if len(recent) >= 3:
        pts = [(s.at, s.power_w) for s in recent if s.power_w is not None]
        if len(pts) >= 3 and pts[-1][0] > pts[0][0]:
            t0 = pts[0][0]
            xs = [(t - t0).total_seconds() for t, _ in pts]
            ys = [p for _, p in pts]
            mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
            var = sum((x - mean_x) ** 2 for x in xs)
            if var > 0:
                slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var
                if slope < 0:
                    return (power / -slope) / 60.0
    return None


def _inferred_battery_wh(state: SessionState, soc_now: float) -> float | None:
    """The battery implied by energy per SoC point between the oldest sample that has both
    and now (`curve.infer_battery_wh`: only when both moved enough to mean something)."""
    first = next(
        (s for s in state.samples if s.soc_percent is not None and s.energy_wh is not None),
        None,
    )
    if first is None:
        return None
    return curve.infer_battery_wh(
        soc_first=first.soc_percent,
        energy_at_first_wh=first.energy_wh,
        soc_now=soc_now,
        energy_now_wh=state.energy_wh,
    )


ESTIMATE_FROM_SOC: Final = 50.0  # below this no car (≤ 4C) is 10 minutes from full


def needs_samples(state: SessionState) -> bool:
    """Whether the rules would look at the recent samples of this state (loading them
    costs a query on every MeterValues of every paid session, so only when they count):
    the idle wait of a suspended car, and the power curve near the end of a charge."""
    if state.ended_at is not None or state.status in ("STARTING", "FAILED", "COMPLETED"):
        return False
    if state.status in ("SUSPENDED", "FINISHING"):
        return "session_complete" not in state.sent or "idle_fee_warning" not in state.sent
    if "ten_minutes_left" in state.sent or "session_complete" in state.sent:
        return False
    return state.soc_percent is None or state.soc_percent >= ESTIMATE_FROM_SOC


def _figures(state: SessionState) -> dict[str, Any]:
    facts: dict[str, Any] = {"energy_wh": state.energy_wh}
    soc = _latest_soc(state)
    if soc is not None:
        facts["soc_percent"] = soc
    return facts


def due_alerts(state: SessionState, now: datetime) -> list[Due]:
    """The session alerts due now and not sent yet, in the order a driver should get them."""
    out: list[Due] = []
    sent = set(state.sent)

    def due(kind: str, facts: dict[str, Any]) -> None:
        if kind not in sent:
            sent.add(kind)
            out.append(Due(kind, facts))

    if state.status in ("STARTING", "FAILED"):
        return out
    ended = state.ended_at is not None or state.status == "COMPLETED"
    if ended:
        if "session_started" in sent or state.energy_wh > 0:
            due("session_complete", {**_figures(state), "reason": "stopped"})
        return out

    due("session_started", {})
    soc_max = _max_soc(state)
    if soc_max is not None:
        if soc_max >= SOC_ALERT:
            due("soc_80", _figures(state))
    elif state.battery_wh and state.energy_wh >= ENERGY_SHARE_ALERT * state.battery_wh:
        share = 100.0 * state.energy_wh / state.battery_wh
        due("soc_80", {"energy_wh": state.energy_wh, "battery_share_percent": share})

    if is_full(state, now):
        due("session_complete", {**_figures(state), "reason": "full"})
        if state.parking_minor_per_hour:
            facts: dict[str, Any] = {"parking_minor_per_hour": state.parking_minor_per_hour}
            if state.parking_starts_at is not None:
                facts["at"] = max(state.parking_starts_at, now)
            due("idle_fee_warning", facts)
        return out

    charging = state.status == "CHARGING" and (
        state.ocpp_status is None or state.ocpp_status == "Charging"
    )
    if (
        charging
        and "session_complete" not in sent
        and now - state.started_at >= MIN_CHARGING_FOR_ESTIMATE
    ):
        minutes = estimate_minutes_left(state, now)
        if minutes is not None and 0 < minutes <= MINUTES_LEFT_ALERT:
            due("ten_minutes_left", {**_figures(state), "minutes": max(1, round(minutes))})
    return out


PARKING_HORIZON: Final = timedelta(hours=4)
PARKING_STEP: Final = timedelta(minutes=5)


def parking_outlook(
    tariff: engine.CompiledTariff,
    tz: ZoneInfo,
    *,
    started_at: datetime,
    charging_end: datetime,
    energy_wh: int,
) -> tuple[datetime, int] | None:
    """When parking starts to cost after charging ended at `charging_end`, and what an hour
    of it costs then (minor units, VAT included): the tariff engine asked what a session
    ending later would pay for PARKING_TIME. None when parking stays free for 4 hours."""
    charging_end = max(charging_end, started_at)
    samples = [engine.MeterSample(at=started_at, energy_wh=0)]
    if charging_end > started_at:
        samples.append(engine.MeterSample(at=charging_end, energy_wh=max(0, int(energy_wh))))

    def parking_minor(end: datetime) -> int:
        bill = engine.bill(
            tariff,
            tz,
            samples,
            session_start=started_at,
            charging_end=charging_end,
            session_end=end,
        )
        return sum(line.amount_minor for line in bill.lines if line.component == "PARKING_TIME")

    end = charging_end
    while end < charging_end + PARKING_HORIZON:
        end += PARKING_STEP
        if parking_minor(end) > 0:
            low, high = end - PARKING_STEP, end  # free at `low`, costing at `high`
            while high - low > timedelta(minutes=1):
                mid = low + (high - low) / 2
                low, high = (low, mid) if parking_minor(mid) > 0 else (mid, high)
            starts = low
            per_hour = parking_minor(starts + timedelta(hours=1)) - parking_minor(starts)
            vat = Decimal(str(tariff.tariff.vat_percent or "0"))
            with_vat = int((Decimal(per_hour) * (100 + vat) / 100).to_integral_value(ROUND_HALF_UP))
            return starts, with_vat
    return None
