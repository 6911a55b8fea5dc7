"""Charger connectivity health: a pure function of OCPP and SIM-platform signals.

Precedence (INTEGRATIONS.md §2): quarantined beats offline beats degraded beats online.
Platform signals are the last ones known: when the platform cannot be reached the caller
keeps passing them unchanged, the verdict stays what it was and only `stale` turns true
after `stale_after_s`. Nothing here reads the clock; `now` is given.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import msgspec

HealthState = Literal["online", "offline", "quarantined", "degraded"]

Reason = Literal[
    # quarantined: the SIM may be in someone else's device
    "imei_changed",
    "imei_mismatch",
    "iccid_mismatch",
    # offline
    "never_connected",
    "sim_not_activated",
    "socket_down",
    "heartbeat_missed",
    "no_data_session",
    # degraded (still shown)
    "roaming",
    "data_usage_exceeded",
    # online
    "ok",
]

QUARANTINE_REASONS: Final[tuple[Reason, ...]] = ("imei_changed", "imei_mismatch", "iccid_mismatch")
OFFLINE_REASONS: Final[tuple[Reason, ...]] = (
    "never_connected",
    "sim_not_activated",
    "socket_down",
    "heartbeat_missed",
    "no_data_session",
)
DEGRADED_REASONS: Final[tuple[Reason, ...]] = ("roaming", "data_usage_exceeded")
# Every reason, most important first; `Health.reasons` follows this order.
REASON_ORDER: Final[tuple[Reason, ...]] = (
    *QUARANTINE_REASONS,
    *OFFLINE_REASONS,
    *DEGRADED_REASONS,
)
STATE_OF_REASON: Final[dict[str, HealthState]] = {
    **{r: "quarantined" for r in QUARANTINE_REASONS},
    **{r: "offline" for r in OFFLINE_REASONS},
    **{r: "degraded" for r in DEGRADED_REASONS},
    "ok": "online",
}

ACTIVATED: Final = "ACTIVATED"


class HealthConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds of the health rules (all in seconds)."""

    grace_s: float = 60.0
    """An OCPP socket may be down this long (a reconnect) before the charger is offline."""
    heartbeat_factor: float = 2.5
    """Offline when no heartbeat arrived within this many heartbeat intervals."""
    default_heartbeat_interval_s: float = 60.0
    """Interval assumed when the charger's own (from BootNotification) is unknown."""
    offline_after_s: float = 600.0
    """Offline when the platform reports the data session ended longer ago than this."""
    stale_after_s: float = 900.0
    """Platform signals older than this are flagged stale (the verdict is kept)."""
    heartbeat_overrides_session_end: bool = False
    """When true, an OCPP heartbeat newer than the platform's session end proves a newer
    session the platform has not reported yet, so `no_data_session` does not apply.
    Off by default: the documented rule is the platform's word alone."""


class HealthSignals(msgspec.Struct, frozen=True, kw_only=True):
    """What is known about one charger. Datetimes must be timezone-aware; None = unknown."""

    # OCPP side
    ocpp_connected: bool = False
    ocpp_disconnected_since: datetime | None = None
    """When the socket last closed; None while down means "too long ago to tell"."""
    last_heartbeat_at: datetime | None = None
    """Last Heartbeat (or any message); None means no evidence either way."""
    heartbeat_interval_s: float | None = None
    ever_connected: bool = False
    registered_iccid: str | None = None
    """The ICCID the charger was onboarded with."""
    boot_iccid: str | None = None
    """The ICCID in the charger's last BootNotification."""
    boot_iccid_taken: bool = False
    """No ICCID is registered and the one at boot is registered to another charger."""
    bound_imei: str | None = None
    """The IMEI bound to the SIM at onboarding."""

    # platform side (last known values)
    sim_status: str | None = None
    platform_session_open: bool | None = None
    platform_session_ended_at: datetime | None = None
    reported_imei: str | None = None
    """The IMEI the platform last reported for this SIM."""
    imei_change_event: bool = False
    """An IMEI_CHANGE push was received (and not cleared by the caller)."""
    imei_change_at: datetime | None = None
    """When that event happened; an event at or before `quarantine_released_at` is spent."""
    quarantine_released_at: datetime | None = None
    roaming: bool = False
    usage_exceeded: bool = False
    """A data-usage threshold event (CTD_SESSION_USAGE_EXCEEDED, PAST24H_DATA_USAGE_EXCEEDED)
    or `overageLimitReached` from ctdUsages."""
    platform_last_ok_at: datetime | None = None
    """Last time the platform answered for this SIM (poll or push); drives `stale`."""


class Health(msgspec.Struct, frozen=True, kw_only=True):
    state: HealthState
    reason: Reason
    """The most important of `reasons` ("ok" when online)."""
    reasons: tuple[Reason, ...] = ()
    """Every rule that fired, most important first (empty when online)."""
    stale: bool = False
    """The platform part of this verdict is older than `stale_after_s`."""

    @property
    def visible(self) -> bool:
        """Whether the charger's connectors may appear in search (online or degraded)."""
        return self.state in ("online", "degraded")


DEFAULT_CONFIG: Final = HealthConfig()


def normalise_imei(value: str | None) -> str | None:
    """Digits only; None when there are none."""
    if value is None:
        return None
    digits = "".join(ch for ch in value if ch.isdigit())
    return digits or None


def same_imei(a: str | None, b: str | None) -> bool | None:
    """Whether two IMEIs name the same device; None when either is unknown.

    Modems and platforms disagree on the tail: a 15-digit IMEI ends in a check digit, a
    16-digit IMEISV in a software version. The first 14 digits (TAC + serial) identify the
    device, so those are compared when both have them.
    """
    na, nb = normalise_imei(a), normalise_imei(b)
    if na is None or nb is None:
        return None
    if len(na) >= 14 and len(nb) >= 14:
        return na[:14] == nb[:14]
    return na == nb


def normalise_iccid(value: str | None) -> str | None:
    """Upper-case alphanumerics without the `F` padding some modems append."""
    if value is None:
        return None
    cleaned = "".join(ch for ch in value if ch.isalnum()).upper().rstrip("F")
    return cleaned or None


def same_iccid(a: str | None, b: str | None) -> bool | None:
    """Whether two ICCIDs name the same SIM; None when either is unknown. Some modems omit
    the final Luhn check digit (19 vs 20 digits), so a one-digit shorter prefix matches."""
    na, nb = normalise_iccid(a), normalise_iccid(b)
    if na is None or nb is None:
        return None
    if na == nb:
        return True
    short, long_ = (na, nb) if len(na) < len(nb) else (nb, na)
    return len(long_) - len(short) == 1 and len(short) >= 18 and long_.startswith(short)


def _age_s(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds()


def _quarantine_reasons(s: HealthSignals) -> list[Reason]:
    out: list[Reason] = []
    if s.imei_change_event and (
        s.imei_change_at is None
        or s.quarantine_released_at is None
        or s.imei_change_at > s.quarantine_released_at
    ):
        out.append("imei_changed")
    if same_imei(s.bound_imei, s.reported_imei) is False:
        out.append("imei_mismatch")
    if same_iccid(s.registered_iccid, s.boot_iccid) is False or s.boot_iccid_taken:
        out.append("iccid_mismatch")
    return out


def _offline_reasons(s: HealthSignals, c: HealthConfig, now: datetime) -> list[Reason]:
    out: list[Reason] = []
    if not (s.ever_connected or s.ocpp_connected):
        out.append("never_connected")
    if s.sim_status is not None and s.sim_status.strip().upper() != ACTIVATED:
        out.append("sim_not_activated")
    if (s.ever_connected or s.ocpp_connected) and not s.ocpp_connected:
        since = s.ocpp_disconnected_since
        if since is None or _age_s(now, since) > c.grace_s:
            out.append("socket_down")
    if s.last_heartbeat_at is not None:
        interval = s.heartbeat_interval_s
        if interval is None or interval <= 0:
            interval = c.default_heartbeat_interval_s
        if _age_s(now, s.last_heartbeat_at) > c.heartbeat_factor * interval:
            out.append("heartbeat_missed")
    ended = s.platform_session_ended_at
    if (
        s.platform_session_open is False
        and ended is not None
        and _age_s(now, ended) > c.offline_after_s
        and not (
            c.heartbeat_overrides_session_end
            and s.last_heartbeat_at is not None
            and s.last_heartbeat_at > ended
        )
    ):
        out.append("no_data_session")
    return out


def _degraded_reasons(s: HealthSignals) -> list[Reason]:
    out: list[Reason] = []
    if s.roaming:
        out.append("roaming")
    if s.usage_exceeded:
        out.append("data_usage_exceeded")
    return out


def is_stale(signals: HealthSignals, config: HealthConfig, now: datetime) -> bool:
    """Platform signals are older than the bound (never stale when there are none yet)."""
    last = signals.platform_last_ok_at
    return last is not None and _age_s(now, last) > config.stale_after_s


def evaluate(signals: HealthSignals, config: HealthConfig, now: datetime) -> Health:
    """The charger's connectivity health at `now`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    reasons = [
        *_quarantine_reasons(signals),
        *_offline_reasons(signals, config, now),
        *_degraded_reasons(signals),
    ]
    stale = is_stale(signals, config, now)
    if not reasons:
        return Health(state="online", reason="ok", reasons=(), stale=stale)
    ordered = tuple(sorted(reasons, key=REASON_ORDER.index))
    return Health(
        state=STATE_OF_REASON[ordered[0]], reason=ordered[0], reasons=ordered, stale=stale
    )
