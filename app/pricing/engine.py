"""The tariff engine: pure functions from a tariff, a site timezone and meter data to prices
and bills (OCPI 2.2.1 semantics). No I/O, no clock: every instant is passed in.

How a bill is computed
----------------------
* Time is handled in integer microseconds since the Unix epoch (UTC). Time-of-day, date and
  day-of-week restrictions are evaluated on the *local wall clock of each instant* in the
  site's IANA zone, so DST is exact: in a spring-forward gap the clock jumps and the band
  with it; in a fall-back hour an ``02:30`` boundary is crossed twice. Restrictions are
  independent predicates on that instant: ``FRIDAY`` + ``22:00–06:00`` applies on Friday
  00:00–06:00 and Friday 22:00–24:00 (write ``[FRIDAY, SATURDAY]`` for "Friday night").
* Energy: the cumulative register E(t) is the straight line between consecutive samples,
  constant before the first and after the last one; the bill covers
  ``[session_start, session_end)`` only. Samples must be in time order with a non-decreasing
  register (same-time duplicates are dropped, a jump at one instant is an error).
* The session is cut at every point where anything can change (local band edges,
  ``charging_end``, sample times, duration thresholds, energy thresholds). On each piece the
  element for a dimension is the first element, in tariff order, that has a price component
  of that dimension and whose restrictions all hold at the *start* of the piece with:
  energy so far = E(t) − E(session_start), power = average power of the sample interval
  (0 outside the samples), duration = t − session_start. Every range is ``[min, max)``.
  An energy threshold crossed inside a sample interval takes effect at the first whole
  microsecond at or after the exact crossing.
* ``TIME`` is billed over ``[session_start, charging_end)``, ``PARKING_TIME`` over
  ``[charging_end, session_end)``, ``ENERGY`` over the whole session, ``FLAT`` once, from
  the first matching element at ``session_start`` (0 kWh, 0 s, the power at the start).
* Lines: consecutive pieces with the same element make one line. An energy line's quantity
  is ``round_half_up(E(to)) − round_half_up(E(from))`` whole Wh (so lines always add up to
  the metered total); a time line is its exact duration in µs.
* ``step_size`` (OCPI): for each of ENERGY, TIME and PARKING_TIME separately, the total over
  the session is rounded up to a multiple of the step_size of the component that priced
  the *last* line of that dimension, and the difference is added to that last line (OCPI
  2.2.1 example "switching to different Tariff Element #2"). ``0`` means no rounding.
  TIME and PARKING_TIME are rounded separately (a deliberate simplification of the OCPI
  2.2.1-d2 "combined" wording). Note that OCPI step rounding makes a bill non-monotone in
  edge cases: a longer session can end in a cheaper element with a finer step.
* A time line is shown in hours rounded half-up to 6 decimals; the line amount is
  ``round_half_up(quantity × unit_price)`` in minor units of the currency, using exactly the
  quantity shown, so every receipt line can be checked by hand. Lines whose shown quantity
  is 0 are dropped (FLAT lines are always kept, even at price 0).
* ``vat_minor = round_half_up(subtotal_minor × vat_percent / 100)``; ``total = subtotal + vat``.

All arithmetic is on integers (prices scaled to integers once per tariff), hence exact.

Displayed prices (``price_at``, ``bands``) are what a session starting at that instant pays
first: 0 kWh, 0 s, and the power given by ``power_kw`` — when it is ``None``, elements with
a power restriction never match for display.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec

from app.pricing.tariff import (
    DAYS_OF_WEEK,
    ComponentType,
    Tariff,
    TariffElement,
    currency_exponent,
    parse_day,
    parse_hhmm,
)

__all__ = [
    "Band",
    "Bill",
    "BillLine",
    "CheapestStart",
    "CompiledTariff",
    "MeterSample",
    "PriceNow",
    "bands",
    "bill",
    "cheapest_start",
    "compile_tariff",
    "price_at",
    "quote",
]

US = 1_000_000
MINUTE_US = 60 * US
HOUR_US = 3600 * US
DAY_US = 86_400 * US
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()
_DISPLAY_HORIZON_US = 8 * DAY_US
_CACHE_LIMIT = 512
_CHUNK_LIMIT = 4096

ENERGY, TIME, PARKING, FLAT = 0, 1, 2, 3
_DIM_OF: dict[str, int] = {"ENERGY": ENERGY, "TIME": TIME, "PARKING_TIME": PARKING, "FLAT": FLAT}
_DIM_NAME: tuple[ComponentType, ...] = ("ENERGY", "TIME", "PARKING_TIME", "FLAT")
# Quantity resolution per dimension: Wh per kWh, hour-millionths per hour, sessions.
_QTY_SCALE = (1000, 1_000_000, 1_000_000, 1)
_UNIT: tuple[Literal["kWh", "h", "session"], ...] = ("kWh", "h", "h", "session")
_ZERO = Fraction(0)

Unit = Literal["kWh", "h", "session"]


# --------------------------------------------------------------------------- public structs


class MeterSample(msgspec.Struct, frozen=True):
    """A reading of the connector's cumulative energy register."""

    at: datetime
    energy_wh: int


class BillLine(msgspec.Struct, frozen=True, kw_only=True):
    """One priced quantity; ``amount_minor`` excludes VAT."""

    component: ComponentType
    band_from: datetime
    band_to: datetime
    quantity: Decimal
    unit: Unit
    unit_price: str
    amount_minor: int


class Bill(msgspec.Struct, frozen=True, kw_only=True):
    """A priced session: lines excluding VAT, then VAT and the total, in minor units."""

    currency: str
    lines: list[BillLine]
    subtotal_minor: int
    vat_minor: int
    total_minor: int
    vat_percent: str = "0"
    tariff_id: str = ""
    tariff_version: int = 0


class PriceNow(msgspec.Struct, frozen=True, kw_only=True):
    """The price a session starting now would pay first, and until when it holds."""

    tariff_id: str
    currency: str
    energy_per_kwh: str | None
    time_per_hour: str | None
    flat: str | None
    idle_per_hour: str | None
    vat_percent: str
    valid_until: datetime | None


class Band(msgspec.Struct, frozen=True, kw_only=True):
    """An interval ``[from, to)`` over which the displayed prices do not change."""

    from_: datetime = msgspec.field(name="from")
    to: datetime
    energy_per_kwh: str | None
    time_per_hour: str | None
    flat: str | None
    idle_per_hour: str | None


class CheapestStart(msgspec.Struct, frozen=True, kw_only=True):
    """The cheapest start within the window and what it saves against starting now."""

    start_at: datetime
    total_minor: int
    saving_minor_vs_now: int


# --------------------------------------------------------------------------- compilation


def _half_up_div(num: int, den: int) -> int:
    """round_half_up(num / den) for num >= 0, den > 0."""
    return (2 * num + den) // (2 * den)


def _scaled(raw: str) -> tuple[int, int]:
    """A decimal string as (integer, power of ten) with value = integer / 10**power."""
    d = Decimal(raw)
    sign, digits, exponent = d.as_tuple()
    if sign or not isinstance(exponent, int):
        raise ValueError(f"not a non-negative finite decimal: {raw!r}")
    mantissa = int("".join(map(str, digits)) or "0")
    if exponent >= 0:
        return mantissa * 10**exponent, 0
    return mantissa, -exponent


def _exact(value: float | int | Decimal | str) -> Fraction:
    """A number as an exact fraction of its shortest decimal form (22.5 → 45/2)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, float):
        return Fraction(Decimal(repr(value)))
    return Fraction(Decimal(value))


class _Price:
    """One price component of one element, pre-scaled for integer arithmetic."""

    __slots__ = ("den", "dim", "element", "num", "price", "step")

    def __init__(self, element: int, dim: int, price: str, step: int, exponent: int) -> None:
        mantissa, decimals = _scaled(price)
        self.element = element
        self.dim = dim
        self.price = price
        # amount_minor = half_up(quantity_units × num / den)
        self.num = mantissa * 10**exponent
        self.den = 10**decimals * _QTY_SCALE[dim]
        unit = US if dim in (TIME, PARKING) else 1
        self.step = max(step, 0) * unit if dim != FLAT else 0


class _Element:
    """A tariff element with restrictions parsed into integers."""

    __slots__ = (
        "conditional",
        "d_end",
        "d_start",
        "dow_mask",
        "index",
        "max_dur",
        "max_power",
        "max_wh",
        "min_dur",
        "min_power",
        "min_wh",
        "prices",
        "t_end",
        "t_start",
    )

    def __init__(self, index: int, element: TariffElement, exponent: int) -> None:
        self.index = index
        self.prices: list[_Price | None] = [None, None, None, None]
        for pc in element.price_components:
            dim = _DIM_OF[pc.type]
            if self.prices[dim] is None:
                self.prices[dim] = _Price(index, dim, pc.price, pc.step_size, exponent)
        r = element.restrictions
        self.t_start: int | None = None
        self.t_end: int | None = None
        self.d_start: int | None = None
        self.d_end: int | None = None
        self.dow_mask = 0x7F
        self.min_wh: Fraction | None = None
        self.max_wh: Fraction | None = None
        self.min_power: Fraction | None = None
        self.max_power: Fraction | None = None
        self.min_dur: int | None = None
        self.max_dur: int | None = None
        self.conditional = False
        if r is None:
            return
        if r.start_time is not None:
            self.t_start = parse_hhmm(r.start_time)
        if r.end_time is not None:
            end = parse_hhmm(r.end_time)
            self.t_end = 1440 if end == 0 else end
        if r.start_date is not None:
            d = parse_day(r.start_date)
            self.d_start = d.toordinal() if d else None
        if r.end_date is not None:
            d = parse_day(r.end_date)
            self.d_end = d.toordinal() if d else None
        if r.day_of_week:
            self.dow_mask = 0
            for day in r.day_of_week:
                self.dow_mask |= 1 << DAYS_OF_WEEK.index(day)
        if r.min_kwh is not None:
            self.min_wh = _exact(r.min_kwh) * 1000
        if r.max_kwh is not None:
            self.max_wh = _exact(r.max_kwh) * 1000
        if r.min_power is not None:
            self.min_power = _exact(r.min_power)
        if r.max_power is not None:
            self.max_power = _exact(r.max_power)
        if r.min_duration is not None:
            self.min_dur = r.min_duration * US
        if r.max_duration is not None:
            self.max_dur = r.max_duration * US
        self.conditional = r.has_session_limits()

    def calendar_match(self, ordinal: int, dow: int, minute: int) -> bool:
        if not (self.dow_mask >> dow) & 1:
            return False
        if self.d_start is not None and ordinal < self.d_start:
            return False
        if self.d_end is not None and ordinal >= self.d_end:
            return False
        ts, te = self.t_start, self.t_end
        if ts is not None and te is not None:
            if ts < te:
                return ts <= minute < te
            return minute >= ts or minute < te
        if ts is not None:
            return minute >= ts
        if te is not None:
            return minute < te
        return True

    def session_match(self, energy_wh: Fraction, power_kw: Fraction | None, dur_us: int) -> bool:
        """Energy/power/duration restrictions; ``power_kw=None`` fails any power limit."""
        if self.min_wh is not None and energy_wh < self.min_wh:
            return False
        if self.max_wh is not None and energy_wh >= self.max_wh:
            return False
        if self.min_power is not None and (power_kw is None or power_kw < self.min_power):
            return False
        if self.max_power is not None and (power_kw is None or power_kw >= self.max_power):
            return False
        if self.min_dur is not None and dur_us < self.min_dur:
            return False
        return not (self.max_dur is not None and dur_us >= self.max_dur)


class _State:
    """The calendar-matching elements of a local-time band, per dimension."""

    __slots__ = ("cand", "display", "needs_session", "sel")

    def __init__(self, elements: list[_Element], matching: tuple[int, ...]) -> None:
        cand: list[tuple[_Price, ...]] = []
        sel: list[_Price | None] = []
        for dim in range(4):
            found: list[_Price] = []
            for idx in matching:
                el = elements[idx]
                price = el.prices[dim]
                if price is None:
                    continue
                found.append(price)
                if not el.conditional:
                    break  # later elements can never be selected for this dimension
            cand.append(tuple(found))
            sel.append(found[0] if found and not elements[found[0].element].conditional else None)
        self.cand = tuple(cand)
        self.sel = tuple(sel)
        # Dimensions whose choice here depends on energy, power or duration.
        self.needs_session = tuple(bool(c) and sel[d] is None for d, c in enumerate(cand))
        self.display: dict[Fraction | None, tuple[_Price | None, ...]] = {}


class _Calendar:
    """Local-time bands of one tariff in one zone, cached per UTC day."""

    __slots__ = ("_chunks", "_state_ids", "compiled", "states", "tz")

    def __init__(self, compiled: CompiledTariff, tz: ZoneInfo) -> None:
        self.compiled = compiled
        self.tz = tz
        self.states: list[_State] = []
        self._state_ids: dict[tuple[int, ...], int] = {}
        self._chunks: dict[int, tuple[list[int], list[int]]] = {}

    def _offset(self, sec: int) -> int:
        off = datetime.fromtimestamp(sec, self.tz).utcoffset()
        assert off is not None
        return off // _ONE_US

    def _offset_segments(self, u0: int, u1: int) -> list[tuple[int, int, int]]:
        """[(from, to, utc offset µs)] covering [u0, u1); zone transitions are whole seconds."""
        out: list[tuple[int, int, int]] = []
        lo_s = u0 // US
        end_s = (u1 - 1) // US
        while True:
            off_lo = self._offset(lo_s)
            if self._offset(end_s) == off_lo:
                out.append((max(u0, lo_s * US), u1, off_lo))
                return out
            lo, hi = lo_s, end_s  # offset(lo) == off_lo != offset(hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self._offset(mid) == off_lo:
                    lo = mid
                else:
                    hi = mid
            out.append((max(u0, lo_s * US), hi * US, off_lo))
            lo_s = hi

    def _state_id(self, day: int, minute: int) -> int:
        ordinal = day + _EPOCH_ORDINAL
        dow = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        elements = self.compiled.elements
        matching = tuple(el.index for el in elements if el.calendar_match(ordinal, dow, minute))
        sid = self._state_ids.get(matching)
        if sid is None:
            sid = len(self.states)
            self._state_ids[matching] = sid
            self.states.append(_State(elements, matching))
        return sid

    def chunk(self, c: int) -> tuple[list[int], list[int]]:
        """Band starts and state ids over UTC day ``c`` (first start is the day start)."""
        got = self._chunks.get(c)
        if got is not None:
            return got
        u0, u1 = c * DAY_US, (c + 1) * DAY_US
        minutes = self.compiled.minutes
        starts: list[int] = []
        ids: list[int] = []
        for s0, s1, off in self._offset_segments(u0, u1):
            for day in range((s0 + off) // DAY_US, (s1 - 1 + off) // DAY_US + 1):
                base = day * DAY_US - off
                for i, minute in enumerate(minutes):
                    a = base + minute * MINUTE_US
                    b = base + (minutes[i + 1] * MINUTE_US if i + 1 < len(minutes) else DAY_US)
                    if b <= s0 or a >= s1:
                        continue
                    sid = self._state_id(day, minute)
                    if ids and ids[-1] == sid:
                        continue
                    starts.append(max(a, s0))
                    ids.append(sid)
        if len(self._chunks) >= _CHUNK_LIMIT:
            self._chunks.clear()
        self._chunks[c] = (starts, ids)
        return starts, ids

    def segments(self, s: int, e: int) -> tuple[list[int], list[int]]:
        """Band starts (first = s) and state ids covering [s, e), merged across days."""
        starts: list[int] = []
        ids: list[int] = []
        for c in range(s // DAY_US, max(s, e - 1) // DAY_US + 1):
            cs, ci = self.chunk(c)
            i = bisect.bisect_right(cs, s) - 1 if not starts else 0
            i = max(i, 0)
            for j in range(i, len(cs)):
                a = cs[j]
                if a >= e and starts:
                    break
                if ids and ids[-1] == ci[j]:
                    continue
                starts.append(max(a, s))
                ids.append(ci[j])
        return starts, ids

    def display(self, sid: int, power: Fraction | None) -> tuple[_Price | None, ...]:
        state = self.states[sid]
        got = state.display.get(power)
        if got is None:
            elements = self.compiled.elements
            sel: list[_Price | None] = []
            for dim in range(4):
                chosen = None
                for price in state.cand[dim]:
                    if elements[price.element].session_match(_ZERO, power, 0):
                        chosen = price
                        break
                sel.append(chosen)
            got = tuple(sel)
            state.display[power] = got
        return got


class CompiledTariff:
    """A tariff pre-processed for fast pricing; build it with ``compile_tariff``."""

    __slots__ = (
        "_calendars",
        "currency",
        "elements",
        "general",
        "kwh_thresholds",
        "minutes",
        "tariff",
        "vat_den",
        "vat_num",
    )

    def __init__(self, tariff: Tariff) -> None:
        self.tariff = tariff
        self.currency = tariff.currency
        exponent = currency_exponent(tariff.currency)
        self.elements = [_Element(i, el, exponent) for i, el in enumerate(tariff.elements)]
        vat, vat_decimals = _scaled(tariff.vat_percent)
        self.vat_num = vat
        self.vat_den = 100 * 10**vat_decimals
        minutes = {0}
        thresholds: set[Fraction] = set()
        for el in self.elements:
            for m in (el.t_start, el.t_end):
                if m is not None and m < 1440:
                    minutes.add(m)
            for w in (el.min_wh, el.max_wh):
                if w is not None:
                    thresholds.add(w)
        self.minutes = sorted(minutes)
        self.kwh_thresholds = sorted(thresholds)
        # The fast path needs no per-piece session evaluation.
        self.general = any(
            el.conditional and any(el.prices[d] is not None for d in (ENERGY, TIME, PARKING))
            for el in self.elements
        )
        self._calendars: dict[ZoneInfo, _Calendar] = {}

    def calendar(self, tz: ZoneInfo) -> _Calendar:
        cal = self._calendars.get(tz)
        if cal is None:
            cal = self._calendars[tz] = _Calendar(self, tz)
        return cal


_compiled: dict[int, tuple[Tariff, CompiledTariff]] = {}


def compile_tariff(tariff: Tariff | CompiledTariff) -> CompiledTariff:
    """The compiled form of a (validated) tariff, cached while the Tariff object lives here.

    Raises ValueError/KeyError on a tariff that ``validate_tariff`` would reject.
    """
    if isinstance(tariff, CompiledTariff):
        return tariff
    hit = _compiled.get(id(tariff))
    if hit is not None and hit[0] is tariff:
        return hit[1]
    compiled = CompiledTariff(tariff)
    if len(_compiled) >= _CACHE_LIMIT:
        _compiled.clear()
    _compiled[id(tariff)] = (tariff, compiled)
    return compiled


# --------------------------------------------------------------------------- helpers


# UTC datetimes of recurring instants (band edges), shared by all bills.
_shared_times: dict[int, datetime] = {}
_TIMES_LIMIT = 65_536


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo is UTC else dt.astimezone(UTC)


def _us(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return (dt - _EPOCH) // _ONE_US


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _samples(samples: Sequence[MeterSample]) -> tuple[list[int], list[int]]:
    """Sample times (µs) and registers, validated; exact same-time duplicates dropped."""
    epoch, one = _EPOCH, _ONE_US
    try:
        ts = [(smp.at - epoch) // one for smp in samples]
    except TypeError as exc:
        raise ValueError("datetimes must be timezone-aware") from exc
    es = [smp.energy_wh for smp in samples]
    if all(map(operator.lt, ts, ts[1:])) and all(map(operator.le, es, es[1:])):
        return ts, es
    out_t: list[int] = []
    out_e: list[int] = []
    for t, w in zip(ts, es, strict=True):
        if out_t:
            if t < out_t[-1]:
                raise ValueError("meter samples must be in time order")
            if w < out_e[-1]:
                raise ValueError("the energy register must not decrease between samples")
            if t == out_t[-1]:
                if w != out_e[-1]:
                    raise ValueError("two samples at the same instant with different energy")
                continue
        out_t.append(t)
        out_e.append(w)
    return out_t, out_e


def _energy_rounded(ts: list[int], es: list[int], t: int) -> int:
    """round_half_up(E(t)) in Wh."""
    k = bisect.bisect_right(ts, t) - 1
    if k < 0:
        return es[0]
    if k >= len(ts) - 1:
        return es[-1]
    dt = ts[k + 1] - ts[k]
    return (2 * (es[k] * dt + (es[k + 1] - es[k]) * (t - ts[k])) + dt) // (2 * dt)


def _energy_exact(ts: list[int], es: list[int], t: int) -> Fraction:
    k = bisect.bisect_right(ts, t) - 1
    if k < 0:
        return Fraction(es[0])
    if k >= len(ts) - 1:
        return Fraction(es[-1])
    return es[k] + Fraction((es[k + 1] - es[k]) * (t - ts[k]), ts[k + 1] - ts[k])


def _power_at(ts: list[int], es: list[int], t: int) -> Fraction:
    """Average power (kW) of the sample interval containing t; 0 outside the samples."""
    k = bisect.bisect_right(ts, t) - 1
    if k < 0 or k >= len(ts) - 1:
        return _ZERO
    return Fraction((es[k + 1] - es[k]) * 3_600_000, ts[k + 1] - ts[k])


def _runs_fast(
    sel_dim: int,
    states: list[_State],
    starts: list[int],
    ids: list[int],
    w0: int,
    w1: int,
) -> list[tuple[_Price, int, int]]:
    out: list[tuple[_Price, int, int]] = []
    cur: _Price | None = None
    cur_from = w0
    n = len(starts)
    for j in range(n):
        a = starts[j]
        b = starts[j + 1] if j + 1 < n else w1
        if b <= w0:
            continue
        if a >= w1:
            break
        a = max(a, w0)
        price = states[ids[j]].sel[sel_dim]
        if price is cur:
            continue
        if cur is not None:
            out.append((cur, cur_from, a))
        cur = price
        cur_from = a
    if cur is not None and cur_from < w1:
        out.append((cur, cur_from, w1))
    return out


def _pick(
    elements: list[_Element],
    cands: tuple[_Price, ...],
    energy: Fraction,
    power: Fraction,
    dur: int,
) -> _Price | None:
    for price in cands:
        if elements[price.element].session_match(energy, power, dur):
            return price
    return None


def _runs_general(
    ct: CompiledTariff,
    cal: _Calendar,
    starts: list[int],
    ids: list[int],
    ts: list[int],
    es: list[int],
    s: int,
    ce: int,
    e: int,
) -> tuple[list[tuple[_Price, int, int]], ...]:
    """Runs per dimension when elements depend on energy, power or duration."""
    points = set(starts)
    points.add(ce)
    points.update(t for t in ts if s < t < e)
    for el in ct.elements:
        for d in (el.min_dur, el.max_dur):
            if d is not None and s < s + d < e:
                points.add(s + d)
    base = _energy_exact(ts, es, s) if ts else _ZERO
    if ct.kwh_thresholds and ts:
        # Absolute register values at which a threshold on "energy so far" is reached.
        targets = [base + thr for thr in ct.kwh_thresholds]
        first, last = targets[0], targets[-1]
        for k in range(len(ts) - 1):
            e0, e1 = es[k], es[k + 1]
            if e1 <= first or e0 >= last:
                continue
            dt = ts[k + 1] - ts[k]
            for target in targets:
                if e0 < target < e1:
                    exact = ts[k] + (target - e0) * dt / (e1 - e0)
                    tc = -((-exact.numerator) // exact.denominator)
                    if s < tc < e:
                        points.add(tc)
    cuts = sorted(p for p in points if s <= p < e)
    states = cal.states
    elements = ct.elements
    runs: tuple[list[tuple[_Price, int, int]], ...] = ([], [], [])
    cur: list[_Price | None] = [None, None, None]
    cur_from = [s, s, s]
    j = 0
    nseg = len(starts)
    energy = power = _ZERO
    for a in cuts:
        while j + 1 < nseg and starts[j + 1] <= a:
            j += 1
        state = states[ids[j]]
        needs = state.needs_session
        charging = a < ce
        if needs[ENERGY] or needs[TIME if charging else PARKING]:
            energy = (_energy_exact(ts, es, a) - base) if ts else _ZERO
            power = _power_at(ts, es, a) if ts else _ZERO
        for dim in (ENERGY, TIME, PARKING):
            if (dim == TIME and not charging) or (dim == PARKING and charging):
                price = None
            elif needs[dim]:
                price = _pick(elements, state.cand[dim], energy, power, a - s)
            else:
                price = state.sel[dim]
            if price is cur[dim]:
                continue
            prev = cur[dim]
            if prev is not None:
                runs[dim].append((prev, cur_from[dim], a))
            cur[dim] = price
            cur_from[dim] = a
    for dim in (ENERGY, TIME, PARKING):
        prev = cur[dim]
        if prev is not None and cur_from[dim] < e:
            runs[dim].append((prev, cur_from[dim], e))
    return runs


def _bill_us(
    ct: CompiledTariff,
    tz: ZoneInfo,
    ts: list[int],
    es: list[int],
    s: int,
    ce: int,
    e: int,
    *,
    force_general: bool = False,
    times: dict[int, datetime] | None = None,
) -> Bill:
    if e < s:
        raise ValueError("session_end is before session_start")
    ce = min(max(ce, s), e)
    cal = ct.calendar(tz)
    starts, ids = cal.segments(s, e)
    states = cal.states
    if ct.general or force_general:
        e_runs, t_runs, p_runs = _runs_general(ct, cal, starts, ids, ts, es, s, ce, e)
    else:
        e_runs = _runs_fast(ENERGY, states, starts, ids, s, e) if len(ts) > 1 else []
        t_runs = _runs_fast(TIME, states, starts, ids, s, ce) if ce > s else []
        p_runs = _runs_fast(PARKING, states, starts, ids, ce, e) if e > ce else []

    tcache = times if times is not None else {}

    def when(us: int) -> datetime:
        got = tcache.get(us)
        if got is None:
            got = _shared_times.get(us)
            if got is None:
                if len(_shared_times) >= _TIMES_LIMIT:
                    _shared_times.clear()
                got = _shared_times[us] = _EPOCH + timedelta(microseconds=us)
        return got

    lines: list[BillLine] = []
    subtotal = 0
    # FLAT: first matching element at the session start.
    flat_cands = states[ids[0]].cand[FLAT]
    if flat_cands:
        flat: _Price | None = flat_cands[0]
        if ct.elements[flat_cands[0].element].conditional:
            power = _power_at(ts, es, s) if ts else _ZERO
            flat = _pick(ct.elements, flat_cands, _ZERO, power, 0)
        if flat is not None:
            amount = _half_up_div(flat.num, flat.den)
            subtotal += amount
            lines.append(
                BillLine(
                    component="FLAT",
                    band_from=when(s),
                    band_to=when(e),
                    quantity=Decimal(1),
                    unit="session",
                    unit_price=flat.price,
                    amount_minor=amount,
                )
            )
    for dim, runs in ((ENERGY, e_runs), (TIME, t_runs), (PARKING, p_runs)):
        if not runs:
            continue
        if dim == ENERGY:
            qty = [_energy_rounded(ts, es, b) - _energy_rounded(ts, es, a) for _, a, b in runs]
        else:
            qty = [b - a for _, a, b in runs]
        last = len(runs) - 1
        while last >= 0 and qty[last] <= 0:
            last -= 1
        if last < 0:
            continue
        step = runs[last][0].step
        if step > 1:
            total = sum(qty)
            qty[last] += -(-total // step) * step - total
        for i in range(last + 1):
            q = qty[i]
            if q <= 0:
                continue
            price, a, b = runs[i]
            if dim == ENERGY:
                units = q
                quantity = Decimal(units).scaleb(-3)
            else:
                units = (2 * q + 3600) // 7200  # µs → hour-millionths, half-up
                if units == 0:
                    continue
                quantity = Decimal(units).scaleb(-6)
            amount = (2 * units * price.num + price.den) // (2 * price.den)
            subtotal += amount
            lines.append(
                BillLine(
                    component=_DIM_NAME[dim],
                    band_from=when(a),
                    band_to=when(b),
                    quantity=quantity,
                    unit=_UNIT[dim],
                    unit_price=price.price,
                    amount_minor=amount,
                )
            )
    vat = _half_up_div(subtotal * ct.vat_num, ct.vat_den)
    tariff = ct.tariff
    return Bill(
        currency=ct.currency,
        lines=lines,
        subtotal_minor=subtotal,
        vat_minor=vat,
        total_minor=subtotal + vat,
        vat_percent=tariff.vat_percent,
        tariff_id=tariff.tariff_id,
        tariff_version=tariff.version,
    )


# --------------------------------------------------------------------------- public API


def bill(
    tariff: Tariff | CompiledTariff,
    tz: ZoneInfo,
    samples: Sequence[MeterSample],
    *,
    session_start: datetime,
    charging_end: datetime | None,
    session_end: datetime,
) -> Bill:
    """Price a session from its meter samples (see the module docstring for the rules).

    ``charging_end`` (clamped into the session; ``None`` = ``session_end``) splits TIME from
    PARKING_TIME. Raises ValueError for naive datetimes, an end before the start, or samples
    out of order / with a decreasing register.
    """
    ct = compile_tariff(tariff)
    ts, es = _samples(samples)
    s = _us(session_start)
    e = _us(session_end)
    ce = e if charging_end is None else _us(charging_end)
    times = {s: _utc(session_start), e: _utc(session_end)}
    if charging_end is not None:
        times[ce] = _utc(charging_end)
    return _bill_us(ct, tz, ts, es, s, ce, e, times=times)


def _to_fraction(value: float | int | Decimal | str, name: str) -> Fraction:
    try:
        out = _exact(value)
    except (ArithmeticError, ValueError) as exc:
        raise ValueError(f"{name} must be a number") from exc
    return out


def _quote_us(
    ct: CompiledTariff,
    tz: ZoneInfo,
    s: int,
    power: Fraction,
    wh: int | None,
    duration_us: int | None,
) -> Bill:
    if wh is None:
        assert duration_us is not None
        wh_exact = power * 1000 * Fraction(duration_us, HOUR_US)
        wh = _half_up_div(wh_exact.numerator, wh_exact.denominator)
        dur = duration_us
    else:
        # duration = wh / (1000 × P) hours, rounded up to the microsecond
        dur_exact = Fraction(wh * 3_600_000) / power
        dur = -((-dur_exact.numerator) // dur_exact.denominator)
    e = s + dur
    return _bill_us(ct, tz, [s, e] if e > s else [s], [0, wh] if e > s else [0], s, e, e)


def quote(
    tariff: Tariff | CompiledTariff,
    tz: ZoneInfo,
    *,
    start_at: datetime,
    power_kw: float | int | Decimal | str,
    energy_kwh: float | int | Decimal | str | None = None,
    duration_min: float | int | Decimal | str | None = None,
) -> Bill:
    """Bill of a synthetic session charging at a constant ``power_kw`` from ``start_at``,
    either until ``energy_kwh`` is delivered or for ``duration_min`` minutes; no parking.

    Energy is rounded half-up to whole Wh, the duration up to the microsecond.
    """
    if (energy_kwh is None) == (duration_min is None):
        raise ValueError("give exactly one of energy_kwh and duration_min")
    ct = compile_tariff(tariff)
    power = _to_fraction(power_kw, "power_kw")
    if power <= 0:
        raise ValueError("power_kw must be positive")
    s = _us(start_at)
    if energy_kwh is not None:
        kwh = _to_fraction(energy_kwh, "energy_kwh")
        if kwh < 0:
            raise ValueError("energy_kwh must not be negative")
        wh_exact = kwh * 1000
        bill_ = _quote_us(
            ct, tz, s, power, _half_up_div(wh_exact.numerator, wh_exact.denominator), None
        )
    else:
        assert duration_min is not None
        minutes = _to_fraction(duration_min, "duration_min")
        if minutes < 0:
            raise ValueError("duration_min must not be negative")
        dur = minutes * MINUTE_US
        bill_ = _quote_us(ct, tz, s, power, None, _half_up_div(dur.numerator, dur.denominator))
    return bill_


def cheapest_start(
    tariff: Tariff | CompiledTariff,
    tz: ZoneInfo,
    now: datetime,
    energy_kwh: float | int | Decimal | str,
    power_kw: float | int | Decimal | str,
    within_h: float | int = 24,
    step_minutes: int = 15,
) -> CheapestStart:
    """The start in ``[now, now + within_h]`` with the lowest quoted total (earliest on ties).

    Candidates: now, the window end, every multiple of ``step_minutes`` (UTC-aligned, which
    is wall-clock aligned in every zone with a whole-quarter-hour offset), every band edge
    ``b`` and ``b − duration`` rounded down to the minute (finish as a cheap band ends).
    Without step_size rounding the quoted cost is piecewise linear in the start time with
    breaks exactly there, so band-aligned optima are found to the minute.
    """
    if not 0 < within_h <= 168:
        raise ValueError("within_h must be in (0, 168]")
    if step_minutes <= 0:
        raise ValueError("step_minutes must be positive")
    ct = compile_tariff(tariff)
    power = _to_fraction(power_kw, "power_kw")
    if power <= 0:
        raise ValueError("power_kw must be positive")
    kwh = _to_fraction(energy_kwh, "energy_kwh")
    if kwh < 0:
        raise ValueError("energy_kwh must not be negative")
    wh_exact = kwh * 1000
    wh = _half_up_div(wh_exact.numerator, wh_exact.denominator)
    dur_exact = Fraction(wh * 3_600_000) / power
    dur = -((-dur_exact.numerator) // dur_exact.denominator)
    s0 = _us(now)
    s1 = s0 + round(Fraction(within_h) * HOUR_US)
    step = step_minutes * MINUTE_US
    cands = {s0, s1}
    cands.update(range(-(-s0 // step) * step, s1 + 1, step))
    starts, _ids = ct.calendar(tz).segments(s0, s1 + dur + 1)
    for b in starts[1:]:
        for c in (b, (b - dur) // MINUTE_US * MINUTE_US):
            if s0 <= c <= s1:
                cands.add(c)
    best_at = s0
    now_total = best_total = _quote_us(ct, tz, s0, power, wh, None).total_minor
    for c in sorted(cands):
        if c == s0:
            continue
        total = _quote_us(ct, tz, c, power, wh, None).total_minor
        if total < best_total:
            best_total, best_at = total, c
    return CheapestStart(
        start_at=now.astimezone(UTC) if best_at == s0 else _dt(best_at),
        total_minor=best_total,
        saving_minor_vs_now=now_total - best_total,
    )


def _display_prices(
    cal: _Calendar, sid: int, power: Fraction | None
) -> tuple[str | None, str | None, str | None, str | None]:
    sel = cal.display(sid, power)
    e, t, p, f = (x.price if x is not None else None for x in sel)
    return e, t, f, p


def price_at(
    tariff: Tariff | CompiledTariff,
    at: datetime,
    tz: ZoneInfo,
    *,
    power_kw: float | int | Decimal | None = None,
) -> PriceNow:
    """The prices a session starting at ``at`` pays first, and ``valid_until``: the next
    instant the displayed selection changes (None if it does not within 8 days)."""
    ct = compile_tariff(tariff)
    cal = ct.calendar(tz)
    power = None if power_kw is None else _exact(power_kw)
    s = _us(at)
    starts, ids = cal.segments(s, s + _DISPLAY_HORIZON_US)
    first = cal.display(ids[0], power)
    valid_until = None
    for j in range(1, len(starts)):
        if cal.display(ids[j], power) != first:
            valid_until = _dt(starts[j])
            break
    energy, time_, flat, idle = _display_prices(cal, ids[0], power)
    return PriceNow(
        tariff_id=ct.tariff.tariff_id,
        currency=ct.currency,
        energy_per_kwh=energy,
        time_per_hour=time_,
        flat=flat,
        idle_per_hour=idle,
        vat_percent=ct.tariff.vat_percent,
        valid_until=valid_until,
    )


def bands(
    tariff: Tariff | CompiledTariff,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    *,
    power_kw: float | int | Decimal | None = None,
) -> list[Band]:
    """Consecutive ``[from, to)`` intervals covering ``[start, end)`` over which the
    displayed element of every dimension is constant (``price_timeline``, admin timeline)."""
    ct = compile_tariff(tariff)
    cal = ct.calendar(tz)
    power = None if power_kw is None else _exact(power_kw)
    s, e = _us(start), _us(end)
    if e <= s:
        return []
    starts, ids = cal.segments(s, e)
    out: list[Band] = []
    prev: tuple[_Price | None, ...] | None = None
    cut: list[tuple[int, int]] = []
    for a, sid in zip(starts, ids, strict=True):
        sel = cal.display(sid, power)
        if sel != prev:
            cut.append((a, sid))
            prev = sel
    for j, (a, sid) in enumerate(cut):
        b = cut[j + 1][0] if j + 1 < len(cut) else e
        energy, time_, flat, idle = _display_prices(cal, sid, power)
        out.append(
            Band(
                from_=_dt(a),
                to=_dt(b),
                energy_per_kwh=energy,
                time_per_hour=time_,
                flat=flat,
                idle_per_hour=idle,
            )
        )
    return out
