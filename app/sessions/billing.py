"""A session's bill, its receipt and how it is paid (pure, no I/O).

The bill is the pricing engine's (`app.pricing.engine.bill`) over the meter readings the
charger reported, with the tariff version the session locked at start:
- energy is the register between the transaction's `meterStart` and `meterStop`; the
  readings in between place it in the bands it was drawn in;
- PARKING_TIME (when the tariff has it) runs from the moment the car stopped drawing
  power while plugged in (``charging_end``) to the end of the transaction.

Chargers report what they like: readings out of order, before the start or after the end,
a register that jumps back, several values at one instant, kWh instead of Wh. They are
made into the engine's series here — inside the transaction, non-decreasing, one per
instant, clipped to [meterStart, meterStop] — so the energy billed always equals
``meterStop − meterStart`` (the session's `energy_wh`).

Payment: the total is captured from the holds in the order they were placed, each at
most its amount; what is left over (the cost ran past every hold before the stop took
effect) is an extra off-session charge, shown as such on the receipt.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec

from app.pricing import engine
from app.pricing.engine import Bill, CompiledTariff, MeterSample
from app.pricing.schemas import QuoteLine, quote_lines
from app.pricing.tariff import Tariff

HOLD_LOW_PERCENT = 90
_ONE_US = timedelta(microseconds=1)


class Reading(msgspec.Struct, frozen=True):
    """One reported value of the energy register (Wh)."""

    at: datetime
    wh: float


class ReceiptPayment(msgspec.Struct, frozen=True, kw_only=True):
    """How (part of) the total was paid: captured from a hold, or charged on top."""

    kind: str  # "hold" | "extra"
    payment_intent_id: str | None
    amount_minor: int


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """The session's bill as the driver sees it; lines as in a quote (excl. VAT)."""

    total_minor: int
    vat_minor: int
    subtotal_minor: int
    currency: str
    lines: list[QuoteLine]
    vat_percent: str
    tariff_id: str
    tariff_version: int
    energy_kwh: float
    payments: list[ReceiptPayment] = []


def series(
    *,
    start_at: datetime,
    meter_start_wh: int,
    readings: Sequence[Reading],
    end_at: datetime | None = None,
    meter_stop_wh: int | None = None,
) -> list[MeterSample]:
    """The register relative to `meterStart` as the engine wants it (see module doc).

    ``end_at``/``meter_stop_wh`` close a finished transaction; for a running one leave
    them out and the last reading holds until "now".
    """
    top = None if meter_stop_wh is None else max(meter_stop_wh, meter_start_wh)
    out: list[MeterSample] = [MeterSample(at=start_at, energy_wh=0)]
    level = 0
    for r in sorted(readings, key=lambda r: (r.at, r.wh)):
        if r.at <= start_at or (end_at is not None and r.at >= end_at):
            continue
        wh = max(round(r.wh) - meter_start_wh, level)  # never backwards
        if top is not None:
            wh = min(wh, top - meter_start_wh)
        level = wh
        if out[-1].at == r.at:
            out[-1] = MeterSample(at=r.at, energy_wh=wh)
        else:
            out.append(MeterSample(at=r.at, energy_wh=wh))
    if end_at is not None and top is not None and end_at > start_at:
        out.append(MeterSample(at=end_at, energy_wh=top - meter_start_wh))
    return out


def bill_session(
    tariff: Tariff | CompiledTariff,
    tz: ZoneInfo,
    *,
    start_at: datetime,
    meter_start_wh: int,
    readings: Sequence[Reading],
    end_at: datetime,
    meter_stop_wh: int | None,
    charging_end: datetime | None,
) -> Bill:
    """The bill of a session from ``start_at`` to ``end_at`` (a finished one when
    ``meter_stop_wh`` is given; else the running cost at ``end_at``)."""
    if meter_stop_wh is not None:
        # a transaction that stopped at its start instant still delivered its energy
        end_at = max(end_at, start_at + _ONE_US)
    samples = series(
        start_at=start_at,
        meter_start_wh=meter_start_wh,
        readings=readings,
        end_at=end_at if meter_stop_wh is not None else None,
        meter_stop_wh=meter_stop_wh,
    )
    if meter_stop_wh is None:
        # running: "now" is at least the latest reading (a charger's clock may run ahead)
        end_at = max(end_at, samples[-1].at)
    if charging_end is not None:
        charging_end = min(max(charging_end, start_at), end_at)
    return engine.bill(
        tariff,
        tz,
        samples,
        session_start=start_at,
        charging_end=charging_end,
        session_end=end_at,
    )


def receipt(bill: Bill, *, energy_wh: int, payments: Sequence[ReceiptPayment] = ()) -> Receipt:
    return Receipt(
        total_minor=bill.total_minor,
        vat_minor=bill.vat_minor,
        subtotal_minor=bill.subtotal_minor,
        currency=bill.currency,
        lines=quote_lines(bill),
        vat_percent=bill.vat_percent,
        tariff_id=bill.tariff_id,
        tariff_version=bill.tariff_version,
        energy_kwh=round(energy_wh / 1000, 3),
        payments=list(payments),
    )


def split_capture(
    total_minor: int, holds: Sequence[tuple[str, int]]
) -> tuple[list[tuple[str, int]], int]:
    """How much to capture from each hold ``(payment_intent_id, amount)``, in order, and
    the extra to charge on top. A hold captured for 0 is to be cancelled."""
    left = max(total_minor, 0)
    out: list[tuple[str, int]] = []
    for pi, amount in holds:
        take = min(left, max(amount, 0))
        out.append((pi, take))
        left -= take
    return out, left


def hold_low(cost_minor: int, authorised_minor: int, percent: int = HOLD_LOW_PERCENT) -> bool:
    """The running cost has reached ``percent`` % of what is authorised."""
    return authorised_minor > 0 and cost_minor * 100 >= authorised_minor * percent
