"""The virtual car's charging curve: flat to 80 %, linear taper to 10 % at 100 %."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.sim.vehicle import Vehicle, power_at_soc, seconds_to_soc

quick = settings(database=None, deadline=None, max_examples=150)

batteries = st.floats(min_value=5.0, max_value=200.0)
socs = st.floats(min_value=0.0, max_value=99.0)
powers = st.floats(min_value=1_000.0, max_value=350_000.0)


def test_plateau_is_the_lower_of_charger_and_car() -> None:
    assert Vehicle(60, 20, 50_000, max_car_power_w=120_000).plateau_w == 50_000
    assert Vehicle(60, 20, 150_000, max_car_power_w=11_000).plateau_w == 11_000
    assert Vehicle(60, 20, 22_000).plateau_w == 22_000


def test_constant_power_below_80_percent() -> None:
    car = Vehicle(60, 20, 50_000)
    energy, power, soc = car.step(360)  # 0.1 h at 50 kW
    assert energy == pytest.approx(5_000)
    assert power == 50_000
    assert soc == pytest.approx(20 + 5_000 / 60_000 * 100)


def test_taper_above_80_percent() -> None:
    assert power_at_soc(80, 100_000) == 100_000
    assert power_at_soc(90, 100_000) == pytest.approx(55_000)
    assert power_at_soc(99.999, 100_000) == pytest.approx(10_000, rel=1e-3)
    assert power_at_soc(100, 100_000) == 0.0
    tapering = [power_at_soc(s, 100_000) for s in (80.5, 85, 90, 95, 99)]
    assert tapering == sorted(tapering, reverse=True)


def test_full_charge_time_matches_the_closed_form() -> None:
    # 20→80 % of 60 kWh at 50 kW: 0.72 h; 80→100 %: ln(1/0.1) / (0.045 %⁻¹ · rate).
    rate = 50_000 * 100 / (3600 * 60_000)
    expected = 0.72 * 3600 + math.log(10) / (0.045 * rate)
    assert seconds_to_soc(20, 100, battery_wh=60_000, plateau_w=50_000) == pytest.approx(expected)
    car = Vehicle(60, 20, 50_000)
    car.step(expected - 1)
    assert not car.done
    car.step(2)
    assert car.done
    assert car.soc == 100
    assert car.energy_wh == pytest.approx(48_000)


def test_step_stops_at_the_target() -> None:
    car = Vehicle(40, 50, 11_000, target_soc=80)
    energy, power, soc = car.step(10 * 3600)
    assert soc == 80
    assert energy == pytest.approx(12_000)
    assert power == 0.0
    assert car.step(60) == (0.0, 0.0, 80)


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="battery"):
        Vehicle(0, 20, 11_000)
    with pytest.raises(ValueError, match="start_soc"):
        Vehicle(60, 120, 11_000)
    with pytest.raises(ValueError, match="dt_s"):
        Vehicle(60, 20, 11_000).step(-1)


@quick
@given(
    battery=batteries,
    start=socs,
    charger=powers,
    car=powers,
    steps=st.lists(st.floats(min_value=0.0, max_value=1_800.0), min_size=1, max_size=40),
)
def test_energy_is_conserved_and_caps_hold(
    battery: float, start: float, charger: float, car: float, steps: list[float]
) -> None:
    vehicle = Vehicle(battery, start, charger, max_car_power_w=car)
    cap = min(charger, car)
    total = 0.0
    previous_soc = start
    for dt in steps:
        energy, power, soc = vehicle.step(dt)
        assert energy >= 0.0
        assert energy <= cap * dt / 3600 * (1 + 1e-9) + 1e-9  # never above the cap
        assert 0.0 <= power <= cap
        assert previous_soc <= soc <= 100.0  # monotone, bounded
        previous_soc = soc
        total += energy
    assert total == pytest.approx((vehicle.soc - start) / 100 * battery * 1000, abs=1e-6)
    assert total == pytest.approx(vehicle.energy_wh)


@quick
@given(battery=batteries, start=socs, charger=powers, total=st.floats(0.0, 4 * 3600.0))
def test_one_long_step_equals_many_short_ones(
    battery: float, start: float, charger: float, total: float
) -> None:
    one = Vehicle(battery, start, charger)
    many = Vehicle(battery, start, charger)
    one.step(total)
    for _ in range(100):
        many.step(total / 100)
    assert many.soc == pytest.approx(one.soc, abs=1e-6)
    assert many.energy_wh == pytest.approx(one.energy_wh, abs=1e-3)


@quick
@given(battery=batteries, start=st.floats(60.0, 99.0), charger=powers)
def test_closed_form_matches_numerical_integration(
    battery: float, start: float, charger: float
) -> None:
    # Integrate the curve with small Euler steps over the time the closed form needs to
    # reach 99 %; both must agree on the energy.
    horizon = seconds_to_soc(start, 99.5, battery_wh=battery * 1000, plateau_w=charger)
    vehicle = Vehicle(battery, start, charger)
    vehicle.step(horizon)
    soc, energy = start, 0.0
    dt = horizon / 4000
    for _ in range(4000):
        delta = power_at_soc(soc, charger) * dt / 3600
        energy += delta
        soc += delta / (battery * 1000) * 100
    assert vehicle.soc == pytest.approx(99.5, abs=1e-6)
    assert energy == pytest.approx(vehicle.energy_wh, rel=2e-3, abs=0.5)
