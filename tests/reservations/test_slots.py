"""The pure slot maths (app/reservations/slots.py), exhaustively with hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.reservations import slots
from app.reservations.slots import SlotError, VehicleSpec

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TYPES = ["CCS2", "CHADEMO", "TYPE2", "CCS1", "NACS", "GBT"]

vehicles = st.builds(
    VehicleSpec,
    battery_wh=st.integers(1_000, 500_000),
    max_ac_w=st.integers(0, 100_000),
    max_dc_w=st.integers(0, 1_500_000),
)
powers = st.integers(1_000, 2_000_000)


def _window(
    *,
    start_at: datetime | None = None,
    duration_min: int | None = None,
    vehicle: VehicleSpec | None = None,
) -> slots.Window:
    """`slots.window` at NOW for a CCS2 150 kW connector."""
    return slots.window(
        now=NOW,
        start_at=start_at,
        duration_min=duration_min,
        vehicle=vehicle,
        connector_type="CCS2",
        connector_power_w=150_000,
    )


def test_a_60_kwh_car_at_a_50_kw_dc_connector_needs_44_minutes() -> None:
    # 60 % of 60 kWh = 36 kWh at min(50, 150) kW = 0.72 h = 43.2 → 44 minutes
    car = VehicleSpec(battery_wh=60_000, max_ac_w=11_000, max_dc_w=150_000)
    assert slots.slot_minutes(car, "CCS2", 50_000) == 44


def test_the_on_board_charger_limits_an_ac_connector() -> None:
    # 36 kWh at min(22, 11) kW = 3.27 h → 197 minutes
    car = VehicleSpec(battery_wh=60_000, max_ac_w=11_000, max_dc_w=150_000)
    assert slots.slot_minutes(car, "TYPE2", 22_000) == 197
    # NACS/GB/T at AC power use the AC limit, at DC power the DC limit
    assert slots.slot_minutes(car, "NACS", 11_000) == 197
    assert slots.slot_minutes(car, "NACS", 250_000) == 15


def test_without_a_vehicle_a_slot_lasts_an_hour() -> None:
    assert slots.slot_minutes(None, "CCS2", 150_000) == 60
    w = _window(start_at=NOW + timedelta(hours=2))
    assert (w.start_at, w.expires_at, w.hold) == (
        NOW + timedelta(hours=2),
        NOW + timedelta(hours=3),
        False,
    )


def test_a_hold_defaults_to_15_minutes_and_allows_30() -> None:
    w = _window()
    assert (w.start_at, w.expires_at, w.hold) == (NOW, NOW + timedelta(minutes=15), True)
    w = _window(duration_min=30)
    assert w.minutes == 30
    with pytest.raises(SlotError) as caught:
        _window(duration_min=31)
    assert caught.value.field == "duration_min"


@pytest.mark.parametrize(
    ("start", "field"),
    [
        (NOW, "start_at"),  # not after now
        (NOW - timedelta(minutes=1), "start_at"),
        (NOW + timedelta(hours=24, seconds=1), "start_at"),  # beyond the horizon
    ],
)
def test_slots_start_after_now_and_within_24_hours(start: datetime, field: str) -> None:
    with pytest.raises(SlotError) as caught:
        _window(start_at=start)
    assert caught.value.field == field


def test_the_horizon_itself_is_allowed() -> None:
    w = _window(start_at=NOW + timedelta(hours=24), duration_min=20)
    assert w.minutes == 20


@given(vehicle=vehicles, connector_type=st.sampled_from(TYPES), power_w=powers)
def test_a_computed_slot_fits_the_charge_it_is_sized_for(
    vehicle: VehicleSpec, connector_type: str, power_w: int
) -> None:
    minutes = slots.slot_minutes(vehicle, connector_type, power_w)
    assert slots.SLOT_MIN_MIN <= minutes <= slots.SLOT_MAX_MIN
    charging_w = slots.charging_power_w(vehicle, connector_type, power_w)
    assert 0 < charging_w <= power_w
    needed_h = vehicle.battery_wh * 0.6 / charging_w
    if slots.SLOT_MIN_MIN < minutes < slots.SLOT_MAX_MIN:
        # rounded up to whole minutes: never shorter than the charge, < 1 min longer
        assert minutes >= needed_h * 60 - 1e-6
        assert minutes - needed_h * 60 < 1 + 1e-6


@given(
    vehicle=vehicles,
    connector_type=st.sampled_from(TYPES),
    power_w=powers,
    more_w=st.integers(0, 500_000),
)
def test_more_power_never_makes_a_slot_longer(
    vehicle: VehicleSpec, connector_type: str, power_w: int, more_w: int
) -> None:
    # (within one current kind: NACS/GB/T switch from AC to DC limits above 22 kW)
    if slots.is_ac(connector_type, power_w) != slots.is_ac(connector_type, power_w + more_w):
        return
    assert slots.slot_minutes(vehicle, connector_type, power_w + more_w) <= slots.slot_minutes(
        vehicle, connector_type, power_w
    )


@given(
    battery_wh=st.integers(1_000, 400_000),
    extra_wh=st.integers(0, 100_000),
    power_w=powers,
)
def test_a_bigger_battery_never_makes_a_slot_shorter(
    battery_wh: int, extra_wh: int, power_w: int
) -> None:
    small = VehicleSpec(battery_wh=battery_wh, max_ac_w=11_000, max_dc_w=150_000)
    big = VehicleSpec(battery_wh=battery_wh + extra_wh, max_ac_w=11_000, max_dc_w=150_000)
    assert slots.slot_minutes(big, "CCS2", power_w) >= slots.slot_minutes(small, "CCS2", power_w)


@given(
    offset_s=st.integers(-3600, 30 * 3600),
    duration=st.one_of(st.none(), st.integers(-5, 800)),
    vehicle=st.one_of(st.none(), vehicles),
    hold=st.booleans(),
)
def test_every_window_is_valid_or_refused_with_a_field(
    offset_s: int, duration: int | None, vehicle: VehicleSpec | None, hold: bool
) -> None:
    start = None if hold else NOW + timedelta(seconds=offset_s)
    refused: SlotError | None = None
    try:
        w = _window(start_at=start, duration_min=duration, vehicle=vehicle)
    except SlotError as exc:
        refused = exc
    if refused is not None:
        assert refused.field in ("start_at", "duration_min")
        return
    assert w.expires_at > w.start_at
    assert w.hold is hold
    if hold:
        assert w.start_at == NOW
        assert 1 <= w.minutes <= slots.HOLD_MAX_MIN
    else:
        assert NOW < w.start_at <= NOW + slots.HORIZON
        assert 1 <= w.minutes <= slots.SLOT_MAX_MIN
    if duration is not None:
        assert w.minutes == duration


@given(
    a=st.tuples(st.integers(0, 1000), st.integers(1, 300)),
    b=st.tuples(st.integers(0, 1000), st.integers(1, 300)),
)
def test_overlap_is_the_half_open_range_test(a: tuple[int, int], b: tuple[int, int]) -> None:
    a0, b0 = NOW + timedelta(minutes=a[0]), NOW + timedelta(minutes=b[0])
    a1, b1 = a0 + timedelta(minutes=a[1]), b0 + timedelta(minutes=b[1])
    minutes_a = set(range(a[0], a[0] + a[1]))
    minutes_b = set(range(b[0], b[0] + b[1]))
    assert slots.overlaps(a0, a1, b0, b1) is bool(minutes_a & minutes_b)
    assert slots.overlaps(a0, a1, b0, b1) is slots.overlaps(b0, b1, a0, a1)
