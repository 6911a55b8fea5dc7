"""The session state machine (pure)."""

from __future__ import annotations

import pytest

from app.sessions import state


@pytest.mark.parametrize(
    ("current", "ocpp", "expected"),
    [
        ("CHARGING", "SuspendedEV", "SUSPENDED"),
        ("CHARGING", "SuspendedEVSE", "SUSPENDED"),
        ("SUSPENDED", "Charging", "CHARGING"),
        ("CHARGING", "Finishing", "FINISHING"),
        ("FINISHING", "Charging", "CHARGING"),
        ("CHARGING", "Charging", None),  # no change
        ("CHARGING", "Available", None),  # not a session status: StopTransaction decides
        ("STARTING", "Charging", None),  # only StartTransaction starts a session
        ("COMPLETED", "Charging", None),
        ("FAILED", "Charging", None),
    ],
)
def test_status_notifications(current: str, ocpp: str, expected: str | None) -> None:
    assert state.on_status_notification(current, ocpp) == expected


def test_final_states_never_move() -> None:
    for final in state.FINAL:
        assert not any(state.can_move(final, s) for s in state.TRANSITIONS)


def test_stop_completes_a_running_session_and_leaves_a_failed_one() -> None:
    assert [state.on_stop(s) for s in ("CHARGING", "SUSPENDED", "FINISHING")] == ["COMPLETED"] * 3
    assert state.on_stop("FAILED") == "FAILED"


def test_only_the_car_stopping_counts_as_idle() -> None:
    # SuspendedEVSE: the charger holds power back (load management) — no parking fee.
    assert state.is_idle("SuspendedEV")
    assert state.is_idle("Finishing")
    assert not state.is_idle("SuspendedEVSE")
    assert not state.is_idle("Charging")
