"""The bill, the receipt and the capture split (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from app.pricing import engine
from app.pricing.tariff import PriceComponent, Tariff, TariffElement, TariffRestrictions
from app.sessions import billing
from app.sessions.billing import Reading

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 09:00 in Berlin, a Monday


def _tariff() -> Tariff:
    """Day/night energy, a flat fee and parking after charging."""
    return Tariff(
        tariff_id="t-1",
        version=3,
        currency="EUR",
        vat_percent="19",
        elements=[
            TariffElement(
                price_components=[PriceComponent(type="ENERGY", price="0.29")],
                restrictions=TariffRestrictions(start_time="22:00", end_time="07:00"),
            ),
            TariffElement(
                price_components=[
                    PriceComponent(type="ENERGY", price="0.49"),
                    PriceComponent(type="FLAT", price="0.50"),
                    PriceComponent(type="PARKING_TIME", price="6.00", step_size=60),
                ]
            ),
        ],
    )


def test_readings_are_made_a_clean_series() -> None:
    out = billing.series(
        start_at=T0,
        meter_start_wh=1_000,
        readings=[
            Reading(T0 - timedelta(minutes=1), 900),  # before the start: dropped
            Reading(T0 + timedelta(minutes=20), 6_000),
            Reading(T0 + timedelta(minutes=10), 3_000),  # out of order: sorted
            Reading(T0 + timedelta(minutes=20), 5_500),  # same instant: the larger wins
            Reading(T0 + timedelta(minutes=30), 4_000),  # register went back: held
            Reading(T0 + timedelta(minutes=40), 99_000),  # beyond meterStop: clipped
            Reading(T0 + timedelta(minutes=60), 10_000),  # after the end: dropped
        ],
        end_at=T0 + timedelta(minutes=50),
        meter_stop_wh=9_000,
    )
    assert [(int((s.at - T0).total_seconds() // 60), s.energy_wh) for s in out] == [
        (0, 0),
        (10, 2_000),
        (20, 5_000),
        (30, 5_000),
        (40, 8_000),
        (50, 8_000),
    ]


def test_bill_splits_energy_across_bands_and_charges_parking_after_charging() -> None:
    start = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 06:00 Berlin: night band until 07:00
    bill = billing.bill_session(
        _tariff(),
        BERLIN,
        start_at=start,
        meter_start_wh=0,
        readings=[Reading(start + timedelta(hours=1), 10_000)],
        end_at=start + timedelta(hours=2, minutes=30),
        meter_stop_wh=20_000,
        charging_end=start + timedelta(hours=2),
    )
    energy = [(line.unit_price, line.quantity) for line in bill.lines if line.component == "ENERGY"]
    assert [(p, str(q)) for p, q in energy] == [("0.29", "10.000"), ("0.49", "10.000")]
    parking = [line for line in bill.lines if line.component == "PARKING_TIME"]
    assert [str(line.quantity) for line in parking] == ["0.500000"]
    # 2.90 + 4.90 + 0.50 flat + 3.00 parking = 11.30, VAT 19 % = 2.15
    assert (bill.subtotal_minor, bill.vat_minor, bill.total_minor) == (1130, 215, 1345)
    receipt = billing.receipt(bill, energy_wh=20_000)
    assert receipt.total_minor == 1345
    assert receipt.energy_kwh == 20.0
    assert sum(line.amount_minor for line in receipt.lines) == receipt.subtotal_minor


def test_running_cost_holds_the_last_reading_until_now() -> None:
    bill = billing.bill_session(
        _tariff(),
        BERLIN,
        start_at=T0,
        meter_start_wh=0,
        readings=[Reading(T0 + timedelta(minutes=30), 10_000)],
        end_at=T0 + timedelta(minutes=45),
        meter_stop_wh=None,
        charging_end=None,
    )
    assert bill.subtotal_minor == 490 + 50


def test_capture_split_over_holds_and_extra() -> None:
    holds = [("pi_1", 5000), ("pi_2", 5000)]
    assert billing.split_capture(3210, holds) == ([("pi_1", 3210), ("pi_2", 0)], 0)
    assert billing.split_capture(7000, holds) == ([("pi_1", 5000), ("pi_2", 2000)], 0)
    assert billing.split_capture(12_000, holds) == ([("pi_1", 5000), ("pi_2", 5000)], 2000)
    assert billing.split_capture(0, holds[:1]) == ([("pi_1", 0)], 0)


def test_hold_low_at_90_percent() -> None:
    assert not billing.hold_low(4499, 5000)
    assert billing.hold_low(4500, 5000)
    assert not billing.hold_low(100, 0)


readings_st = st.lists(
    st.tuples(st.integers(1, 3 * 3600 - 1), st.integers(-5_000, 120_000)), max_size=40
)


@given(
    start_min=st.integers(0, 60 * 24 * 30),
    duration_s=st.integers(60, 3 * 3600),
    meter_start=st.integers(0, 10_000_000),
    energy=st.integers(0, 100_000),
    raw=readings_st,
    idle_s=st.integers(0, 3600),
)
def test_the_bill_is_the_engines_and_bills_exactly_the_metered_energy(
    start_min: int,
    duration_s: int,
    meter_start: int,
    energy: int,
    raw: list[tuple[int, int]],
    idle_s: int,
) -> None:
    start = T0 + timedelta(minutes=start_min)
    end = start + timedelta(seconds=duration_s)
    charging_end = end - timedelta(seconds=min(idle_s, duration_s))
    readings = [Reading(start + timedelta(seconds=t), meter_start + wh) for t, wh in raw]
    bill = billing.bill_session(
        _tariff(),
        BERLIN,
        start_at=start,
        meter_start_wh=meter_start,
        readings=readings,
        end_at=end,
        meter_stop_wh=meter_start + energy,
        charging_end=charging_end,
    )
    expected = engine.bill(
        _tariff(),
        BERLIN,
        billing.series(
            start_at=start,
            meter_start_wh=meter_start,
            readings=readings,
            end_at=end,
            meter_stop_wh=meter_start + energy,
        ),
        session_start=start,
        charging_end=charging_end,
        session_end=end,
    )
    assert bill == expected
    kwh = sum(line.quantity for line in bill.lines if line.component == "ENERGY")
    assert kwh * 1000 == energy


@given(
    total=st.integers(0, 50_000),
    holds=st.lists(st.integers(1, 20_000), min_size=1, max_size=3),
)
def test_captures_never_exceed_a_hold_and_add_up_to_the_total(total: int, holds: list[int]) -> None:
    plan, extra = billing.split_capture(total, [(f"pi_{i}", a) for i, a in enumerate(holds)])
    assert all(0 <= take <= amount for (_, take), amount in zip(plan, holds, strict=True))
    assert sum(take for _, take in plan) + extra == total
    assert (extra > 0) == (total > sum(holds))
