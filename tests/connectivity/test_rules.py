"""Health rules (INTEGRATIONS.md §2): tables per rule, then the precedence as properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.connectivity.rules import (
    DEGRADED_REASONS,
    OFFLINE_REASONS,
    QUARANTINE_REASONS,
    REASON_ORDER,
    STATE_OF_REASON,
    Health,
    HealthConfig,
    HealthSignals,
    evaluate,
    same_iccid,
    same_imei,
)

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
CFG = HealthConfig()
IMEI = "353627111000009"
ICCID = "89445000000001000000"


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def healthy(**overrides: Any) -> HealthSignals:
    """A charger with every signal good; tests break one thing at a time."""
    base: dict[str, Any] = {
        "ocpp_connected": True,
        "ever_connected": True,
        "last_heartbeat_at": ago(10),
        "heartbeat_interval_s": 60.0,
        "registered_iccid": ICCID,
        "boot_iccid": ICCID,
        "bound_imei": IMEI,
        "sim_status": "ACTIVATED",
        "platform_session_open": True,
        "reported_imei": IMEI,
        "platform_last_ok_at": ago(30),
    }
    base.update(overrides)
    return HealthSignals(**base)


def check(signals: HealthSignals, config: HealthConfig = CFG) -> Health:
    return evaluate(signals, config, NOW)


def test_all_good_is_online() -> None:
    health = check(healthy())
    assert (health.state, health.reason, health.reasons, health.stale) == (
        "online",
        "ok",
        (),
        False,
    )
    assert health.visible


def test_nothing_known_is_never_connected() -> None:
    health = check(HealthSignals())
    assert (health.state, health.reason) == ("offline", "never_connected")
    assert not health.visible


@pytest.mark.parametrize(
    ("overrides", "state", "reason"),
    [
        # OCPP socket and the grace period
        ({"ocpp_connected": False, "ocpp_disconnected_since": ago(59)}, "online", "ok"),
        ({"ocpp_connected": False, "ocpp_disconnected_since": ago(60)}, "online", "ok"),
        ({"ocpp_connected": False, "ocpp_disconnected_since": ago(61)}, "offline", "socket_down"),
        ({"ocpp_connected": False, "ocpp_disconnected_since": None}, "offline", "socket_down"),
        ({"ocpp_connected": True, "ocpp_disconnected_since": ago(9999)}, "online", "ok"),
        # never connected: onboarded, no socket yet
        ({"ocpp_connected": False, "ever_connected": False}, "offline", "never_connected"),
        ({"ocpp_connected": True, "ever_connected": False}, "online", "ok"),
        # heartbeat: 2.5 × interval
        ({"last_heartbeat_at": ago(150)}, "online", "ok"),
        ({"last_heartbeat_at": ago(151)}, "offline", "heartbeat_missed"),
        ({"last_heartbeat_at": ago(700), "heartbeat_interval_s": 300.0}, "online", "ok"),
        (
            {"last_heartbeat_at": ago(751), "heartbeat_interval_s": 300.0},
            "offline",
            "heartbeat_missed",
        ),
        (
            {"last_heartbeat_at": ago(151), "heartbeat_interval_s": None},
            "offline",
            "heartbeat_missed",
        ),
        ({"last_heartbeat_at": ago(149), "heartbeat_interval_s": 0.0}, "online", "ok"),
        ({"last_heartbeat_at": None}, "online", "ok"),
        ({"last_heartbeat_at": NOW + timedelta(seconds=5)}, "online", "ok"),
        # SIM status
        ({"sim_status": "DEACTIVATED"}, "offline", "sim_not_activated"),
        ({"sim_status": "INVENTORY"}, "offline", "sim_not_activated"),
        ({"sim_status": "ACTIVATION_READY"}, "offline", "sim_not_activated"),
        ({"sim_status": "activated"}, "online", "ok"),
        ({"sim_status": None}, "online", "ok"),
        # data session on the platform
        ({"platform_session_open": False, "platform_session_ended_at": ago(600)}, "online", "ok"),
        (
            {"platform_session_open": False, "platform_session_ended_at": ago(601)},
            "offline",
            "no_data_session",
        ),
        ({"platform_session_open": False, "platform_session_ended_at": None}, "online", "ok"),
        ({"platform_session_open": None, "platform_session_ended_at": ago(9999)}, "online", "ok"),
        ({"platform_session_open": True, "platform_session_ended_at": ago(9999)}, "online", "ok"),
        # quarantine: IMEI and ICCID
        ({"imei_change_event": True}, "quarantined", "imei_changed"),
        ({"reported_imei": "353627111999994"}, "quarantined", "imei_mismatch"),
        ({"reported_imei": None}, "online", "ok"),
        ({"bound_imei": None, "reported_imei": "353627111999994"}, "online", "ok"),
        ({"reported_imei": "3536271110000001"}, "online", "ok"),  # IMEISV of the same device
        ({"boot_iccid": "89445000000001000018"}, "quarantined", "iccid_mismatch"),
        ({"boot_iccid": "8944500000000100000"}, "online", "ok"),  # without the check digit
        ({"boot_iccid": "89445000000001000000F"}, "online", "ok"),  # F padding
        ({"boot_iccid": None}, "online", "ok"),
        # no SIM registered, and the one at boot is another charger's
        ({"registered_iccid": None, "boot_iccid_taken": True}, "quarantined", "iccid_mismatch"),
        ({"registered_iccid": None}, "online", "ok"),
        # degraded (still shown)
        ({"roaming": True}, "degraded", "roaming"),
        ({"usage_exceeded": True}, "degraded", "data_usage_exceeded"),
    ],
)
def test_single_rule(overrides: dict[str, Any], state: str, reason: str) -> None:
    health = check(healthy(**overrides))
    assert (health.state, health.reason) == (state, reason)
    assert health.visible == (state in ("online", "degraded"))


@pytest.mark.parametrize(
    ("change_at", "released_at", "state"),
    [
        (None, None, "quarantined"),
        (ago(100), None, "quarantined"),
        (ago(100), ago(50), "online"),  # released after the event
        (ago(100), ago(100), "online"),
        (ago(50), ago(100), "quarantined"),  # a new event after the release
        (None, ago(100), "quarantined"),  # cannot tell: fail closed
    ],
)
def test_imei_change_event_and_release(
    change_at: datetime | None, released_at: datetime | None, state: str
) -> None:
    signals = healthy(
        imei_change_event=True, imei_change_at=change_at, quarantine_released_at=released_at
    )
    assert check(signals).state == state


def test_release_does_not_lift_a_persisting_mismatch() -> None:
    # Releasing is for the event; an IMEI that still differs needs a rebind by the operator.
    signals = healthy(reported_imei="353627111999994", quarantine_released_at=ago(1))
    assert check(signals).reason == "imei_mismatch"


@pytest.mark.parametrize(
    ("overrides", "reasons"),
    [
        (
            {"imei_change_event": True, "sim_status": "DEACTIVATED", "roaming": True},
            ("imei_changed", "sim_not_activated", "roaming"),
        ),
        (
            {"ocpp_connected": False, "sim_status": "DEACTIVATED"},
            ("sim_not_activated", "socket_down"),
        ),
        (
            {"ocpp_connected": False, "ever_connected": False, "sim_status": "INVENTORY"},
            ("never_connected", "sim_not_activated"),
        ),
        (
            {
                "ocpp_connected": False,
                "last_heartbeat_at": ago(1000),
                "platform_session_open": False,
                "platform_session_ended_at": ago(1000),
                "usage_exceeded": True,
            },
            ("socket_down", "heartbeat_missed", "no_data_session", "data_usage_exceeded"),
        ),
        (
            {"reported_imei": "353627111999994", "boot_iccid": "89445000000001000018"},
            ("imei_mismatch", "iccid_mismatch"),
        ),
    ],
)
def test_every_reason_is_listed_in_order(
    overrides: dict[str, Any], reasons: tuple[str, ...]
) -> None:
    health = check(healthy(**overrides))
    assert health.reasons == reasons
    assert health.reason == reasons[0]
    assert health.state == STATE_OF_REASON[reasons[0]]


@pytest.mark.parametrize(
    ("last_ok", "stale"),
    [(None, False), (ago(900), False), (ago(901), True), (ago(86_400), True)],
)
def test_stale_platform_keeps_the_verdict(last_ok: datetime | None, stale: bool) -> None:
    for overrides, state in (
        ({}, "online"),
        ({"sim_status": "DEACTIVATED"}, "offline"),
        ({"roaming": True}, "degraded"),
    ):
        health = check(healthy(platform_last_ok_at=last_ok, **overrides))
        assert (health.state, health.stale) == (state, stale)


def test_platform_down_with_last_known_good_signals_stays_online() -> None:
    # The platform has not answered for a day: the last known signals still say all is well.
    health = check(healthy(platform_last_ok_at=ago(86_400)))
    assert (health.state, health.stale) == ("online", True)


def test_config_bounds_are_used() -> None:
    config = HealthConfig(grace_s=5, heartbeat_factor=1.5, offline_after_s=60, stale_after_s=10)
    signals = healthy(
        ocpp_connected=False,
        ocpp_disconnected_since=ago(6),
        last_heartbeat_at=ago(91),
        platform_session_open=False,
        platform_session_ended_at=ago(61),
        platform_last_ok_at=ago(11),
    )
    health = evaluate(signals, config, NOW)
    assert health.reasons == ("socket_down", "heartbeat_missed", "no_data_session")
    assert health.stale
    assert check(signals).state == "online"  # the same signals under the defaults


def test_heartbeat_after_session_end_can_override_the_platform() -> None:
    signals = healthy(platform_session_open=False, platform_session_ended_at=ago(3600))
    assert check(signals).reason == "no_data_session"
    lenient = HealthConfig(heartbeat_overrides_session_end=True)
    assert evaluate(signals, lenient, NOW).state == "online"
    old_heartbeat = healthy(
        platform_session_open=False,
        platform_session_ended_at=ago(3600),
        last_heartbeat_at=ago(3700),
        heartbeat_interval_s=3600.0,
    )
    assert evaluate(old_heartbeat, lenient, NOW).reason == "no_data_session"


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        evaluate(healthy(), CFG, datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("353627111000009", "353627111000009", True),
        ("35-362711-100000-9", "353627111000009", True),
        ("353627111000009", "3536271110000017", True),  # IMEISV, same TAC + serial
        ("353627111000009", "353627111000017", False),
        ("1234", "1234", True),
        ("1234", "12345", False),
        (None, "353627111000009", None),
        ("", "353627111000009", None),
    ],
)
def test_same_imei(a: str | None, b: str | None, same: bool | None) -> None:
    assert same_imei(a, b) is same
    assert same_imei(b, a) is same


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("89445000000001000000", "89445000000001000000", True),
        ("89445000000001000000", "8944500000000100000", True),
        ("89445000000001000000", "89445000000001000000f", True),
        ("89445000000001000000", "89445000000001000018", False),
        ("89445000000001000000", "894450000000010000", False),  # two digits short
        ("894450", "89445", False),
        (None, "89445000000001000000", None),
    ],
)
def test_same_iccid(a: str | None, b: str | None, same: bool | None) -> None:
    assert same_iccid(a, b) is same
    assert same_iccid(b, a) is same


def test_reason_tables_are_consistent() -> None:
    assert set(REASON_ORDER) == set(QUARANTINE_REASONS + OFFLINE_REASONS + DEGRADED_REASONS)
    assert set(STATE_OF_REASON) == {*REASON_ORDER, "ok"}


# -- properties ------------------------------------------------------------------------------

RANK = {"online": 0, "degraded": 1, "offline": 2, "quarantined": 3}

offsets = st.one_of(st.none(), st.floats(min_value=-120, max_value=7 * 86_400, allow_nan=False))
statuses = st.one_of(st.none(), st.sampled_from(["ACTIVATED", "DEACTIVATED", "INVENTORY"]))
imeis = st.one_of(st.none(), st.sampled_from([IMEI, "353627111999994", "3536271110000001"]))
iccids = st.one_of(st.none(), st.sampled_from([ICCID, "89445000000001000018"]))


def _at(offset: float | None) -> datetime | None:
    return None if offset is None else ago(offset)


@st.composite
def signals_strategy(draw: st.DrawFn) -> HealthSignals:
    return HealthSignals(
        ocpp_connected=draw(st.booleans()),
        ocpp_disconnected_since=_at(draw(offsets)),
        last_heartbeat_at=_at(draw(offsets)),
        heartbeat_interval_s=draw(st.one_of(st.none(), st.sampled_from([0.0, 30.0, 60.0, 300.0]))),
        ever_connected=draw(st.booleans()),
        registered_iccid=draw(iccids),
        boot_iccid=draw(iccids),
        bound_imei=draw(imeis),
        sim_status=draw(statuses),
        platform_session_open=draw(st.one_of(st.none(), st.booleans())),
        platform_session_ended_at=_at(draw(offsets)),
        reported_imei=draw(imeis),
        imei_change_event=draw(st.booleans()),
        imei_change_at=_at(draw(offsets)),
        quarantine_released_at=_at(draw(offsets)),
        roaming=draw(st.booleans()),
        usage_exceeded=draw(st.booleans()),
        platform_last_ok_at=_at(draw(offsets)),
    )


QUARANTINE_TRIGGERS: list[dict[str, Any]] = [
    {"imei_change_event": True, "imei_change_at": None},
    {"bound_imei": IMEI, "reported_imei": "353627111999994"},
    {"registered_iccid": ICCID, "boot_iccid": "89445000000001000018"},
]
OFFLINE_TRIGGERS: list[dict[str, Any]] = [
    {"sim_status": "DEACTIVATED"},
    {"ocpp_connected": False, "ever_connected": False},
    {"ocpp_connected": False, "ocpp_disconnected_since": None},
    {"last_heartbeat_at": ago(10_000), "heartbeat_interval_s": 60.0},
    {"platform_session_open": False, "platform_session_ended_at": ago(10_000)},
]
DEGRADED_TRIGGERS: list[dict[str, Any]] = [{"roaming": True}, {"usage_exceeded": True}]


@settings(max_examples=300, deadline=None)
@given(signals_strategy())
def test_verdict_is_well_formed(signals: HealthSignals) -> None:
    health = evaluate(signals, CFG, NOW)
    if health.state == "online":
        assert (health.reason, health.reasons) == ("ok", ())
    else:
        assert health.reasons[0] == health.reason
        assert list(health.reasons) == sorted(health.reasons, key=REASON_ORDER.index)
        assert health.state == STATE_OF_REASON[health.reason]
        # the state is the most severe among every rule that fired
        assert RANK[health.state] == max(RANK[STATE_OF_REASON[r]] for r in health.reasons)


@settings(max_examples=300, deadline=None)
@given(
    signals_strategy(),
    st.sampled_from(QUARANTINE_TRIGGERS + OFFLINE_TRIGGERS + DEGRADED_TRIGGERS),
)
def test_precedence_quarantine_offline_degraded_online(
    signals: HealthSignals, trigger: dict[str, Any]
) -> None:
    """Adding a fault never makes the verdict milder, and lands at least at its own level."""
    before = evaluate(signals, CFG, NOW)
    after = evaluate(msgspec.structs.replace(signals, **trigger), CFG, NOW)
    if trigger in QUARANTINE_TRIGGERS:
        floor = "quarantined"
    elif trigger in OFFLINE_TRIGGERS:
        floor = "offline"
    else:
        floor = "degraded"
    assert RANK[after.state] >= RANK[floor]
    assert RANK[after.state] >= RANK[before.state]


@settings(max_examples=300, deadline=None)
@given(signals_strategy(), offsets)
def test_platform_outage_never_changes_the_state(
    signals: HealthSignals, last_ok: float | None
) -> None:
    """Only `stale` depends on when the platform last answered."""
    a = evaluate(signals, CFG, NOW)
    b = evaluate(msgspec.structs.replace(signals, platform_last_ok_at=_at(last_ok)), CFG, NOW)
    assert (a.state, a.reasons) == (b.state, b.reasons)


@settings(max_examples=300, deadline=None)
@given(signals_strategy())
def test_without_platform_data_only_ocpp_and_bindings_decide(signals: HealthSignals) -> None:
    """Forgetting every platform signal can only remove platform reasons."""
    blind = msgspec.structs.replace(
        signals,
        sim_status=None,
        platform_session_open=None,
        platform_session_ended_at=None,
        reported_imei=None,
        imei_change_event=False,
        roaming=False,
        usage_exceeded=False,
        platform_last_ok_at=None,
    )
    platform_reasons = {
        "sim_not_activated",
        "no_data_session",
        "imei_changed",
        "imei_mismatch",
        "roaming",
        "data_usage_exceeded",
    }
    full = evaluate(signals, CFG, NOW)
    health = evaluate(blind, CFG, NOW)
    assert not (set(health.reasons) & platform_reasons)
    assert set(health.reasons) == set(full.reasons) - platform_reasons
    assert not health.stale
