"""Connectivity state: one place decides it.

`settle()` reads every stored signal of a charger — its OCPP link (`ocpp_links`: socket up
or down and since when, the ICCID at its last boot; `last_seen_at`), the platform's last
known signals (SIM status, data session, reported IMEI, usage events), the IMEI/ICCID
bindings and the last quarantine release — turns them into a verdict with the pure
`rules.evaluate` and writes state + reason, a history row (`connectivity_changes`: when,
from, to, why, source) and the alerts a change calls for.

Every writer records its own signal and calls `settle()`: the OCPP handlers
(`app.chargers.service`: boot, heartbeat, socket down after the grace), push events, the
platform sweep, the link sweep and the operator's release. Nothing else writes
`charger_connectivity.state`. Precedence: quarantined > offline > degraded > online.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final
from uuid import UUID

import asyncpg
import msgspec

from app.connectivity import alerts, queries
from app.connectivity.dates import parse_optional_datetime
from app.connectivity.push import USAGE_EVENT_TYPES, PushEvent
from app.connectivity.queries import ChargerSignals
from app.connectivity.rules import (
    Health,
    HealthConfig,
    HealthSignals,
    evaluate,
    normalise_imei,
    same_iccid,
)
from app.connectivity.schemas import PushAck, ReleaseResult
from app.core import audit
from app.core.auth import StaffPrincipal
from app.core.db import Connection
from app.core.errors import DomainError, NotFound
from app.core.settings import Settings


class InvalidSignature(DomainError):
    status, code, title = 403, "invalid_signature", "The push event is not signed validly"


class IccidInUse(DomainError):
    status, code, title = 409, "iccid_in_use", "The SIM is registered to another charger"


class ConnectivityConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The health rules plus the alert thresholds, from the settings."""

    health: HealthConfig = HealthConfig()
    flap_threshold: int = 5
    flap_window_s: float = 600.0
    offline_alert_after_s: float = 900.0


DEFAULT: Final = ConnectivityConfig()


def config_from(settings: Settings) -> ConnectivityConfig:
    return ConnectivityConfig(
        health=HealthConfig(
            grace_s=settings.ocpp_offline_grace_s,
            heartbeat_factor=settings.connectivity_heartbeat_factor,
            default_heartbeat_interval_s=float(settings.ocpp_heartbeat_interval_s),
            offline_after_s=settings.connectivity_offline_after_s,
            stale_after_s=settings.control_center_stale_after_s,
        ),
        flap_threshold=settings.connectivity_flap_threshold,
        flap_window_s=settings.connectivity_flap_window_s,
        offline_alert_after_s=settings.offline_alert_after_s,
    )


def health_config(settings: Settings) -> HealthConfig:
    return config_from(settings).health


# The OCPP handlers get only the pool: the app's lifespan registers its configuration
# under the pool (asyncpg pools take no attributes or weak references).
_BY_POOL: dict[int, ConnectivityConfig] = {}


def register(pool: asyncpg.Pool, settings: Settings) -> None:
    _BY_POOL[id(pool)] = config_from(settings)


def unregister(pool: asyncpg.Pool) -> None:
    _BY_POOL.pop(id(pool), None)


def config_for(pool: asyncpg.Pool) -> ConnectivityConfig:
    return _BY_POOL.get(id(pool), DEFAULT)


def signals_of(row: ChargerSignals) -> HealthSignals:
    """The pure rules' view of the stored signals."""
    seen = row.last_seen_at is not None
    return HealthSignals(
        ocpp_connected=row.link_open if row.link_open is not None else seen,
        ocpp_disconnected_since=row.link_down_since if row.link_open is False else None,
        last_heartbeat_at=row.last_seen_at,
        ever_connected=seen,
        registered_iccid=row.iccid,
        boot_iccid=row.boot_iccid,
        boot_iccid_taken=row.iccid_taken,
        bound_imei=row.bound_imei,
        sim_status=row.sim_status,
        platform_session_open=row.session_open,
        platform_session_ended_at=row.session_ended_at,
        reported_imei=row.imei,
        imei_change_event=row.imei_change_at is not None,
        imei_change_at=row.imei_change_at,
        quarantine_released_at=row.quarantine_released_at,
        usage_exceeded=row.usage_exceeded,
        platform_last_ok_at=row.platform_last_ok_at,
    )


async def store_signals(conn: Connection, row: ChargerSignals) -> None:
    await queries.update_platform_signals(conn, signals=row)


async def settle(
    conn: Connection, row: ChargerSignals, config: HealthConfig, now: datetime, *, source: str
) -> bool:
    """Decide the charger's state from its stored signals and write it: state + reason,
    a history row and the alerts a change calls for. The caller holds the row lock (the
    `*_for_update` queries) and has stored its own signal. True if the state changed."""
    health: Health = evaluate(signals_of(row), config, now)
    state, reason = health.state, health.reason
    changed = (state, reason) != (row.state, row.reason)
    if not changed and health.stale == row.stale:
        return False
    offline_since = None
    if state == "offline":
        offline_since = (row.offline_since if row.state == "offline" else None) or now
    await queries.set_verdict(
        conn,
        charger_id=row.charger_id,
        state=state,
        reason=reason,
        stale=health.stale,
        offline_since=offline_since,
        now=now,
    )
    row.stale, row.offline_since = health.stale, offline_since
    if not changed:
        return False
    await queries.insert_change(
        conn,
        charger_id=row.charger_id,
        at=now,
        from_state=row.state,
        to_state=state,
        reason=reason,
        source=source,
    )
    if state == "quarantined" and row.state != "quarantined":
        await alerts.raise_alert(
            conn,
            row.charger_id,
            "quarantine",
            reason,
            dedupe_key=f"quarantine:{row.charger_id}:{now.isoformat()}",
            at=now,
            detail={"reasons": list(health.reasons), "source": source},
        )
    row.state, row.reason = state, reason
    return True


async def lock_signals(
    conn: Connection, *, charger_id: UUID | None = None, iccid: str | None = None
) -> ChargerSignals | None:
    """A charger's stored signals, by id or by SIM, its connectivity row locked for the
    rest of the transaction; None for an unknown charger."""
    return await queries.charger_signals_for_update(conn, charger_id=charger_id, iccid=iccid)


async def settle_charger(
    conn: Connection, charger_id: UUID, config: HealthConfig, now: datetime, *, source: str
) -> tuple[ChargerSignals | None, bool]:
    """Lock the charger's connectivity row, then `settle()` (for callers whose signal is
    already stored); (row, changed), row None for an unknown charger."""
    row = await lock_signals(conn, charger_id=charger_id)
    if row is None:
        return None, False
    return row, await settle(conn, row, config, now, source=source)


async def link_opened(
    conn: Connection, charger_id: UUID, now: datetime, config: ConnectivityConfig
) -> bool:
    """Count an authenticated connection; the one that reaches the flapping threshold
    within the window raises an alert (once per window). True when it did."""
    row = await queries.link_opened(
        conn, charger_id=charger_id, now=now, window_s=config.flap_window_s
    )
    if row is None or row.flap_count != config.flap_threshold:
        return False
    return await alerts.raise_alert(
        conn,
        charger_id,
        "flapping",
        "reconnects",
        dedupe_key=f"flapping:{charger_id}:{row.flap_window_start.isoformat()}",
        at=now,
        detail={"connections": row.flap_count, "window_s": config.flap_window_s},
    )


def is_newer(at: datetime, than: datetime | None) -> bool:
    return than is None or at >= than


def apply_to_row(row: ChargerSignals, event: PushEvent, now: datetime) -> bool:
    """Fold one event into the platform signals; False for a type we do not act on.
    Events older than what a field already reflects are ignored (out-of-order delivery)."""
    at = event.timestamp
    kind = event.event_type
    if kind == "IMEI_CHANGE":
        if is_newer(at, row.imei_change_at):
            row.imei_change_at = at
            hint = normalise_imei(event.hint_imei())
            if hint:
                row.imei = hint
    elif kind == "SIM_STATE_CHANGE":
        status = event.hint_sim_status()
        if status and is_newer(at, row.sim_status_at):
            row.sim_status, row.sim_status_at = status, at
    elif kind in ("SESSION_STOP", "SESSION_START"):
        if is_newer(at, row.session_at):
            row.session_at = at
            if kind == "SESSION_START":
                row.session_open, row.session_ended_at = True, None
            else:
                try:
                    ended = parse_optional_datetime(event.get("dateSessionEnded"))
                except ValueError:
                    ended = None
                row.session_open, row.session_ended_at = False, ended or at
    elif kind in USAGE_EVENT_TYPES:
        row.usage_exceeded = True
    else:
        return False
    row.platform_last_ok_at = now
    return True


async def receive_push(
    conn: Connection,
    event: PushEvent,
    signature2: str,
    now: datetime,
    config: HealthConfig,
) -> PushAck:
    """Store the event (once per eventId) and apply it, in the caller's transaction."""
    payload = {"kind": event.data_kind, "data": event.data}
    stored_id = await queries.insert_push_event(
        conn,
        event_id=event.event_id,
        event_type=event.event_type,
        iccid=event.iccid,
        sent_at=event.timestamp,
        sent_at_raw=event.raw_timestamp,
        signature2=signature2.strip().replace(" ", "+"),
        payload=payload,
        received_at=now,
    )
    if stored_id is None:
        existing = await queries.push_event_by_id(conn, event_id=event.event_id)
        if existing is None:
            # The (timestamp, signature2) pair was used by another event: a replay.
            raise InvalidSignature("this signature was already used by another event")
        return PushAck(event_id=event.event_id, status="duplicate", outcome=existing.outcome or "")
    outcome = await apply_event(conn, event, now, config)
    await queries.mark_push_processed(conn, push_id=stored_id, processed_at=now, outcome=outcome)
    return PushAck(event_id=event.event_id, status="applied", outcome=outcome)


async def apply_event(
    conn: Connection, event: PushEvent, now: datetime, config: HealthConfig
) -> str:
    if not event.known:
        return "unknown_type"
    row = await lock_signals(conn, iccid=event.iccid)
    if row is None:
        return "unknown_charger"
    apply_to_row(row, event, now)
    await store_signals(conn, row)
    if event.event_type in USAGE_EVENT_TYPES:
        await alerts.raise_alert(
            conn,
            row.charger_id,
            "degraded",
            "data_usage_exceeded",
            dedupe_key=f"push:{event.event_id}",
            at=now,
            detail={"event_type": event.event_type, "data": dict(event.data)},
        )
    changed = await settle(
        conn, row, config, now, source=f"push:{event.event_type}:{event.event_id}"
    )
    return "state_changed" if changed else "recorded"


async def release(
    conn: Connection,
    charger_id: str,
    *,
    actor: StaffPrincipal,
    now: datetime,
    config: HealthConfig,
    request_id: str | None,
) -> ReleaseResult:
    """Lift a quarantine: the IMEI change is spent, the charger is bound to the IMEI its
    SIM is in now and registered with the SIM it booted with (409 when another charger
    holds that SIM). Audited. Other reasons (SIM deactivated, link down) still apply."""
    try:
        key = UUID(charger_id)
    except ValueError:
        raise NotFound("no charger with this id") from None
    row = await lock_signals(conn, charger_id=key)
    if row is None:
        raise NotFound("no charger with this id")
    before = {
        "state": row.state,
        "reason": row.reason,
        "bound_imei": row.bound_imei,
        "iccid": row.iccid,
    }
    was_quarantined = row.state == "quarantined"
    row.quarantine_released_at = now
    if row.imei and row.imei != row.bound_imei:
        row.bound_imei = row.imei
        await queries.rebind_imei(conn, charger_id=row.charger_id, imei=row.imei)
    if row.boot_iccid and (row.iccid_taken or same_iccid(row.iccid, row.boot_iccid) is False):
        await _rebind_iccid(conn, row, row.boot_iccid)
    await store_signals(conn, row)
    await settle(conn, row, config, now, source=f"staff:{actor.staff_id}:release")
    after = {
        "state": row.state,
        "reason": row.reason,
        "bound_imei": row.bound_imei,
        "iccid": row.iccid,
    }
    await audit.record(
        conn,
        actor=actor,
        action="charger.release",
        entity_type="charger",
        entity_id=str(row.charger_id),
        before=before,
        after=after,
        request_id=request_id,
    )
    return ReleaseResult(
        charger_id=str(row.charger_id),
        charge_point_id=row.charge_point_id,
        connectivity=row.state,
        connectivity_reason=row.reason,
        bound_imei=row.bound_imei,
        released=was_quarantined and row.state != "quarantined",
    )


async def _rebind_iccid(conn: Connection, row: ChargerSignals, iccid: str) -> None:
    """Register the SIM the charger booted with; the old SIM's platform signals go."""
    if row.iccid_taken:
        raise IccidInUse(f"SIM {iccid} is registered to another charger")
    try:
        async with conn.transaction():
            await queries.rebind_iccid(conn, charger_id=row.charger_id, iccid=iccid)
    except asyncpg.UniqueViolationError:
        raise IccidInUse(f"SIM {iccid} is registered to another charger") from None
    await queries.forget_platform_signals(conn, charger_id=row.charger_id)
    row.iccid = iccid
    row.sim_status = row.sim_status_at = row.imei = None
    row.session_open = None
    row.session_ended_at = row.session_at = None
    row.usage_exceeded = False
