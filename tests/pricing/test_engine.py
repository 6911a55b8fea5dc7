"""The tariff engine: worked examples (OCPI 2.2.1 included) and property tests against a
brute-force reference written independently below."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.pricing.engine import (
    Bill,
    MeterSample,
    _bill_us,
    _samples,
    _us,
    bands,
    bill,
    cheapest_start,
    compile_tariff,
    price_at,
    quote,
)
from app.pricing.tariff import (
    CURRENCY_EXPONENTS,
    PriceComponent,
    Tariff,
    TariffElement,
    TariffRestrictions,
    validate_tariff,
)

BERLIN = ZoneInfo("Europe/Berlin")
ONE_US = timedelta(microseconds=1)
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")


# --------------------------------------------------------------------------- builders


def element(components: dict[str, str | tuple[str, int]], **restrictions: Any) -> TariffElement:
    pcs = []
    for kind, spec in components.items():
        price, step = (spec, 1) if isinstance(spec, str) else spec
        pcs.append(PriceComponent(type=kind, price=price, step_size=step))  # type: ignore[arg-type]
    r = TariffRestrictions(**restrictions) if restrictions else None
    return TariffElement(price_components=pcs, restrictions=r)


def tariff(*elements: TariffElement, currency: str = "EUR", vat: str = "19") -> Tariff:
    t = Tariff(
        tariff_id="t", version=1, currency=currency, vat_percent=vat, elements=list(elements)
    )
    assert validate_tariff(t) == []
    return t


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: ZoneInfo = BERLIN) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


def steady(start: datetime, end: datetime, kw: float, every_min: int = 15) -> list[MeterSample]:
    """Samples of a constant-power charge from start to end (register starts at 1000 Wh)."""
    out = []
    t = start
    while t < end:
        out.append(MeterSample(t, 1000 + round(kw * (t - start).total_seconds() / 3.6)))
        t += timedelta(minutes=every_min)
    out.append(MeterSample(end, 1000 + round(kw * (end - start).total_seconds() / 3.6)))
    return out


def summary(b: Bill) -> list[tuple[str, str, str, str, str, int]]:
    return [
        (
            ln.component,
            ln.band_from.astimezone(BERLIN).strftime("%H:%M"),
            ln.band_to.astimezone(BERLIN).strftime("%H:%M"),
            str(ln.quantity),
            ln.unit_price,
            ln.amount_minor,
        )
        for ln in b.lines
    ]


def run(t: Tariff, samples: list[MeterSample], start: datetime, end: datetime, **kw: Any) -> Bill:
    charging_end = kw.pop("charging_end", end)
    tz = kw.pop("tz", BERLIN)
    return bill(
        t, tz, samples, session_start=start, charging_end=charging_end, session_end=end, **kw
    )


# --------------------------------------------------------------------------- examples

PEAK = tariff(
    element({"ENERGY": "0.5000"}, start_time="17:00", end_time="21:00"),
    element({"ENERGY": "0.3000"}),
)


def test_session_split_across_peak_boundary() -> None:
    start, end = local(2025, 6, 2, 16, 30), local(2025, 6, 2, 17, 30)
    b = run(PEAK, steady(start, end, 22), start, end)
    assert summary(b) == [
        ("ENERGY", "16:30", "17:00", "11.000", "0.3000", 330),
        ("ENERGY", "17:00", "17:30", "11.000", "0.5000", 550),
    ]
    assert (b.subtotal_minor, b.vat_minor, b.total_minor) == (880, 167, 1047)
    assert b.currency == "EUR"
    assert b.lines[0].band_from == start  # returned in UTC, same instant
    assert b.lines[0].band_from.tzinfo is UTC


def test_energy_interpolated_across_boundary_between_samples() -> None:
    # One sample before and one after the boundary: 40 min, 10 kWh, boundary after 30 min.
    start, end = local(2025, 6, 2, 16, 30), local(2025, 6, 2, 17, 10)
    b = run(PEAK, [MeterSample(start, 0), MeterSample(end, 10_000)], start, end)
    assert summary(b) == [
        ("ENERGY", "16:30", "17:00", "7.500", "0.3000", 225),
        ("ENERGY", "17:00", "17:10", "2.500", "0.5000", 125),
    ]


def test_night_band_wraps_past_midnight() -> None:
    t = tariff(
        element({"TIME": "1.20"}, start_time="22:00", end_time="06:00"),
        element({"TIME": "3.00"}),
    )
    start, end = local(2025, 6, 2, 21, 0), local(2025, 6, 3, 7, 0)
    b = run(t, [], start, end)
    assert summary(b) == [
        ("TIME", "21:00", "22:00", "1.000000", "3.00", 300),
        ("TIME", "22:00", "06:00", "8.000000", "1.20", 960),
        ("TIME", "06:00", "07:00", "1.000000", "3.00", 300),
    ]


def test_end_time_midnight_means_end_of_day() -> None:
    t = tariff(
        element({"TIME": "2.00"}, start_time="18:00", end_time="00:00"),
        element({"TIME": "1.00"}),
    )
    start, end = local(2025, 6, 2, 17, 0), local(2025, 6, 3, 1, 0)
    b = run(t, [], start, end)
    assert [(ln[1], ln[2], ln[4]) for ln in summary(b)] == [
        ("17:00", "18:00", "1.00"),
        ("18:00", "00:00", "2.00"),
        ("00:00", "01:00", "1.00"),
    ]


def test_day_of_week() -> None:
    t = tariff(
        element({"ENERGY": "0.2000"}, day_of_week=["SATURDAY", "SUNDAY"]),
        element({"ENERGY": "0.4000"}),
    )
    # Friday 2025-06-06 23:00 → Saturday 01:00, 10 kW.
    start, end = local(2025, 6, 6, 23, 0), local(2025, 6, 7, 1, 0)
    b = run(t, steady(start, end, 10), start, end)
    assert summary(b) == [
        ("ENERGY", "23:00", "00:00", "10.000", "0.4000", 400),
        ("ENERGY", "00:00", "01:00", "10.000", "0.2000", 200),
    ]


def test_date_range_end_is_exclusive() -> None:
    t = tariff(
        element({"ENERGY": "0.1000"}, start_date="2025-06-01", end_date="2025-06-02"),
        element({"ENERGY": "0.3000"}),
    )
    start, end = local(2025, 5, 31, 23, 30), local(2025, 6, 2, 0, 30)
    b = run(t, steady(start, end, 1, every_min=30), start, end)
    assert [(ln[1], ln[2], ln[3], ln[4]) for ln in summary(b)] == [
        ("23:30", "00:00", "0.500", "0.3000"),
        ("00:00", "00:00", "24.000", "0.1000"),
        ("00:00", "00:30", "0.500", "0.3000"),
    ]
    assert [ln.band_to - ln.band_from for ln in b.lines][1] == timedelta(hours=24)


def test_dst_spring_forward_berlin() -> None:
    # 2025-03-30: 02:00 CET jumps to 03:00 CEST. A 02:30–03:30 band starts at the jump.
    t = tariff(
        element({"TIME": "12.00"}, start_time="02:30", end_time="03:30"),
        element({"TIME": "6.00"}),
    )
    start = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)  # 01:30 CET
    end = datetime(2025, 3, 30, 2, 0, tzinfo=UTC)  # 04:00 CEST
    b = run(t, [], start, end)
    assert [(ln.band_from.strftime("%H:%M"), ln.band_to.strftime("%H:%M")) for ln in b.lines] == [
        ("00:30", "01:00"),
        ("01:00", "01:30"),
        ("01:30", "02:00"),
    ]
    assert [ln.amount_minor for ln in b.lines] == [300, 600, 300]
    # 1.5 real hours although the wall clock moved 2.5 hours.
    assert sum((ln.quantity for ln in b.lines), Decimal(0)) == Decimal("1.5")
    timeline = bands(t, start, end, BERLIN)
    assert [(x.from_.strftime("%H:%M"), x.time_per_hour) for x in timeline] == [
        ("00:30", "6.00"),
        ("01:00", "12.00"),
        ("01:30", "6.00"),
    ]


def test_dst_fall_back_berlin_band_happens_twice() -> None:
    # 2025-10-26: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    t = tariff(
        element({"TIME": "12.00"}, start_time="02:30", end_time="06:00"),
        element({"TIME": "6.00"}),
    )
    start = datetime(2025, 10, 26, 0, 0, tzinfo=UTC)  # 02:00 CEST
    end = datetime(2025, 10, 26, 2, 0, tzinfo=UTC)  # 03:00 CET
    b = run(t, [], start, end)
    assert [
        (ln.band_from.strftime("%H:%M"), ln.band_to.strftime("%H:%M"), ln.unit_price)
        for ln in b.lines
    ] == [
        ("00:00", "00:30", "6.00"),
        ("00:30", "01:00", "12.00"),  # 02:30–03:00 CEST
        ("01:00", "01:30", "6.00"),  # 02:00–02:30 CET, the repeated half hour
        ("01:30", "02:00", "12.00"),  # 02:30–03:00 CET
    ]
    assert b.subtotal_minor == 300 + 600 + 300 + 600


def test_dst_days_have_23_and_25_hours() -> None:
    # A 00:00–23:00 local band lasts 22 real hours on 30 March and 24 on 26 October.
    t = tariff(
        element({"TIME": "1.00"}, start_time="00:00", end_time="23:00"),
        element({"TIME": "2.00"}),
    )
    for day, hours in (
        (local(2025, 3, 30), 22),
        (local(2025, 6, 2), 23),
        (local(2025, 10, 26), 24),
    ):
        got = bands(t, day, day + timedelta(days=1), BERLIN)
        assert got[0].to - got[0].from_ == timedelta(hours=hours)
        assert got[0].time_per_hour == "1.00"


def test_ocpi_step_size_switching_elements_example_2() -> None:
    # OCPI 2.2.1 "switching to different Tariff Element #2": 16:35, 35 min charging → 1.30.
    t = tariff(
        element({"TIME": ("1.20", 1800)}, end_time="17:00"),
        element({"TIME": ("2.40", 900)}, start_time="17:00", end_time="20:00"),
        element({"PARKING_TIME": ("1.00", 900)}, end_time="20:00"),
    )
    start, end = local(2025, 6, 2, 16, 35), local(2025, 6, 2, 17, 10)
    b = run(t, [], start, end)
    assert summary(b) == [
        ("TIME", "16:35", "17:00", "0.416667", "1.20", 50),
        ("TIME", "17:00", "17:10", "0.333333", "2.40", 80),
    ]
    assert b.subtotal_minor == 130


def test_step_size_parking_and_energy() -> None:
    t = tariff(
        element(
            {"ENERGY": ("0.25", 100), "FLAT": "0.50", "PARKING_TIME": ("2.00", 900)},
        ),
    )
    start = local(2025, 6, 2, 10, 0)
    charging_end, end = start + timedelta(hours=1), start + timedelta(hours=1, minutes=40)
    samples = [MeterSample(start, 5_000), MeterSample(charging_end, 25_450)]
    b = run(t, samples, start, end, charging_end=charging_end)
    assert summary(b) == [
        ("FLAT", "10:00", "11:40", "1", "0.50", 50),
        ("ENERGY", "10:00", "11:40", "20.500", "0.25", 513),  # 20.45 kWh billed per 0.1 kWh
        ("PARKING_TIME", "11:00", "11:40", "0.750000", "2.00", 150),  # 40 → 45 minutes
    ]


def test_step_size_rounds_last_line_only() -> None:
    t = tariff(
        element({"ENERGY": ("0.3000", 1000)}, start_time="17:00"),
        element({"ENERGY": ("0.2000", 1)}),
    )
    start, end = local(2025, 6, 2, 16, 0), local(2025, 6, 2, 17, 30)
    samples = [MeterSample(start, 0), MeterSample(end, 1500)]
    b = run(t, samples, start, end)
    # 1000 Wh before 17:00, 500 Wh after; the total 1500 → 2000 Wh (last step 1000 Wh).
    assert [ln[3] for ln in summary(b)] == ["1.000", "1.000"]


def test_vat_rounds_half_up() -> None:
    t = tariff(element({"FLAT": "2.50"}), vat="19")
    start = local(2025, 6, 2, 10, 0)
    b = run(t, [], start, start)
    assert (b.subtotal_minor, b.vat_minor, b.total_minor) == (250, 48, 298)  # 47.5 → 48
    t = tariff(element({"FLAT": "0.10"}), vat="5")
    b = run(t, [], start, start)
    assert b.vat_minor == 1  # 0.5 → 1


def test_line_amount_rounds_half_up() -> None:
    t = tariff(element({"ENERGY": "0.0050"}), vat="0")
    start = local(2025, 6, 2, 10, 0)
    b = run(
        t,
        [MeterSample(start, 0), MeterSample(start + timedelta(hours=1), 1000)],
        start,
        start + timedelta(hours=1),
    )
    assert b.lines[0].amount_minor == 1  # 0.5 cent → 1
    assert b.vat_minor == 0


def test_jpy_has_no_minor_unit() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    t = tariff(element({"ENERGY": "45", "FLAT": "100"}), currency="JPY", vat="10")
    start = local(2025, 6, 2, 10, 0, tz=tokyo)
    end = start + timedelta(hours=1)
    b = run(t, [MeterSample(start, 0), MeterSample(end, 10_500)], start, end, tz=tokyo)
    assert [ln.amount_minor for ln in b.lines] == [100, 473]  # 472.5 → 473 yen
    assert (b.subtotal_minor, b.vat_minor, b.total_minor) == (573, 57, 630)


def test_three_decimal_currency() -> None:
    t = tariff(element({"ENERGY": "0.0125"}), currency="KWD", vat="0")
    start = local(2025, 6, 2, 10, 0)
    end = start + timedelta(hours=1)
    b = run(t, [MeterSample(start, 0), MeterSample(end, 10_100)], start, end)
    assert b.lines[0].amount_minor == 126  # 0.12625 KWD → 126 fils


def test_fallback_element_and_unpriced_dimension() -> None:
    t = tariff(
        element({"ENERGY": "0.5000", "TIME": "2.00"}, day_of_week=["SUNDAY"]),
        element({"ENERGY": "0.3000"}),
    )
    start, end = local(2025, 6, 2, 10, 0), local(2025, 6, 2, 11, 0)  # Monday
    b = run(t, steady(start, end, 10), start, end)
    # Monday: the ENERGY fallback applies; no element prices TIME, so time is free.
    assert summary(b) == [("ENERGY", "10:00", "11:00", "10.000", "0.3000", 300)]


def test_free_of_charge_tariff_keeps_a_zero_flat_line() -> None:
    t = tariff(element({"FLAT": "0.00"}))
    start, end = local(2025, 6, 2, 10, 0), local(2025, 6, 2, 11, 0)
    b = run(t, steady(start, end, 10), start, end)
    assert summary(b) == [("FLAT", "10:00", "11:00", "1", "0.00", 0)]
    assert b.total_minor == 0


def test_ocpi_max_power_example() -> None:
    # OCPI 2.2.1: 1 kWh at 6 kW, 40 kWh at 48 kW, 0.5 kWh at 4 kW → 20.30 euro.
    t = tariff(
        element({"ENERGY": "0.20"}, max_power=16.00),
        element({"ENERGY": "0.35"}, max_power=32.00),
        element({"ENERGY": "0.50"}),
    )
    start = local(2025, 6, 2, 10, 0)
    t1 = start + timedelta(minutes=10)  # 1 kWh at 6 kW
    t2 = t1 + timedelta(minutes=50)  # 40 kWh at 48 kW
    t3 = t2 + timedelta(minutes=7, seconds=30)  # 0.5 kWh at 4 kW
    samples = [
        MeterSample(start, 0),
        MeterSample(t1, 1000),
        MeterSample(t2, 41_000),
        MeterSample(t3, 41_500),
    ]
    b = run(t, samples, start, t3)
    assert [(ln.quantity, ln.unit_price, ln.amount_minor) for ln in b.lines] == [
        (Decimal("1.000"), "0.20", 20),
        (Decimal("40.000"), "0.50", 2000),
        (Decimal("0.500"), "0.20", 10),
    ]
    assert b.subtotal_minor == 2030


def test_power_and_energy_limits_are_min_inclusive_max_exclusive() -> None:
    t = tariff(
        element({"ENERGY": "0.10"}, max_power=22),
        element({"ENERGY": "0.20"}, min_power=11, max_kwh=1.1),
        element({"ENERGY": "0.30"}),
    )
    start = local(2025, 6, 2, 10, 0)
    at = [start + timedelta(minutes=m) for m in (0, 3, 9, 15)]
    # exactly 22 kW, then exactly 11 kW (crossing exactly 1.1 kWh at its start), then 2 kW
    samples = [
        MeterSample(at[0], 0),
        MeterSample(at[1], 1100),
        MeterSample(at[2], 2200),
        MeterSample(at[3], 2400),
    ]
    b = run(t, samples, start, at[3])
    assert [(str(ln.quantity), ln.unit_price) for ln in b.lines] == [
        ("1.100", "0.20"),  # 22 kW: not < 22, but ≥ 11 and energy so far < 1.1 kWh
        ("1.300", "0.10"),  # 11 kW from exactly 1.1 kWh (max_kwh excluded), then 2 kW
    ]


def test_ocpi_max_duration_example() -> None:
    # Free for 30 min, 0.25/kWh until 60 min, then 0.40: 5 kWh + 1.2 kWh in 40 min → 0.30.
    t = tariff(
        element({"ENERGY": "0.00"}, max_duration=1800),
        element({"ENERGY": "0.25"}, max_duration=3600),
        element({"ENERGY": "0.40"}),
    )
    start = local(2025, 6, 2, 10, 0)
    samples = [
        MeterSample(start, 0),
        MeterSample(start + timedelta(minutes=30), 5000),
        MeterSample(start + timedelta(minutes=40), 6200),
    ]
    b = run(t, samples, start, start + timedelta(minutes=40))
    assert [ln.amount_minor for ln in b.lines] == [0, 30]
    assert b.subtotal_minor == 30


def test_first_kwh_free_splits_inside_a_sample_interval() -> None:
    # OCPI "first hour free energy" example, energy part: the first kWh free, then 0.20.
    t = tariff(
        element({"ENERGY": "0.00"}, max_kwh=1.0),
        element({"ENERGY": "0.20"}),
    )
    start = local(2025, 6, 2, 10, 0)
    end = start + timedelta(hours=2)
    b = run(t, [MeterSample(start, 7_777), MeterSample(end, 27_777)], start, end)
    assert [(ln.quantity, ln.amount_minor) for ln in b.lines] == [
        (Decimal("1.000"), 0),
        (Decimal("19.000"), 380),
    ]
    # 1 kWh of 20 at a steady 10 kW: the switch is 6 minutes in.
    assert b.lines[0].band_to - start == timedelta(minutes=6)


def test_kwh_restricted_parking_and_min_duration() -> None:
    # OCPI "first hour of parking free, 2.00/h until 4 h, then 3.00/h" (durations from start).
    t = tariff(
        element({"PARKING_TIME": ("3.00", 60)}, min_duration=4 * 3600),
        element({"PARKING_TIME": ("2.00", 60)}, min_duration=3600),
        element({"ENERGY": "0.20"}),
    )
    start = local(2025, 6, 2, 10, 0)
    charging_end = start + timedelta(minutes=30)
    end = start + timedelta(hours=4, minutes=30)
    b = run(
        t,
        [MeterSample(start, 0), MeterSample(charging_end, 20_000)],
        start,
        end,
        charging_end=charging_end,
    )
    assert summary(b) == [
        ("ENERGY", "10:00", "14:30", "20.000", "0.20", 400),
        ("PARKING_TIME", "11:00", "14:00", "3.000000", "2.00", 600),
        ("PARKING_TIME", "14:00", "14:30", "0.500000", "3.00", 150),
    ]


def test_flat_decided_at_session_start() -> None:
    t = tariff(
        element({"FLAT": "1.00"}, start_time="08:00", end_time="20:00"),
        element({"FLAT": "0.50", "ENERGY": "0.30"}),
    )
    for hour, flat in ((7, "0.50"), (8, "1.00")):
        start = local(2025, 6, 2, hour, 50)
        end = start + timedelta(hours=1)
        b = run(t, steady(start, end, 5), start, end)
        assert b.lines[0].component == "FLAT"
        assert b.lines[0].unit_price == flat
        assert sum(1 for ln in b.lines if ln.component == "FLAT") == 1


def test_samples_outside_the_session_are_not_billed() -> None:
    t = tariff(element({"ENERGY": "1.00"}), vat="0")
    start, end = local(2025, 6, 2, 10, 0), local(2025, 6, 2, 11, 0)
    samples = [
        MeterSample(start - timedelta(hours=1), 0),
        MeterSample(end + timedelta(hours=1), 3000),
    ]
    b = run(t, samples, start, end)
    assert b.lines[0].quantity == Decimal("1.000")  # the middle third of a straight line


def test_bad_samples_are_rejected() -> None:
    t = tariff(element({"ENERGY": "1.00"}))
    start, end = local(2025, 6, 2, 10, 0), local(2025, 6, 2, 11, 0)
    with pytest.raises(ValueError, match="time order"):
        run(t, [MeterSample(end, 0), MeterSample(start, 10)], start, end)
    with pytest.raises(ValueError, match="decrease"):
        run(t, [MeterSample(start, 10), MeterSample(end, 0)], start, end)
    with pytest.raises(ValueError, match="same instant"):
        run(t, [MeterSample(start, 10), MeterSample(start, 20)], start, end)
    with pytest.raises(ValueError, match="timezone-aware"):
        run(t, [MeterSample(datetime(2025, 6, 2, 10), 10)], start, end)
    with pytest.raises(ValueError, match="before"):
        run(t, [], end, start)
    dup = run(t, [MeterSample(start, 0), MeterSample(start, 0), MeterSample(end, 500)], start, end)
    assert dup.lines[0].quantity == Decimal("0.500")


def test_price_at_and_valid_until() -> None:
    t = tariff(
        element({"ENERGY": "0.5000"}, start_time="17:00", end_time="21:00"),
        element({"ENERGY": "0.3000", "FLAT": "0.50", "PARKING_TIME": "6.00"}),
        vat="19",
    )
    p = price_at(t, local(2025, 6, 2, 12, 0), BERLIN)
    assert (p.energy_per_kwh, p.time_per_hour, p.flat, p.idle_per_hour) == (
        "0.3000",
        None,
        "0.50",
        "6.00",
    )
    assert p.valid_until == local(2025, 6, 2, 17, 0)
    assert (p.currency, p.vat_percent, p.tariff_id) == ("EUR", "19", "t")
    p = price_at(t, local(2025, 6, 2, 17, 0), BERLIN)
    assert (p.energy_per_kwh, p.valid_until) == ("0.5000", local(2025, 6, 2, 21, 0))
    flat = tariff(element({"ENERGY": "0.3000"}))
    assert price_at(flat, local(2025, 6, 2, 12, 0), BERLIN).valid_until is None


def test_price_display_uses_a_fresh_session() -> None:
    t = tariff(
        element({"ENERGY": "0.00"}, max_duration=1800),
        element({"ENERGY": "0.20"}, max_power=16),
        element({"ENERGY": "0.50"}),
    )
    at = local(2025, 6, 2, 12, 0)
    assert price_at(t, at, BERLIN).energy_per_kwh == "0.00"
    t = tariff(element({"ENERGY": "0.20"}, max_power=16), element({"ENERGY": "0.50"}))
    assert price_at(t, at, BERLIN).energy_per_kwh == "0.50"  # unknown power: no power element
    assert price_at(t, at, BERLIN, power_kw=11).energy_per_kwh == "0.20"
    assert price_at(t, at, BERLIN, power_kw=50).energy_per_kwh == "0.50"


def test_bands_over_a_day() -> None:
    t = tariff(
        element({"ENERGY": "0.2000"}, start_time="00:00", end_time="07:00"),
        element({"ENERGY": "0.5000"}, start_time="17:00", end_time="21:00"),
        element({"ENERGY": "0.3000"}),
    )
    got = bands(t, local(2025, 6, 2, 5, 0), local(2025, 6, 3, 5, 0), BERLIN)
    assert [(b.from_.astimezone(BERLIN).strftime("%H:%M"), b.energy_per_kwh) for b in got] == [
        ("05:00", "0.2000"),
        ("07:00", "0.3000"),
        ("17:00", "0.5000"),
        ("21:00", "0.3000"),
        ("00:00", "0.2000"),
    ]
    assert got[-1].to == local(2025, 6, 3, 5, 0)
    assert all(a.to == b.from_ for a, b in itertools.pairwise(got))

    assert b'"from":' in msgspec.json.encode(got[0])


def test_quote_by_energy_and_by_duration() -> None:
    start = local(2025, 6, 2, 16, 0)
    b = quote(PEAK, BERLIN, start_at=start, power_kw=11, energy_kwh=22)
    assert summary(b) == [
        ("ENERGY", "16:00", "17:00", "11.000", "0.3000", 330),
        ("ENERGY", "17:00", "18:00", "11.000", "0.5000", 550),
    ]
    assert b.total_minor == 880 + 167
    assert quote(PEAK, BERLIN, start_at=start, power_kw=11, duration_min=120) == b
    zero = quote(PEAK, BERLIN, start_at=start, power_kw=11, energy_kwh=0)
    assert zero.lines == []
    assert zero.total_minor == 0
    with pytest.raises(ValueError, match="exactly one"):
        quote(PEAK, BERLIN, start_at=start, power_kw=11)
    with pytest.raises(ValueError, match="positive"):
        quote(PEAK, BERLIN, start_at=start, power_kw=0, energy_kwh=1)


def test_cheapest_start() -> None:
    t = tariff(
        element({"ENERGY": "0.2000"}, start_time="00:00", end_time="06:00"),
        element({"ENERGY": "0.5000"}, start_time="17:00", end_time="21:00"),
        element({"ENERGY": "0.3000"}),
        vat="0",
    )
    now = local(2025, 6, 2, 16, 7)
    best = cheapest_start(t, BERLIN, now, energy_kwh=20, power_kw=10, within_h=24)
    # 2 h at 10 kW fits entirely in the night band: start at 00:00.
    assert best.start_at == local(2025, 6, 3, 0, 0)
    assert best.total_minor == 400
    now_total = quote(t, BERLIN, start_at=now, power_kw=10, energy_kwh=20).total_minor
    assert best.saving_minor_vs_now == now_total - 400
    # Within 3 h there is no night: the cheapest is to finish before the peak, i.e. now.
    short = cheapest_start(t, BERLIN, now, energy_kwh=20, power_kw=10, within_h=3)
    assert short.start_at == now
    assert short.saving_minor_vs_now == 0
    # At 20:00 with a 2 h window, waiting for the end of the peak band is cheapest.
    late = cheapest_start(
        t, BERLIN, local(2025, 6, 2, 20, 0), energy_kwh=10, power_kw=10, within_h=2
    )
    assert late.start_at == local(2025, 6, 2, 21, 0)


def test_compile_cache_follows_the_object() -> None:
    t1 = tariff(element({"ENERGY": "0.3000"}))
    assert compile_tariff(t1) is compile_tariff(t1)
    assert compile_tariff(compile_tariff(t1)) is compile_tariff(t1)


# --------------------------------------------------------------------------- validation


def test_validate_tariff_reports_every_problem() -> None:
    bad = Tariff(
        tariff_id="x",
        version=0,
        currency="EUX",
        vat_percent="-5",
        elements=[
            TariffElement(
                price_components=[
                    PriceComponent(type="ENERGY", price="-0.10"),
                    PriceComponent(type="ENERGY", price="0.1"),
                    PriceComponent(type="TIME", price="abc", step_size=-1),
                    PriceComponent(type="FLAT", price="0.1234567"),
                ],
                restrictions=TariffRestrictions(
                    start_time="25:00",
                    end_time="7:00",
                    start_date="2025-02-30",
                    end_date="2025-13-01",
                    day_of_week=["MONDAY", "MONDAY"],
                    min_kwh=10,
                    max_kwh=5,
                    min_power=-1,
                    max_power=float("nan"),
                    min_duration=600,
                    max_duration=600,
                ),
            ),
            TariffElement(price_components=[]),
        ],
    )
    fields = {f for f, _ in validate_tariff(bad)}
    r = "elements[0].restrictions"
    pc = "elements[0].price_components"
    assert fields == {
        "currency",
        "vat_percent",
        "version",
        f"{pc}[0].price",
        f"{pc}[1].type",
        f"{pc}[2].price",
        f"{pc}[2].step_size",
        f"{pc}[3].price",
        f"{r}.start_time",
        f"{r}.end_time",
        f"{r}.start_date",
        f"{r}.end_date",
        f"{r}.day_of_week[1]",
        f"{r}.max_kwh",
        f"{r}.min_power",
        f"{r}.max_power",
        f"{r}.max_duration",
        "elements[1].price_components",
    }
    messages = dict(validate_tariff(bad))
    assert "ISO 4217" in messages["currency"]
    assert "negative" in messages[f"{pc}[0].price"]
    assert "HH:MM" in messages[f"{r}.start_time"]


def test_validate_tariff_edge_cases() -> None:
    empty = Tariff(tariff_id="x", version=1, currency="EUR", vat_percent="19", elements=[])
    assert validate_tariff(empty) == [("elements", "at least one tariff element is required")]
    nothing = Tariff(
        tariff_id="x",
        version=1,
        currency="EUR",
        vat_percent="19",
        elements=[TariffElement(price_components=[])],
    )
    assert ("elements", "no element prices anything (ENERGY, TIME, FLAT, ...)") in (
        validate_tariff(nothing)
    )
    same = element({"TIME": "1"}, start_time="10:00", end_time="10:00")
    assert validate_tariff(tariff_unchecked(same)) == [
        ("elements[0].restrictions.end_time", "must differ from start_time (omit both for all day)")
    ]
    dates = element({"TIME": "1"}, start_date="2025-06-02", end_date="2025-06-02")
    assert [f for f, _ in validate_tariff(tariff_unchecked(dates))] == [
        "elements[0].restrictions.end_date"
    ]
    assert validate_tariff(tariff_unchecked(element({"TIME": "1"}), vat="100.5"))
    assert not validate_tariff(tariff_unchecked(element({"TIME": "1"}), vat="7.7"))
    for code, exp in (
        ("EUR", 2),
        ("GBP", 2),
        ("USD", 2),
        ("CHF", 2),
        ("SEK", 2),
        ("NOK", 2),
        ("DKK", 2),
        ("PLN", 2),
        ("CZK", 2),
        ("HUF", 2),
        ("JPY", 0),
        ("KWD", 3),
    ):
        assert CURRENCY_EXPONENTS[code] == exp


def tariff_unchecked(*elements: TariffElement, vat: str = "19") -> Tariff:
    return Tariff(
        tariff_id="t", version=1, currency="EUR", vat_percent=vat, elements=list(elements)
    )


def test_tariff_decodes_from_api_json() -> None:

    raw = b"""{"tariff_id": "t", "version": 2, "currency": "EUR", "vat_percent": "19",
      "elements": [{"price_components": [{"type": "ENERGY", "price": "0.39", "step_size": 1}],
                    "restrictions": {"start_time": "17:00", "end_time": "21:00",
                                     "day_of_week": ["MONDAY"], "min_kwh": 0.5,
                                     "max_power": 22, "min_duration": 60}}]}"""
    t = msgspec.json.decode(raw, type=Tariff)
    assert validate_tariff(t) == []
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw.replace(b'"MONDAY"', b'"MONDAYS"'), type=Tariff)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw.replace(b'"min_kwh"', b'"min_kWh"'), type=Tariff)


# =========================================================================== reference
#
# An independent, deliberately naive implementation of the rules in the engine's module
# docstring: the session is cut at every whole UTC minute (site offsets are whole minutes,
# so every local HH:MM edge is one), every sample, charging_end, every duration threshold
# and, for energy thresholds, the first microsecond found by bisection where the energy so
# far reaches the threshold. Each restriction is evaluated on the local wall clock with
# strftime and string comparisons; arithmetic is Fraction/Decimal.

US = 1_000_000


def _energy(samples: list[MeterSample], t: datetime) -> Fraction:
    if not samples:
        return Fraction(0)
    if t <= samples[0].at:
        return Fraction(samples[0].energy_wh)
    if t >= samples[-1].at:
        return Fraction(samples[-1].energy_wh)
    for a, b in itertools.pairwise(samples):
        if a.at <= t < b.at:
            return a.energy_wh + Fraction(
                (b.energy_wh - a.energy_wh) * ((t - a.at) // ONE_US), (b.at - a.at) // ONE_US
            )
    raise AssertionError


def _power_kw(samples: list[MeterSample], t: datetime) -> Fraction:
    for a, b in itertools.pairwise(samples):
        if a.at <= t < b.at:
            hours = Fraction((b.at - a.at) // ONE_US, 3600 * US)
            return Fraction(b.energy_wh - a.energy_wh, 1000) / hours
    return Fraction(0)


def _num(x: float) -> Fraction:
    return Fraction(Decimal(repr(x)))


def _matches(
    r: TariffRestrictions | None,
    t: datetime,
    tz: ZoneInfo,
    kwh: Fraction,
    kw: Fraction | None,
    dur: timedelta,
) -> bool:
    if r is None:
        return True
    wall = t.astimezone(tz)
    hhmm = wall.strftime("%H:%M")
    start, end = r.start_time, r.end_time
    if end == "00:00":
        end = "24:00"
    if start is not None and end is not None:
        inside = start <= hhmm < end if start < end else (hhmm >= start or hhmm < end)
        if not inside:
            return False
    elif (start is not None and hhmm < start) or (end is not None and hhmm >= end):
        return False
    day = wall.date().isoformat()
    if r.start_date is not None and day < r.start_date:
        return False
    if r.end_date is not None and day >= r.end_date:
        return False
    if r.day_of_week and DAYS[wall.weekday()] not in r.day_of_week:
        return False
    if r.min_kwh is not None and kwh < _num(r.min_kwh):
        return False
    if r.max_kwh is not None and kwh >= _num(r.max_kwh):
        return False
    if r.min_power is not None and (kw is None or kw < _num(r.min_power)):
        return False
    if r.max_power is not None and (kw is None or kw >= _num(r.max_power)):
        return False
    if r.min_duration is not None and dur < timedelta(seconds=r.min_duration):
        return False
    return not (r.max_duration is not None and dur >= timedelta(seconds=r.max_duration))


def _select(
    t: Tariff,
    kind: str,
    at: datetime,
    tz: ZoneInfo,
    kwh: Fraction,
    kw: Fraction | None,
    dur: timedelta,
) -> tuple[int, PriceComponent] | None:
    for i, el in enumerate(t.elements):
        pcs = [pc for pc in el.price_components if pc.type == kind]
        if pcs and _matches(el.restrictions, at, tz, kwh, kw, dur):
            return i, pcs[0]
    return None


def _half_up(x: Fraction) -> int:
    return (x + Fraction(1, 2)).__floor__()


def reference_bill(
    t: Tariff, tz: ZoneInfo, samples: list[MeterSample], s: datetime, ce: datetime, e: datetime
) -> tuple[list[tuple[str, datetime, datetime, Decimal, str, int]], int, int, int]:
    ce = min(max(ce, s), e)
    base = _energy(samples, s)
    cuts = {s, ce}
    minute = s.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute < e:
        cuts.add(minute)
        minute += timedelta(minutes=1)
    cuts.update(smp.at for smp in samples)
    thresholds: set[Fraction] = set()
    for el in t.elements:
        r = el.restrictions
        if r is None:
            continue
        for secs in (r.min_duration, r.max_duration):
            if secs is not None:
                cuts.add(s + timedelta(seconds=secs))
        for limit in (r.min_kwh, r.max_kwh):
            if limit is not None:
                thresholds.add(_num(limit) * 1000)
    total_us = (e - s) // ONE_US
    for thr in thresholds:
        if not 0 < thr <= _energy(samples, e) - base:
            continue
        lo, hi = 0, total_us  # energy(lo) < thr <= energy(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _energy(samples, s + mid * ONE_US) - base >= thr:
                hi = mid
            else:
                lo = mid
        cuts.add(s + hi * ONE_US)
    points = sorted(c for c in cuts if s <= c < e)

    runs: dict[str, list[list[Any]]] = {"ENERGY": [], "TIME": [], "PARKING_TIME": []}
    for i, a in enumerate(points):
        b = points[i + 1] if i + 1 < len(points) else e
        kwh = (_energy(samples, a) - base) / 1000
        kw = _power_kw(samples, a)
        for kind in runs:
            if (kind == "TIME" and a >= ce) or (kind == "PARKING_TIME" and a < ce):
                continue
            chosen = _select(t, kind, a, tz, kwh, kw, a - s)
            if chosen is None:
                continue
            rl = runs[kind]
            if rl and rl[-1][0] == chosen[0] and rl[-1][3] == a:
                rl[-1][3] = b
            else:
                rl.append([chosen[0], chosen[1], a, b])

    exp = CURRENCY_EXPONENTS[t.currency]
    lines: list[tuple[str, datetime, datetime, Decimal, str, int]] = []

    def amount(quantity: Decimal, price: str) -> int:
        with localcontext() as ctx:
            ctx.prec = 60
            return int((quantity * Decimal(price) * 10**exp).quantize(Decimal(1), ROUND_HALF_UP))

    flat = _select(t, "FLAT", s, tz, Fraction(0), _power_kw(samples, s), timedelta(0))
    if flat is not None:
        lines.append(("FLAT", s, e, Decimal(1), flat[1].price, amount(Decimal(1), flat[1].price)))
    for kind, rl in runs.items():
        if kind == "ENERGY":
            qty = [
                _half_up(_energy(samples, b)) - _half_up(_energy(samples, a)) for _, _, a, b in rl
            ]
            step_unit = 1
        else:
            qty = [(b - a) // ONE_US for _, _, a, b in rl]
            step_unit = US
        nonzero = [i for i, q in enumerate(qty) if q > 0]
        if not nonzero:
            continue
        last = nonzero[-1]
        step = rl[last][1].step_size * step_unit
        if step > 1:
            total = sum(qty)
            qty[last] = qty[last] + (-(-total // step)) * step - total
        for i in nonzero:
            _, pc, a, b = rl[i]
            if kind == "ENERGY":
                quantity = Decimal(qty[i]) / 1000
            else:
                quantity = (Decimal(qty[i]) / 3_600_000_000).quantize(
                    Decimal("0.000001"), ROUND_HALF_UP
                )
                if quantity == 0:
                    continue
            lines.append((kind, a, b, quantity, pc.price, amount(quantity, pc.price)))
    subtotal = sum(ln[5] for ln in lines)
    vat = int(
        (Decimal(subtotal) * Decimal(t.vat_percent) / 100).quantize(Decimal(1), ROUND_HALF_UP)
    )
    return lines, subtotal, vat, subtotal + vat


def as_tuple(
    b: Bill,
) -> tuple[list[tuple[str, datetime, datetime, Decimal, str, int]], int, int, int]:
    return (
        [
            (ln.component, ln.band_from, ln.band_to, ln.quantity, ln.unit_price, ln.amount_minor)
            for ln in b.lines
        ],
        b.subtotal_minor,
        b.vat_minor,
        b.total_minor,
    )


# --------------------------------------------------------------------------- strategies

ZONES = [
    BERLIN,
    ZoneInfo("America/New_York"),
    ZoneInfo("Australia/Lord_Howe"),
    ZoneInfo("Asia/Kolkata"),
]
# DST changes (UTC) in Berlin, New York and Lord Howe (a 30 min shift), plus plain days.
ANCHORS = [
    datetime(2025, 3, 30, 1, 0, tzinfo=UTC),
    datetime(2025, 10, 26, 1, 0, tzinfo=UTC),
    datetime(2025, 3, 9, 7, 0, tzinfo=UTC),
    datetime(2025, 11, 2, 6, 0, tzinfo=UTC),
    datetime(2025, 4, 5, 15, 0, tzinfo=UTC),
    datetime(2025, 10, 4, 15, 30, tzinfo=UTC),
    datetime(2025, 6, 6, 21, 0, tzinfo=UTC),
    datetime(2025, 1, 1, 0, 0, tzinfo=UTC),
]
PRICES = ["0", "0.00", "0.1", "0.25", "0.3900", "0.4999", "1.20", "2.5", "12.3456", "0.0005"]
HHMM = st.builds(
    lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 7])
)


@st.composite
def restrictions(draw: st.DrawFn, anchor_day: datetime, session: bool) -> TariffRestrictions | None:
    if draw(st.booleans()):
        return None
    kw: dict[str, Any] = {}
    if draw(st.booleans()):
        start, end = draw(HHMM), draw(HHMM)
        assume(start != end)
        kw["start_time"], kw["end_time"] = start, end
    elif draw(st.booleans()):
        kw[draw(st.sampled_from(["start_time", "end_time"]))] = draw(HHMM)
    if draw(st.integers(0, 4)) == 0:
        d0 = (anchor_day + timedelta(days=draw(st.integers(-1, 1)))).date()
        kw["start_date"] = d0.isoformat()
        kw["end_date"] = (d0 + timedelta(days=draw(st.integers(1, 2)))).isoformat()
    if draw(st.integers(0, 3)) == 0:
        kw["day_of_week"] = draw(
            st.lists(st.sampled_from(DAYS), min_size=1, max_size=4, unique=True)
        )
    if session:
        if draw(st.integers(0, 3)) == 0:
            lo = draw(st.sampled_from([None, 0.5, 1.0, 2.25, 5.0]))
            hi = draw(st.sampled_from([None, 3.0, 7.5, 20.0]))
            assume(lo is None or hi is None or lo < hi)
            kw["min_kwh"], kw["max_kwh"] = lo, hi
        if draw(st.integers(0, 3)) == 0:
            lo = draw(st.sampled_from([None, 3.7, 11.0]))
            hi = draw(st.sampled_from([None, 7.4, 22.0, 50.0]))
            assume(lo is None or hi is None or lo < hi)
            kw["min_power"], kw["max_power"] = lo, hi
        if draw(st.integers(0, 3)) == 0:
            lo = draw(st.sampled_from([None, 600, 1800, 3600]))
            hi = draw(st.sampled_from([None, 900, 2700, 7200]))
            assume(lo is None or hi is None or lo < hi)
            kw["min_duration"], kw["max_duration"] = lo, hi
    return TariffRestrictions(**kw) if kw else None


@st.composite
def tariffs(
    draw: st.DrawFn,
    anchor: datetime,
    *,
    session: bool = True,
    steps: bool = True,
    currency: str | None = None,
) -> Tariff:
    els = []
    for _ in range(draw(st.integers(1, 5))):
        kinds = draw(
            st.lists(
                st.sampled_from(["ENERGY", "TIME", "PARKING_TIME", "FLAT"]),
                min_size=1,
                max_size=4,
                unique=True,
            )
        )
        pcs = []
        for kind in kinds:
            if kind == "ENERGY":
                step = draw(st.sampled_from([0, 1, 1, 100, 500])) if steps else 1
            else:
                step = draw(st.sampled_from([0, 1, 60, 300, 900])) if steps else 0
            pcs.append(
                PriceComponent(
                    type=kind,  # type: ignore[arg-type]
                    price=draw(st.sampled_from(PRICES)),
                    step_size=step,
                )
            )
        els.append(
            TariffElement(price_components=pcs, restrictions=draw(restrictions(anchor, session)))
        )
    t = Tariff(
        tariff_id="h",
        version=1,
        currency=currency or draw(st.sampled_from(["EUR", "EUR", "JPY", "KWD"])),
        vat_percent=draw(st.sampled_from(["0", "19", "20", "7.7", "25.5"])),
        elements=els,
    )
    assert validate_tariff(t) == [], validate_tariff(t)
    return t


@st.composite
def sessions(
    draw: st.DrawFn, anchor: datetime, *, whole_seconds: bool = False
) -> tuple[list[MeterSample], datetime, datetime, datetime]:
    def jitter() -> timedelta:
        if whole_seconds:
            return timedelta(0)
        return timedelta(microseconds=draw(st.sampled_from([0, 0, 1, 999_999, 123_457])))

    s = anchor + timedelta(minutes=draw(st.integers(-300, 300))) + jitter()
    length = timedelta(minutes=draw(st.integers(0, 360)))
    e = s + length
    ce = s + timedelta(minutes=(length // timedelta(minutes=1)) * draw(st.integers(0, 4)) // 4)
    samples: list[MeterSample] = []
    t = s + timedelta(minutes=draw(st.sampled_from([0, 0, 0, -10, 10])))
    w = draw(st.integers(0, 10**7))
    while t <= e + timedelta(minutes=20):
        samples.append(MeterSample(t, w))
        t += timedelta(minutes=draw(st.integers(1, 30))) + jitter()
        w += draw(st.sampled_from([0, 1, 7, 250, 1100, 1234, 3000, 9999, 20_000]))
    if draw(st.booleans()):
        samples = [smp for smp in samples if smp.at <= ce] or samples[:1]
    return samples, s, ce, e


def all_shapes() -> st.SearchStrategy[tuple[Tariff, ZoneInfo, Any]]:
    return st.sampled_from(ANCHORS).flatmap(
        lambda a: st.tuples(tariffs(a), st.sampled_from(ZONES), sessions(a))
    )


def engine_tuple(
    t: Tariff, tz: ZoneInfo, smp: list[MeterSample], s: datetime, ce: datetime, e: datetime
) -> Any:
    return as_tuple(bill(t, tz, smp, session_start=s, charging_end=ce, session_end=e))


# --------------------------------------------------------------------------- properties


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(all_shapes())
def test_bill_equals_brute_force_reference(case: tuple[Tariff, ZoneInfo, Any]) -> None:
    t, tz, (smp, s, ce, e) = case
    assert engine_tuple(t, tz, smp, s, ce, e) == reference_bill(t, tz, smp, s, ce, e)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    st.sampled_from(ANCHORS).flatmap(
        lambda a: st.tuples(tariffs(a, session=False), st.sampled_from(ZONES), sessions(a))
    )
)
def test_fast_path_equals_general_path(case: tuple[Tariff, ZoneInfo, Any]) -> None:
    t, tz, (smp, s, ce, e) = case
    ct = compile_tariff(t)
    assert not ct.general
    ts, es = _samples(smp)
    args = (ct, tz, ts, es, _us(s), _us(ce), _us(e))
    fast, general = _bill_us(*args), _bill_us(*args, force_general=True)
    assert fast == general
    assert as_tuple(fast) == reference_bill(t, tz, smp, s, ce, e)


def _refine(samples: list[MeterSample], picks: list[int]) -> list[MeterSample]:
    """Insert samples exactly on the straight line between existing ones."""
    out = [samples[0]]
    for k, (a, b) in enumerate(itertools.pairwise(samples)):
        dt = (b.at - a.at) // ONE_US
        de = b.energy_wh - a.energy_wh
        g = Fraction(de, dt).denominator  # points on the line at whole µs and whole Wh
        n = dt // g
        if n > 1:
            j = 1 + picks[k % len(picks)] % (n - 1)
            out.append(MeterSample(a.at + j * g * ONE_US, a.energy_wh + j * g * de // dt))
        out.append(b)
    return out


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(all_shapes(), st.lists(st.integers(0, 10**6), min_size=1, max_size=5))
def test_bill_does_not_depend_on_how_samples_are_chunked(
    case: tuple[Tariff, ZoneInfo, Any], picks: list[int]
) -> None:
    t, tz, (smp, s, ce, e) = case
    finer = _refine(smp, picks)
    assume(len(finer) > len(smp))
    assert engine_tuple(t, tz, finer, s, ce, e) == engine_tuple(t, tz, smp, s, ce, e)


DIVISORS_OF_3_6E6 = [
    1,
    2,
    3,
    4,
    5,
    6,
    8,
    9,
    10,
    12,
    15,
    16,
    18,
    20,
    24,
    25,
    30,
    36,
    40,
    45,
    48,
    50,
    60,
    72,
    75,
    80,
    90,
    100,
    120,
    150,
    300,
]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    st.sampled_from(ANCHORS).flatmap(
        lambda a: st.tuples(st.just(a), tariffs(a, steps=False), st.sampled_from(ZONES))
    ),
    st.sampled_from(DIVISORS_OF_3_6E6),
    st.integers(0, 150_000),
    st.integers(0, 40_000),
    st.integers(-300, 300),
)
def test_quote_is_monotone_in_energy(
    case: tuple[datetime, Tariff, ZoneInfo], kw: int, wh: int, more: int, minutes: int
) -> None:
    # Without step rounding (OCPI steps make any bill non-monotone at element switches).
    anchor, t, tz = case
    start = anchor + timedelta(minutes=minutes)
    a = quote(t, tz, start_at=start, power_kw=kw, energy_kwh=Decimal(wh) / 1000)
    b = quote(t, tz, start_at=start, power_kw=kw, energy_kwh=Decimal(wh + more) / 1000)
    assert b.total_minor >= a.total_minor
    assert b.subtotal_minor >= a.subtotal_minor


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    st.sampled_from(ANCHORS).flatmap(
        lambda a: st.tuples(st.just(a), tariffs(a), st.sampled_from(ZONES))
    ),
    st.sampled_from([None, 7, 11, 50]),
)
def test_bands_match_pointwise_display_across_dst(
    case: tuple[datetime, Tariff, ZoneInfo], power: int | None
) -> None:
    anchor, t, tz = case
    start, end = anchor - timedelta(hours=14), anchor + timedelta(hours=14)
    got = bands(t, start, end, tz, power_kw=power)
    assert got[0].from_ == start
    assert got[-1].to == end
    assert all(x.to == y.from_ and x.to > x.from_ for x, y in itertools.pairwise(got))
    kw = None if power is None else Fraction(power)

    def shown(at: datetime) -> tuple[str | None, ...]:
        out = []
        for kind in ("ENERGY", "TIME", "FLAT", "PARKING_TIME"):
            sel = _select(t, kind, at, tz, Fraction(0), kw, timedelta(0))
            out.append(None if sel is None else f"{sel[0]}:{sel[1].price}")
        return tuple(out)

    at, i = start, 0
    while at < end:
        while got[i].to <= at:
            i += 1
        band = got[i]
        sel = shown(at)
        assert (band.energy_per_kwh, band.time_per_hour, band.flat, band.idle_per_hour) == tuple(
            None if x is None else x.split(":")[1] for x in sel
        )
        if at == band.from_ and i > 0:
            assert shown(at - timedelta(minutes=1)) != sel  # a band edge is a real change
        at += timedelta(minutes=1)
    p = price_at(t, start, tz, power_kw=power)
    assert p.energy_per_kwh == got[0].energy_per_kwh
    if len(got) > 1:
        assert p.valid_until == got[1].from_


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(ANCHORS),
    st.sampled_from(DIVISORS_OF_3_6E6[4:20]),
    st.integers(1, 60_000),
    st.integers(-300, 300),
)
def test_cheapest_start_is_no_worse_than_any_grid_start(
    anchor: datetime, kw: int, wh: int, minutes: int
) -> None:
    t = tariff(
        element({"ENERGY": "0.2000", "TIME": ("0.60", 900)}, start_time="23:00", end_time="06:00"),
        element(
            {"ENERGY": "0.5500"}, start_time="17:00", end_time="21:00", day_of_week=list(DAYS[:5])
        ),
        element({"ENERGY": "0.3500", "FLAT": "0.25", "TIME": ("1.20", 60)}),
    )
    now = anchor + timedelta(minutes=minutes)
    best = cheapest_start(t, BERLIN, now, Decimal(wh) / 1000, kw, within_h=12)
    assert now <= best.start_at <= now + timedelta(hours=12)
    q = quote(t, BERLIN, start_at=best.start_at, power_kw=kw, energy_kwh=Decimal(wh) / 1000)
    assert q.total_minor == best.total_minor
    grid = [now]
    at = datetime.fromtimestamp(-(-now.timestamp() // 900) * 900, UTC)
    while at <= now + timedelta(hours=12):
        grid.append(at)
        at += timedelta(minutes=15)
    for at in grid:
        other = quote(t, BERLIN, start_at=at, power_kw=kw, energy_kwh=Decimal(wh) / 1000)
        assert other.total_minor >= best.total_minor
    now_quote = quote(t, BERLIN, start_at=now, power_kw=kw, energy_kwh=Decimal(wh) / 1000)
    assert best.saving_minor_vs_now == now_quote.total_minor - best.total_minor >= 0


@settings(max_examples=60, deadline=None)
@given(all_shapes())
def test_every_line_checks_by_hand(case: tuple[Tariff, ZoneInfo, Any]) -> None:
    t, tz, (smp, s, ce, e) = case
    b = bill(t, tz, smp, session_start=s, charging_end=ce, session_end=e)
    exp = CURRENCY_EXPONENTS[t.currency]
    for ln in b.lines:
        exact = ln.quantity * Decimal(ln.unit_price) * 10**exp
        assert ln.amount_minor == int(exact.quantize(Decimal(1), ROUND_HALF_UP))
        assert ln.band_from <= ln.band_to
    assert b.subtotal_minor == sum(ln.amount_minor for ln in b.lines)
    assert b.total_minor == b.subtotal_minor + b.vat_minor
    energy = [ln.quantity for ln in b.lines if ln.component == "ENERGY"]
    if energy and all(
        pc.step_size <= 1 for el in t.elements for pc in el.price_components if pc.type == "ENERGY"
    ):
        metered = (_energy(smp, e) - _energy(smp, s)) / 1000
        assert Fraction(sum(energy)) <= metered + Fraction(1, 1000)
