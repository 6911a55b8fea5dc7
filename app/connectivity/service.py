"""Connectivity state from the platform's push events, and the operator's release.

A push event is stored and applied in one transaction (the caller's), so the 200 is sent
only once both are durable. The platform's signals are kept per charger
(`charger_connectivity`) and turned into a verdict by the pure `rules.evaluate`; the
charger's own link (OCPP) is represented by the state the row already had, so a platform
signal never brings back a charger the link says is down. Precedence: quarantined >
offline > degraded > online.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

import asyncpg
import msgspec

from app.admin import audit
from app.connectivity.dates import parse_optional_datetime
from app.connectivity.push import USAGE_EVENT_TYPES, PushEvent
from app.connectivity.rules import (
    QUARANTINE_REASONS,
    HealthConfig,
    HealthSignals,
    evaluate,
    normalise_imei,
)
from app.connectivity.schemas import PushAck, ReleaseResult
from app.core.auth import StaffPrincipal
from app.core.db import Connection
from app.core.errors import DomainError, NotFound
from app.core.sql import Q

# Reasons that come from the platform's signals: when they clear, the link's own verdict
# (online if the charger has been seen, else never_connected) applies again.
PLATFORM_REASONS: Final = frozenset(
    {
        "imei_changed",
        "imei_mismatch",
        "sim_not_activated",
        "no_data_session",
        "roaming",
        "data_usage_exceeded",
    }
)
RANK: Final = {"online": 0, "degraded": 1, "offline": 2, "quarantined": 3}


class InvalidSignature(DomainError):
    status, code, title = 403, "invalid_signature", "The push event is not signed validly"


def health_config(stale_after_s: float) -> HealthConfig:
    return HealthConfig(stale_after_s=stale_after_s)


class _Row(msgspec.Struct, kw_only=True):
    """A charger with its connectivity row (mutable while an event is applied)."""

    charger_id: Any
    charge_point_id: str
    iccid: str | None
    bound_imei: str | None
    state: str
    reason: str
    last_seen_at: datetime | None
    stale: bool
    sim_status: str | None
    sim_status_at: datetime | None
    imei: str | None
    session_open: bool | None
    session_ended_at: datetime | None
    session_at: datetime | None
    imei_change_at: datetime | None
    quarantine_released_at: datetime | None
    usage_exceeded: bool
    platform_last_ok_at: datetime | None
    changed_at: datetime


def charger_row(record: asyncpg.Record) -> _Row:
    return _Row(**dict(record))


def platform_health(row: _Row, config: HealthConfig, now: datetime) -> tuple[str, str, bool]:
    """(state, reason, stale) from the platform's signals alone (the link taken as up)."""
    health = evaluate(
        HealthSignals(
            ocpp_connected=True,
            ever_connected=True,
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
        ),
        config,
        now,
    )
    return health.state, health.reason, health.stale


def _link_verdict(row: _Row, *, releasing: bool = False) -> tuple[str, str]:
    """The verdict the row holds apart from platform reasons (and, when an operator
    releases, apart from any quarantine)."""
    lifted = row.reason in PLATFORM_REASONS or (releasing and row.reason in QUARANTINE_REASONS)
    if not lifted:
        return row.state, row.reason
    return ("online", "ok") if row.last_seen_at is not None else ("offline", "never_connected")


async def _store_signals(conn: Connection, row: _Row) -> None:
    await conn.execute(
        Q("connectivity.update_platform_signals"),
        row.charger_id,
        row.sim_status,
        row.sim_status_at,
        row.imei,
        row.session_open,
        row.session_ended_at,
        row.session_at,
        row.imei_change_at,
        row.quarantine_released_at,
        row.usage_exceeded,
        row.platform_last_ok_at,
        row.stale,
    )


async def settle(
    conn: Connection,
    row: _Row,
    config: HealthConfig,
    now: datetime,
    *,
    source: str,
    releasing: bool = False,
) -> bool:
    """Store the signals, recompute the verdict and record a change. True if it changed."""
    p_state, p_reason, stale = platform_health(row, config, now)
    row.stale = stale
    await _store_signals(conn, row)
    l_state, l_reason = _link_verdict(row, releasing=releasing)
    state, reason = (p_state, p_reason) if RANK[p_state] > RANK[l_state] else (l_state, l_reason)
    if (state, reason) == (row.state, row.reason):
        return False
    await conn.execute(Q("connectivity.set_state"), row.charger_id, state, reason, now)
    await conn.execute(
        Q("connectivity.insert_change"), row.charger_id, now, row.state, state, reason, source
    )
    if state == "quarantined" and row.state != "quarantined":
        await conn.execute(
            Q("connectivity.insert_alert"), row.charger_id, "quarantine", reason, now
        )
    row.state, row.reason = state, reason
    return True


def is_newer(at: datetime, than: datetime | None) -> bool:
    return than is None or at >= than


def apply_to_row(row: _Row, event: PushEvent, now: datetime) -> bool:
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
    stored_id = await conn.fetchval(
        Q("connectivity.insert_push_event"),
        event.event_id,
        event.event_type,
        event.iccid,
        event.timestamp,
        event.raw_timestamp,
        signature2.strip().replace(" ", "+"),
        payload,
        now,
    )
    if stored_id is None:
        existing = await conn.fetchrow(Q("connectivity.push_event_by_id"), event.event_id)
        if existing is None:
            # The (timestamp, signature2) pair was used by another event: a replay.
            raise InvalidSignature("this signature was already used by another event")
        return PushAck(
            event_id=event.event_id, status="duplicate", outcome=existing["outcome"] or ""
        )
    outcome = await apply_event(conn, event, now, config)
    await conn.execute(Q("connectivity.mark_push_processed"), stored_id, now, outcome)
    return PushAck(event_id=event.event_id, status="applied", outcome=outcome)


async def apply_event(
    conn: Connection, event: PushEvent, now: datetime, config: HealthConfig
) -> str:
    if not event.known:
        return "unknown_type"
    record = await conn.fetchrow(Q("connectivity.charger_by_iccid_for_update"), event.iccid)
    if record is None:
        return "unknown_charger"
    row = charger_row(record)
    apply_to_row(row, event, now)
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
    """Lift a quarantine: the IMEI change is spent and the charger is bound to the IMEI
    its SIM is in now. Audited. Other reasons (SIM deactivated, link down) still apply."""
    try:
        key = UUID(charger_id)
    except ValueError:
        raise NotFound("no charger with this id") from None
    record = await conn.fetchrow(Q("connectivity.charger_by_id_for_update"), key)
    if record is None:
        raise NotFound("no charger with this id")
    row = charger_row(record)
    before = {"state": row.state, "reason": row.reason, "bound_imei": row.bound_imei}
    was_quarantined = row.state == "quarantined"
    row.quarantine_released_at = now
    if row.imei and row.imei != row.bound_imei:
        row.bound_imei = row.imei
        await conn.execute(Q("connectivity.rebind_imei"), row.charger_id, row.imei)
    await settle(conn, row, config, now, source=f"staff:{actor.staff_id}:release", releasing=True)
    after = {"state": row.state, "reason": row.reason, "bound_imei": row.bound_imei}
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
