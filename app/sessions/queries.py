"""Typed functions over `sql/queries/sessions.sql` (one per block)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from app.core.sql import Executor, execute, fetch_all, fetch_one, fetch_returned, fetch_val
from app.pricing.tariff import Tariff
from app.sessions.schemas import (
    ActiveSession,
    ConnectorRef,
    HoldTotal,
    LockedSession,
    NewSession,
    ReadingRow,
    SessionRef,
    SessionRow,
    SocRow,
    StartConnector,
)


async def connector_for_start(
    db: Executor, *, connector_id: uuid.UUID, driver_id: uuid.UUID
) -> StartConnector | None:
    return await fetch_one(
        db, "sessions.connector_for_start", StartConnector, connector_id, driver_id
    )


async def connector_busy(db: Executor, *, charger_id: uuid.UUID, connector_no: int) -> bool:
    return bool(await fetch_val(db, "sessions.connector_busy", charger_id, connector_no))


async def driver_tag(db: Executor, *, driver_id: uuid.UUID) -> str | None:
    value = await fetch_val(db, "sessions.driver_tag", driver_id)
    return None if value is None else str(value)


async def active_session_of_driver(db: Executor, *, driver_id: uuid.UUID) -> ActiveSession | None:
    return await fetch_one(db, "sessions.active_session_of_driver", ActiveSession, driver_id)


async def insert_starting(
    db: Executor,
    *,
    origin: str,
    charger_id: uuid.UUID,
    connector_id: uuid.UUID | None,
    connector_no: int,
    id_tag: str,
    driver_id: uuid.UUID,
    now: datetime,
    tariff_id: uuid.UUID,
    tariff_version: int,
    currency: str,
    reservation_uuid: uuid.UUID | None,
) -> NewSession:
    return await fetch_returned(
        db,
        "sessions.insert_starting",
        NewSession,
        origin,
        charger_id,
        connector_id,
        connector_no,
        id_tag,
        driver_id,
        now,
        tariff_id,
        tariff_version,
        currency,
        reservation_uuid,
    )


async def hold_placed(
    db: Executor, *, session_id: uuid.UUID, amount_minor: int
) -> HoldTotal | None:
    return await fetch_one(db, "sessions.hold_placed", HoldTotal, session_id, amount_minor)


async def discard_unheld(db: Executor, *, session_id: uuid.UUID) -> None:
    await execute(db, "sessions.discard_unheld", session_id)


async def fail_starting(db: Executor, *, session_id: uuid.UUID, reason: str, now: datetime) -> bool:
    """True when the session was STARTING and is FAILED now."""
    return await fetch_val(db, "sessions.fail_starting", session_id, reason, now) is not None


async def stale_starting(db: Executor, *, before: datetime, limit: int) -> list[uuid.UUID]:
    rows = await fetch_all(db, "sessions.stale_starting", SessionRef, before, limit)
    return [r.session_id for r in rows]


async def request_stop(db: Executor, *, session_id: uuid.UUID, now: datetime) -> None:
    await execute(db, "sessions.request_stop", session_id, now)


async def mark_hold_exhausted(db: Executor, *, session_id: uuid.UUID, now: datetime) -> bool:
    return await fetch_val(db, "sessions.mark_hold_exhausted", session_id, now) is not None


async def session(
    db: Executor, *, session_id: uuid.UUID, driver_id: uuid.UUID | None = None
) -> SessionRow | None:
    return await fetch_one(db, "sessions.session", SessionRow, session_id, driver_id)


async def session_for_update(db: Executor, *, session_id: uuid.UUID) -> LockedSession | None:
    return await fetch_one(db, "sessions.session_for_update", LockedSession, session_id)


async def driver_sessions(
    db: Executor,
    *,
    driver_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[SessionRow]:
    at, last = after if after else (None, None)
    return await fetch_all(db, "sessions.driver_sessions", SessionRow, driver_id, at, last, limit)


async def admin_sessions(
    db: Executor,
    *,
    status: str | None,
    site_id: uuid.UUID | None,
    start_from: datetime | None,
    start_to: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[SessionRow]:
    at, last = after if after else (None, None)
    return await fetch_all(
        db,
        "sessions.admin_sessions",
        SessionRow,
        status,
        site_id,
        start_from,
        start_to,
        at,
        last,
        limit,
    )


async def energy_readings(db: Executor, *, transaction_id: int) -> list[ReadingRow]:
    return await fetch_all(db, "sessions.energy_readings", ReadingRow, transaction_id)


async def first_soc(db: Executor, *, transaction_id: int) -> SocRow | None:
    return await fetch_one(db, "sessions.first_soc", SocRow, transaction_id)


async def insert_bill(
    db: Executor,
    *,
    session_id: uuid.UUID,
    tariff_id: uuid.UUID,
    tariff_version: int,
    currency: str,
    energy_wh: int,
    session_start: datetime,
    charging_end: datetime,
    session_end: datetime,
    subtotal_minor: int,
    vat_minor: int,
    total_minor: int,
    lines: list[dict[str, Any]],
    billed_at: datetime,
) -> bool:
    """True when this call wrote the bill (False: the session was billed before)."""
    written = await fetch_val(
        db,
        "sessions.insert_bill",
        session_id,
        tariff_id,
        tariff_version,
        currency,
        energy_wh,
        session_start,
        charging_end,
        session_end,
        subtotal_minor,
        vat_minor,
        total_minor,
        lines,
        billed_at,
    )
    return written is not None


async def set_receipt(
    db: Executor,
    *,
    session_id: uuid.UUID,
    subtotal_minor: int,
    vat_minor: int,
    total_minor: int,
    receipt: dict[str, Any],
    billed_at: datetime,
) -> None:
    await execute(
        db,
        "sessions.set_receipt",
        session_id,
        subtotal_minor,
        vat_minor,
        total_minor,
        receipt,
        billed_at,
    )


async def begin_held(
    db: Executor,
    *,
    charger_id: uuid.UUID,
    driver_id: uuid.UUID,
    connector_no: int,
    connector_id: uuid.UUID,
    meter_start_wh: int,
    started_at: datetime,
    reservation_id: int | None,
) -> NewSession | None:
    return await fetch_one(
        db,
        "sessions.begin_held",
        NewSession,
        charger_id,
        driver_id,
        connector_no,
        connector_id,
        meter_start_wh,
        started_at,
        reservation_id,
    )


async def set_reservation(
    db: Executor, *, session_id: uuid.UUID, reservation_uuid: uuid.UUID
) -> None:
    await execute(db, "sessions.set_reservation", session_id, reservation_uuid)


async def first_connector(db: Executor, *, charger_id: uuid.UUID) -> ConnectorRef | None:
    return await fetch_one(db, "sessions.first_connector", ConnectorRef, charger_id)


async def recently_cancelled(
    db: Executor, *, charger_id: uuid.UUID, driver_id: uuid.UUID, since: datetime
) -> bool:
    return bool(await fetch_val(db, "sessions.recently_cancelled", charger_id, driver_id, since))


async def tariff_in_force(db: Executor, *, connector_id: uuid.UUID, at: datetime) -> Tariff | None:
    """The tariff version a session starting `at` on this connector locks."""
    return await fetch_one(db, "sessions.tariff_in_force", Tariff, connector_id, at)
