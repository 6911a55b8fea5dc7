"""The alert rules, pure: property tests over random sample streams plus the field traps
(a car in SuspendedEV waiting for off-peak is not complete; SoC is optional)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from app.notifications.rules import (
    FULL_SOC,
    IDLE_FOR,
    Sample,
    SessionState,
    due_alerts,
    estimate_minutes_left,
    is_full,
    needs_samples,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
OCPP_STATUS_OF = {
    "Charging": "CHARGING",
    "SuspendedEV": "SUSPENDED",
    "SuspendedEVSE": "SUSPENDED",
    "Finishing": "FINISHING",
}


def state(
    samples: list[Sample],
    *,
    ocpp: str = "Charging",
    sent: frozenset[str] = frozenset(),
    battery_wh: float | None = 60_000,
    ended: bool = False,
    parking: int | None = None,
) -> SessionState:
    last = samples[-1] if samples else None
    energy = max((s.energy_wh or 0.0 for s in samples), default=0.0)
    soc = next((s.soc_percent for s in reversed(samples) if s.soc_percent is not None), None)
    power = next((s.power_w for s in reversed(samples) if s.power_w is not None), None)
    return SessionState(
        status="COMPLETED" if ended else OCPP_STATUS_OF[ocpp],
        ocpp_status=None if ended else ocpp,
        started_at=T0,
        ended_at=(last.at if last else T0) if ended else None,
        energy_wh=energy,
        power_w=power,
        soc_percent=soc,
        battery_wh=battery_wh,
        samples=samples,
        sent=sent,
        parking_minor_per_hour=parking,
    )


# --- A random session, minute by minute ---------------------------------------------------


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[Sample, str]]:
    """A charging session as the charger reports it: each minute a status and a sample;
    power while charging, none while suspended; SoC sometimes missing altogether."""
    has_soc = draw(st.booleans())
    soc = draw(st.floats(min_value=5, max_value=99))
    energy = 0.0
    minutes = draw(st.integers(min_value=1, max_value=150))
    out: list[tuple[Sample, str]] = []
    ocpp = "Charging"
    for m in range(minutes):
        if draw(st.integers(0, 9)) == 0:  # the status changes now and then
            ocpp = draw(st.sampled_from(["Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"]))
        if ocpp == "Charging":
            power = draw(st.floats(min_value=1_000, max_value=150_000))
            energy += power / 60.0
            soc = min(100.0, soc + power / 60.0 / 600.0)  # a 60 kWh battery
        else:
            power = draw(st.sampled_from([0.0, 0.0, 50.0]))
        out.append(
            (
                Sample(
                    at=T0 + timedelta(minutes=m + 1),
                    energy_wh=energy,
                    power_w=power if draw(st.integers(0, 9)) else None,
                    soc_percent=soc if has_soc else None,
                ),
                ocpp,
            )
        )
    return out


def run(stream: list[tuple[Sample, str]], *, stop: bool) -> list[tuple[str, int, SessionState]]:
    """Feed the stream to the rules one message at a time, as session_changed would."""
    sent: set[str] = set()
    fired: list[tuple[str, int, SessionState]] = []
    for i, (_, ocpp) in enumerate(stream):
        now = stream[i][0].at
        s = state([x for x, _ in stream[: i + 1]], ocpp=ocpp, sent=frozenset(sent))
        for due in due_alerts(s, now):
            assert due.kind not in sent
            sent.add(due.kind)
            fired.append((due.kind, i, s))
    if stop and stream:
        s = state([x for x, _ in stream], sent=frozenset(sent), ended=True)
        for due in due_alerts(s, stream[-1][0].at):
            fired.append((due.kind, len(stream), s))
    return fired


@settings(max_examples=300, deadline=None)
@given(streams(), st.booleans())
def test_each_kind_at_most_once(stream: list[tuple[Sample, str]], stop: bool) -> None:
    kinds = [kind for kind, _, _ in run(stream, stop=stop)]
    assert len(kinds) == len(set(kinds))


@settings(max_examples=300, deadline=None)
@given(streams())
def test_never_complete_while_charging_or_merely_suspended(
    stream: list[tuple[Sample, str]],
) -> None:
    for kind, i, s in run(stream, stop=False):
        if kind != "session_complete":
            continue
        ocpp = stream[i][1]
        assert ocpp in ("SuspendedEV", "Finishing")  # never while Charging / SuspendedEVSE
        assert s.soc_percent is not None
        assert s.soc_percent >= FULL_SOC  # a pause below 95 % (off-peak wait) is not the end
        since = [x.at for x, _ in stream[: i + 1] if x.power_w is not None]
        assert since
        assert stream[i][0].at - since[0] >= IDLE_FOR


@settings(max_examples=200, deadline=None)
@given(streams())
def test_a_stopped_transaction_always_completes_once(stream: list[tuple[Sample, str]]) -> None:
    fired = run(stream, stop=True)
    assert [k for k, _, _ in fired].count("session_complete") == 1


@settings(max_examples=200, deadline=None)
@given(streams())
def test_started_comes_first_and_80_percent_only_after_80(
    stream: list[tuple[Sample, str]],
) -> None:
    fired = run(stream, stop=False)
    if fired:
        assert fired[0][0] == "session_started"
    for kind, _, s in fired:
        if kind == "soc_80":
            if s.soc_percent is not None:
                assert s.soc_percent >= 80
            else:
                assert s.battery_wh is not None
                assert s.energy_wh >= 0.6 * s.battery_wh


@settings(max_examples=200, deadline=None)
@given(streams())
def test_skipping_the_samples_when_they_do_not_count_changes_nothing(
    stream: list[tuple[Sample, str]],
) -> None:
    """`needs_samples` lets session_changed skip a query on most MeterValues: whenever it
    says no, the rules decide the same without the samples."""
    sent: set[str] = set()
    for i, (sample, ocpp) in enumerate(stream):
        s = state([x for x, _ in stream[: i + 1]], ocpp=ocpp, sent=frozenset(sent))
        due = due_alerts(s, sample.at)
        if not needs_samples(s):
            bare = msgspec.structs.replace(s, samples=())
            assert [d.kind for d in due_alerts(bare, sample.at)] == [d.kind for d in due]
        sent |= {d.kind for d in due}


# --- The traps, one by one ----------------------------------------------------------------


def idle_samples(soc: float | None, minutes: int, *, power: float = 0.0) -> list[Sample]:
    charging = [
        Sample(at=T0 + timedelta(minutes=1), energy_wh=30_000, power_w=40_000, soc_percent=soc)
    ]
    return charging + [
        Sample(at=T0 + timedelta(minutes=2 + m), energy_wh=30_000, power_w=power, soc_percent=soc)
        for m in range(minutes)
    ]


def test_a_car_waiting_for_off_peak_is_not_complete() -> None:
    samples = idle_samples(45.0, 60)
    s = state(samples, ocpp="SuspendedEV", sent=frozenset({"session_started"}))
    assert not is_full(s, samples[-1].at)
    assert [d.kind for d in due_alerts(s, samples[-1].at)] == []


def test_a_pause_imposed_by_the_charger_is_not_complete() -> None:
    samples = idle_samples(97.0, 30)
    s = state(samples, ocpp="SuspendedEVSE", sent=frozenset({"session_started", "soc_80"}))
    assert "session_complete" not in [d.kind for d in due_alerts(s, samples[-1].at)]


def test_full_and_idle_for_ten_minutes_is_complete_and_warns_of_parking() -> None:
    nine = idle_samples(96.0, 10)  # idle from minute 2 to 11: 9 minutes
    s = state(nine, ocpp="SuspendedEV", sent=frozenset({"session_started", "soc_80"}), parking=600)
    assert due_alerts(s, nine[-1].at) == []
    ten = idle_samples(96.0, 11)
    s = state(ten, ocpp="SuspendedEV", sent=frozenset({"session_started", "soc_80"}), parking=600)
    kinds = [d.kind for d in due_alerts(s, ten[-1].at)]
    assert kinds == ["session_complete", "idle_fee_warning"]


def test_full_without_soc_is_never_guessed() -> None:
    samples = idle_samples(None, 60)
    s = state(samples, ocpp="SuspendedEV", sent=frozenset({"session_started"}))
    assert "session_complete" not in [d.kind for d in due_alerts(s, samples[-1].at)]


def test_80_percent_without_soc_from_the_battery_size() -> None:
    samples = [Sample(at=T0 + timedelta(minutes=20), energy_wh=35_000, power_w=50_000)]
    s = state(samples, battery_wh=60_000, sent=frozenset({"session_started"}))
    assert due_alerts(s, samples[-1].at) == []
    samples = [Sample(at=T0 + timedelta(minutes=25), energy_wh=36_000, power_w=50_000)]
    s = state(samples, battery_wh=60_000, sent=frozenset({"session_started"}))
    [due] = due_alerts(s, samples[-1].at)
    assert due.kind == "soc_80"
    assert due.facts["battery_share_percent"] == 60.0
    # without SoC and without a battery size there is nothing to go on
    s = state(samples, battery_wh=None, sent=frozenset({"session_started"}))
    assert due_alerts(s, samples[-1].at) == []


def test_ten_minutes_left_from_the_power_curve() -> None:
    # 60 kWh battery at 93 % drawing 20 kW on the taper: ~24 min to full; at 97.5 %: ~6 min
    far = [Sample(at=T0 + timedelta(minutes=30), energy_wh=30_000, power_w=20_000, soc_percent=93)]
    s = state(far, sent=frozenset({"session_started", "soc_80"}))
    assert due_alerts(s, far[-1].at) == []
    near = [
        Sample(at=T0 + timedelta(minutes=40), energy_wh=33_000, power_w=20_000, soc_percent=97.5)
    ]
    s = state(near, sent=frozenset({"session_started", "soc_80"}))
    [due] = due_alerts(s, near[-1].at)
    assert due.kind == "ten_minutes_left"
    assert 1 <= due.facts["minutes"] <= 10


def test_ten_minutes_left_without_soc_from_a_falling_power_line() -> None:
    samples = [
        Sample(at=T0 + timedelta(minutes=30 + m), energy_wh=30_000 + m * 100, power_w=p)
        for m, p in enumerate([10_000, 8_500, 7_000, 5_500, 4_000])
    ]
    s = state(samples, battery_wh=None)
    minutes = estimate_minutes_left(s, samples[-1].at)
    assert minutes is not None
    assert 2 < minutes < 3  # 4 kW falling 1.5 kW a minute


def test_nothing_for_a_session_that_never_started() -> None:
    s = SessionState(status="FAILED", started_at=T0)
    assert due_alerts(s, T0) == []
    s = SessionState(status="STARTING", started_at=T0)
    assert due_alerts(s, T0) == []


# --- The parking outlook (idle_fee_warning) ---------------------------------------------


def tariff_with_parking(*, after_s: int | None) -> Any:
    from app.pricing.engine import compile_tariff
    from app.pricing.tariff import PriceComponent, Tariff, TariffElement, TariffRestrictions

    parking = TariffElement(
        price_components=[PriceComponent(type="PARKING_TIME", price="6.00", step_size=60)],
        restrictions=TariffRestrictions(min_duration=after_s) if after_s else None,
    )
    energy = TariffElement(price_components=[PriceComponent(type="ENERGY", price="0.40")])
    return compile_tariff(
        Tariff(
            tariff_id="t", version=1, currency="EUR", vat_percent="19", elements=[parking, energy]
        )
    )


def test_parking_outlook_says_when_parking_starts_to_cost_and_the_hourly_price() -> None:
    from zoneinfo import ZoneInfo

    from app.notifications.rules import parking_outlook

    start = T0
    charged = T0 + timedelta(minutes=50)
    # parking is charged once the session has lasted 2 hours: 70 min after charging ended
    outlook = parking_outlook(
        tariff_with_parking(after_s=7200),
        ZoneInfo("Europe/Berlin"),
        started_at=start,
        charging_end=charged,
        energy_wh=30_000,
    )
    assert outlook is not None
    starts, per_hour = outlook
    assert abs((starts - (T0 + timedelta(hours=2))).total_seconds()) <= 60
    assert per_hour == 714  # €6.00/h + 19 % VAT
    # parking from the first minute
    now_outlook = parking_outlook(
        tariff_with_parking(after_s=None),
        ZoneInfo("Europe/Berlin"),
        started_at=start,
        charging_end=charged,
        energy_wh=30_000,
    )
    assert now_outlook is not None
    assert abs((now_outlook[0] - charged).total_seconds()) <= 60


def test_no_parking_price_no_outlook() -> None:
    from zoneinfo import ZoneInfo

    from app.notifications.rules import parking_outlook
    from app.pricing.engine import compile_tariff
    from app.pricing.tariff import PriceComponent, Tariff, TariffElement

    plain = compile_tariff(
        Tariff(
            tariff_id="t",
            version=1,
            currency="EUR",
            vat_percent="19",
            elements=[
                TariffElement(price_components=[PriceComponent(type="ENERGY", price="0.40")])
            ],
        )
    )
    assert (
        parking_outlook(
            plain,
            ZoneInfo("Europe/Berlin"),
            started_at=T0,
            charging_end=T0 + timedelta(hours=1),
            energy_wh=20_000,
        )
        is None
    )
