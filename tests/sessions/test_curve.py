"""The time-remaining estimate from the power curve (pure), checked against the
simulator's car, which follows the same curve."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.sessions import curve
from app.sim.vehicle import Vehicle


def test_below_80_percent_the_plateau_is_the_power_drawn() -> None:
    # 60 kWh at 50 kW from 20 %: 36 kWh to 80 % = 43.2 min on the flat part.
    est = curve.estimate(soc=20, power_w=50_000, battery_wh=60_000)
    assert est.minutes_to_80 == 44  # rounded up to whole minutes
    assert est.minutes_to_full is not None
    assert est.minutes_to_full > est.minutes_to_80


def test_matches_the_simulated_car_at_every_point_of_the_curve() -> None:
    car = Vehicle(75, 10, 150_000, max_car_power_w=120_000)
    while not car.done:
        est = curve.estimate(soc=car.soc, power_w=car.power_w, battery_wh=75_000)
        assert est.minutes_to_full is not None
        assert abs(est.minutes_to_full - car.seconds_to(100) / 60) <= 1
        if car.soc < 80:
            assert est.minutes_to_80 is not None
            assert abs(est.minutes_to_80 - car.seconds_to(80) / 60) <= 1
        else:
            assert est.minutes_to_80 == 0
        car.step(120)


def test_unknown_without_soc_battery_or_power() -> None:
    assert curve.estimate(soc=None, power_w=50_000, battery_wh=60_000).minutes_to_full is None
    assert curve.estimate(soc=50, power_w=50_000, battery_wh=None).minutes_to_full is None
    # A paused car (SuspendedEV) draws nothing: no honest estimate of when it finishes.
    assert curve.estimate(soc=50, power_w=0, battery_wh=60_000).minutes_to_full is None
    assert curve.estimate(soc=85, power_w=0, battery_wh=60_000).minutes_to_80 == 0


def test_full_is_zero_minutes() -> None:
    est = curve.estimate(soc=100, power_w=0, battery_wh=None)
    assert (est.minutes_to_80, est.minutes_to_full) == (0, 0)


def test_the_hardware_limit_caps_a_noisy_power_reading() -> None:
    fast = curve.estimate(soc=30, power_w=400_000, battery_wh=60_000)
    capped = curve.estimate(soc=30, power_w=400_000, battery_wh=60_000, max_power_w=50_000)
    assert capped.minutes_to_80 is not None
    assert fast.minutes_to_80 is not None
    assert capped.minutes_to_80 > fast.minutes_to_80


def test_battery_inferred_from_energy_per_soc_point() -> None:
    assert (
        curve.infer_battery_wh(soc_first=20, energy_at_first_wh=0, soc_now=50, energy_now_wh=18_000)
        == 60_000
    )
    # too little movement to tell
    assert (
        curve.infer_battery_wh(soc_first=20, energy_at_first_wh=0, soc_now=22, energy_now_wh=1_200)
        is None
    )


@given(
    soc=st.floats(0, 100),
    power=st.floats(1, 400_000),
    battery=st.floats(5_000, 200_000),
)
def test_more_charge_never_takes_longer(soc: float, power: float, battery: float) -> None:
    est = curve.estimate(soc=soc, power_w=power, battery_wh=battery)
    assert est.minutes_to_full is not None
    assert est.minutes_to_80 is not None
    assert 0 <= est.minutes_to_80 <= est.minutes_to_full
