"""Typed functions over `sql/queries/connectivity.sql`: one per block, keyword arguments,
rows as Structs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from app.connectivity.schemas import Alert
from app.core.sql import Executor, execute, fetch_all, fetch_one, fetch_val


class ChargerSignals(msgspec.Struct, kw_only=True):
    """A charger with every stored signal (mutable while a signal is recorded)."""

    charger_id: uuid.UUID
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
    offline_since: datetime | None
    boot_iccid: str | None
    link_open: bool | None
    """None: no socket was ever recorded (the last message is the only link evidence)."""
    link_down_since: datetime | None
    iccid_taken: bool


class StoredPushEvent(msgspec.Struct, frozen=True):
    id: int
    event_id: str
    processed_at: datetime | None
    outcome: str | None


class FlapCount(msgspec.Struct, frozen=True):
    flap_count: int
    flap_window_start: datetime


class _Iccid(msgspec.Struct, frozen=True):
    iccid: str


class _ChargerId(msgspec.Struct, frozen=True):
    charger_id: uuid.UUID


# ---- push events ------------------------------------------------------------------------


async def insert_push_event(
    db: Executor,
    *,
    event_id: str,
    event_type: str,
    iccid: str,
    sent_at: datetime,
    sent_at_raw: str,
    signature2: str,
    payload: dict[str, Any],
    received_at: datetime,
) -> int | None:
    """The stored id, or None when the eventId or the (timestamp, signature2) pair was seen."""
    stored: int | None = await fetch_val(
        db,
        "connectivity.insert_push_event",
        event_id,
        event_type,
        iccid,
        sent_at,
        sent_at_raw,
        signature2,
        payload,
        received_at,
    )
    return stored


async def push_event_by_id(db: Executor, *, event_id: str) -> StoredPushEvent | None:
    return await fetch_one(db, "connectivity.push_event_by_id", StoredPushEvent, event_id)


async def mark_push_processed(
    db: Executor, *, push_id: int, processed_at: datetime, outcome: str
) -> None:
    await execute(db, "connectivity.mark_push_processed", push_id, processed_at, outcome)


# ---- a charger's signals and verdict ---------------------------------------------------


async def charger_signals_for_update(
    db: Executor, *, charger_id: uuid.UUID | None, iccid: str | None
) -> ChargerSignals | None:
    """By id or by the ICCID of its SIM; the connectivity row stays locked."""
    return await fetch_one(
        db, "connectivity.charger_signals_for_update", ChargerSignals, charger_id, iccid
    )


async def update_platform_signals(db: Executor, *, signals: ChargerSignals) -> None:
    s = signals
    await execute(
        db,
        "connectivity.update_platform_signals",
        s.charger_id,
        s.sim_status,
        s.sim_status_at,
        s.imei,
        s.session_open,
        s.session_ended_at,
        s.session_at,
        s.imei_change_at,
        s.quarantine_released_at,
        s.usage_exceeded,
        s.platform_last_ok_at,
        s.stale,
    )


async def set_verdict(
    db: Executor,
    *,
    charger_id: uuid.UUID,
    state: str,
    reason: str,
    stale: bool,
    offline_since: datetime | None,
    now: datetime,
) -> None:
    await execute(
        db, "connectivity.set_verdict", charger_id, state, reason, stale, offline_since, now
    )


async def insert_change(
    db: Executor,
    *,
    charger_id: uuid.UUID,
    at: datetime,
    from_state: str,
    to_state: str,
    reason: str,
    source: str,
) -> None:
    await execute(
        db, "connectivity.insert_change", charger_id, at, from_state, to_state, reason, source
    )


async def seen(db: Executor, *, charger_id: uuid.UUID, at: datetime) -> None:
    await execute(db, "connectivity.seen", charger_id, at)


async def link_opened(
    db: Executor, *, charger_id: uuid.UUID, now: datetime, window_s: float
) -> FlapCount | None:
    return await fetch_one(db, "connectivity.link_opened", FlapCount, charger_id, now, window_s)


async def rebind_imei(db: Executor, *, charger_id: uuid.UUID, imei: str) -> None:
    await execute(db, "connectivity.rebind_imei", charger_id, imei)


async def rebind_iccid(db: Executor, *, charger_id: uuid.UUID, iccid: str) -> None:
    await execute(db, "connectivity.rebind_iccid", charger_id, iccid)


async def forget_platform_signals(db: Executor, *, charger_id: uuid.UUID) -> None:
    await execute(db, "connectivity.forget_platform_signals", charger_id)


# ---- sweeps -----------------------------------------------------------------------------


async def sweep_cursor(db: Executor) -> datetime | None:
    since: datetime | None = await fetch_val(db, "connectivity.sweep_cursor")
    return since


async def save_sweep_ok(db: Executor, *, started: datetime) -> None:
    await execute(db, "connectivity.save_sweep_ok", started)


async def save_sweep_error(db: Executor, *, error: str, at: datetime) -> None:
    await execute(db, "connectivity.save_sweep_error", error, at)


async def fleet_iccids(db: Executor, *, iccids: Sequence[str]) -> list[str]:
    """Which of these ICCIDs belong to the fleet."""
    return [r.iccid for r in await fetch_all(db, "connectivity.fleet_iccids", _Iccid, iccids)]


async def touch_platform_ok(db: Executor, *, at: datetime) -> None:
    await execute(db, "connectivity.touch_platform_ok", at)


async def mark_stale(db: Executor, *, older_than: datetime) -> int:
    """How many chargers' signals turned stale."""
    return await execute(db, "connectivity.mark_stale", older_than)


async def links_due(
    db: Executor, *, now: datetime, grace_s: float, silent_s: float, no_session_s: float
) -> list[uuid.UUID]:
    rows = await fetch_all(
        db, "connectivity.links_due", _ChargerId, now, grace_s, silent_s, no_session_s
    )
    return [r.charger_id for r in rows]


# ---- operator alerts --------------------------------------------------------------------


async def insert_alert(
    db: Executor,
    *,
    charger_id: uuid.UUID,
    kind: str,
    reason: str,
    detail: dict[str, Any],
    dedupe_key: str,
    raised_at: datetime,
) -> int | None:
    """The new alert's id, or None when one with this dedupe key exists."""
    alert_id: int | None = await fetch_val(
        db, "connectivity.insert_alert", charger_id, kind, reason, detail, dedupe_key, raised_at
    )
    return alert_id


async def raise_offline_alerts(db: Executor, *, now: datetime, after_s: float) -> int:
    """How many outage alerts were raised now."""
    return await execute(db, "connectivity.raise_offline_alerts", now, after_s)


async def open_alerts(db: Executor) -> int:
    return int(await fetch_val(db, "connectivity.open_alerts"))


async def list_alerts(
    db: Executor, *, kind: str | None, open_only: bool, before_id: int | None, limit: int
) -> list[Alert]:
    """Newest first, below the keyset `before_id` when given."""
    return await fetch_all(db, "connectivity.list_alerts", Alert, kind, open_only, before_id, limit)
