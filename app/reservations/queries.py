"""Typed functions over `sql/queries/reservations.sql` (one per block)."""

from __future__ import annotations

import uuid
from datetime import datetime

from app.core.sql import Executor, execute, fetch_all, fetch_one, fetch_returned, fetch_val
from app.reservations.schemas import (
    ActivatedRow,
    BeganHold,
    CancelledRow,
    Checks,
    ConnectorRow,
    DriverRow,
    EndedRow,
    IdRow,
    RequestContext,
    ReservationRow,
)


async def connector(db: Executor, *, connector_id: uuid.UUID) -> ConnectorRow | None:
    return await fetch_one(db, "reservations.connector", ConnectorRow, connector_id)


async def driver(db: Executor, *, driver_id: uuid.UUID) -> DriverRow | None:
    return await fetch_one(db, "reservations.driver", DriverRow, driver_id)


async def lock_connector(db: Executor, *, connector_id: uuid.UUID) -> None:
    await fetch_val(db, "reservations.lock_connector", connector_id)


async def request_context(
    db: Executor, *, connector_id: uuid.UUID, driver_id: uuid.UUID
) -> RequestContext | None:
    return await fetch_one(
        db, "reservations.request_context", RequestContext, connector_id, driver_id
    )


async def lock_driver(db: Executor, *, driver_id: uuid.UUID) -> None:
    await fetch_val(db, "reservations.lock_driver", driver_id)


async def checks(
    db: Executor,
    *,
    driver_id: uuid.UUID,
    now: datetime,
    start_at: datetime,
    expires_at: datetime,
    connector_id: uuid.UUID,
) -> Checks:
    return await fetch_returned(
        db, "reservations.checks", Checks, driver_id, now, start_at, expires_at, connector_id
    )


async def insert(
    db: Executor,
    *,
    driver_id: uuid.UUID,
    connector: ConnectorRow,
    kind: str,
    status: str,
    start_at: datetime,
    expires_at: datetime,
    began_at: datetime | None,
    moved_from: uuid.UUID | None,
    now: datetime,
    charger_reserved_at: datetime | None = None,  # set when the charger accepts ReserveNow
) -> ReservationRow:
    """A new reservation row; a constraint's refusal raises (see
    `service.refused_by_constraints`)."""
    return await fetch_returned(
        db,
        "reservations.insert",
        ReservationRow,
        driver_id,
        connector.connector_id,
        connector.charger_id,
        connector.site_id,
        connector.connector_no,
        kind,
        status,
        start_at,
        expires_at,
        began_at,
        charger_reserved_at,
        moved_from,
        now,
    )


async def begin_hold(
    db: Executor,
    *,
    driver_id: uuid.UUID,
    connector: ConnectorRow,
    start_at: datetime,
    expires_at: datetime,
    now: datetime,
) -> BeganHold:
    return await fetch_returned(
        db,
        "reservations.begin_hold",
        BeganHold,
        driver_id,
        connector.connector_id,
        connector.charger_id,
        connector.site_id,
        connector.connector_no,
        start_at,
        expires_at,
        now,
    )


async def confirm_hold(
    db: Executor, *, reservation_id: uuid.UUID, charger_id: uuid.UUID, now: datetime
) -> ReservationRow | None:
    return await fetch_one(
        db, "reservations.confirm_hold", ReservationRow, reservation_id, charger_id, now
    )


async def delete_pending(db: Executor, *, reservation_id: uuid.UUID) -> int:
    return await execute(db, "reservations.delete_pending", reservation_id)


async def sweep_pending(db: Executor, *, before: datetime) -> list[ReservationRow]:
    return await fetch_all(db, "reservations.sweep_pending", ReservationRow, before)


async def get_for_driver(
    db: Executor, *, reservation_id: uuid.UUID, driver_id: uuid.UUID
) -> ReservationRow | None:
    return await fetch_one(
        db, "reservations.get_for_driver", ReservationRow, reservation_id, driver_id
    )


async def lock(db: Executor, *, reservation_id: uuid.UUID) -> ReservationRow | None:
    return await fetch_one(db, "reservations.lock", ReservationRow, reservation_id)


async def get(db: Executor, *, reservation_id: uuid.UUID) -> ReservationRow | None:
    return await fetch_one(db, "reservations.get", ReservationRow, reservation_id)


async def list_for_driver(
    db: Executor,
    *,
    driver_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ReservationRow]:
    after_at, after_id = after if after is not None else (None, None)
    return await fetch_all(
        db, "reservations.list_for_driver", ReservationRow, driver_id, after_at, after_id, limit
    )


async def end_reservation(
    db: Executor,
    *,
    reservation_id: uuid.UUID,
    status: str,
    cancel_reason: str | None,
    now: datetime,
    released: bool,
) -> ReservationRow | None:
    return await fetch_one(
        db,
        "reservations.end_reservation",
        ReservationRow,
        reservation_id,
        status,
        cancel_reason,
        now,
        released,
    )


async def cancel(
    db: Executor, *, reservation_id: uuid.UUID, driver_id: uuid.UUID, now: datetime
) -> CancelledRow | None:
    return await fetch_one(db, "reservations.cancel", CancelledRow, reservation_id, driver_id, now)


async def release_done(db: Executor, *, reservation_id: uuid.UUID, now: datetime) -> None:
    await execute(db, "reservations.release_done", reservation_id, now)


async def set_moved_to(db: Executor, *, reservation_id: uuid.UUID, moved_to: uuid.UUID) -> None:
    await execute(db, "reservations.set_moved_to", reservation_id, moved_to)


async def sync_connector_status(db: Executor, *, connector_id: uuid.UUID, now: datetime) -> int:
    return await execute(db, "reservations.sync_connector_status", connector_id, now)


async def guard_charger(db: Executor, *, charger_id: uuid.UUID) -> None:
    await fetch_val(db, "reservations.guard_charger", charger_id)


async def charger_state(db: Executor, *, charger_id: uuid.UUID) -> str | None:
    state = await fetch_val(db, "reservations.charger_state", charger_id)
    return None if state is None else str(state)


async def mark_began(
    db: Executor, *, reservation_id: uuid.UUID, now: datetime
) -> ReservationRow | None:
    return await fetch_one(db, "reservations.mark_began", ReservationRow, reservation_id, now)


async def mark_charger_reserved(db: Executor, *, reservation_id: uuid.UUID, now: datetime) -> int:
    return await execute(db, "reservations.mark_charger_reserved", reservation_id, now)


async def mark_charger_released(db: Executor, *, reservation_id: uuid.UUID, now: datetime) -> int:
    return await execute(db, "reservations.mark_charger_released", reservation_id, now)


async def expire_due(db: Executor, *, now: datetime) -> list[EndedRow]:
    return await fetch_all(db, "reservations.expire_due", EndedRow, now)


async def fulfil_ended(db: Executor, *, now: datetime) -> int:
    return await execute(db, "reservations.fulfil_ended", now)


async def live_on_charger(db: Executor, *, charger_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await fetch_all(db, "reservations.live_on_charger", IdRow, charger_id)
    return [r.reservation_id for r in rows]


async def twin_connectors(db: Executor, *, reservation_id: uuid.UUID) -> list[ConnectorRow]:
    return await fetch_all(db, "reservations.twin_connectors", ConnectorRow, reservation_id)


async def activate(
    db: Executor,
    *,
    charger_id: uuid.UUID,
    connector_no: int,
    ocpp_reservation_id: int | None,
    id_tag: str,
    now: datetime,
) -> ActivatedRow | None:
    return await fetch_one(
        db,
        "reservations.activate",
        ActivatedRow,
        charger_id,
        connector_no,
        ocpp_reservation_id,
        id_tag,
        now,
    )


async def fulfil(db: Executor, *, reservation_id: uuid.UUID, now: datetime) -> bool:
    return await fetch_val(db, "reservations.fulfil", reservation_id, now) is not None


async def held_on_charger(
    db: Executor, *, charger_id: uuid.UUID, now: datetime
) -> list[ReservationRow]:
    return await fetch_all(db, "reservations.held_on_charger", ReservationRow, charger_id, now)


async def unreleased_on_charger(
    db: Executor, *, charger_id: uuid.UUID, now: datetime
) -> list[ReservationRow]:
    return await fetch_all(
        db, "reservations.unreleased_on_charger", ReservationRow, charger_id, now
    )


async def holder(db: Executor, *, connector_id: uuid.UUID, at: datetime) -> ReservationRow | None:
    return await fetch_one(db, "reservations.holder", ReservationRow, connector_id, at)
