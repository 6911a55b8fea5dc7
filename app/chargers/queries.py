"""Typed functions over `sql/queries/chargers.sql`: one per block, keyword arguments, rows
as Structs. The `*_many` blocks take parallel arrays (one batch of the OCPP writer)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from app.core.sql import Executor, execute, fetch_all, fetch_one, fetch_val


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    charger_id: uuid.UUID
    ocpp_password_hash: str
    iccid: str | None


class TransactionAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What a StartTransaction is answered with."""

    transaction_id: int
    id_tag_status: str


class ChargerSession(msgspec.Struct, frozen=True, kw_only=True):
    session_id: uuid.UUID
    transaction_id: int
    connector_no: int
    meter_start_wh: int
    ended_at: datetime | None
    id_tag_status: str


class ChangedSession(msgspec.Struct, frozen=True, kw_only=True):
    """A live session a status or meter batch changed; `paid` when a card hold backs it."""

    session_id: uuid.UUID
    paid: bool


class TransactionOwner(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: int
    charger_id: uuid.UUID


# ---- the link and the boot -------------------------------------------------------------


async def credentials(db: Executor, *, charge_point_id: str) -> Credentials | None:
    return await fetch_one(db, "chargers.credentials", Credentials, charge_point_id)


async def claim_link(db: Executor, *, charger_id: uuid.UUID, connection_id: uuid.UUID) -> None:
    await execute(db, "chargers.claim_link", charger_id, connection_id)


async def release_link(db: Executor, *, charger_id: uuid.UUID, connection_id: uuid.UUID) -> bool:
    """True when this connection was still the charger's current one."""
    return bool(await fetch_val(db, "chargers.release_link", charger_id, connection_id))


async def link_is_current_and_down(
    db: Executor, *, charger_id: uuid.UUID, connection_id: uuid.UUID
) -> bool:
    return bool(await fetch_val(db, "chargers.link_is_current_and_down", charger_id, connection_id))


async def lock_connectivity(db: Executor, *, charger_id: uuid.UUID) -> None:
    """The charger's connectivity row, locked (the lock order of every settle)."""
    await fetch_val(db, "chargers.connectivity_for_update", charger_id)


async def record_boot(
    db: Executor, *, charger_id: uuid.UUID, iccid: str | None, info: dict[str, str]
) -> None:
    await execute(db, "chargers.record_boot", charger_id, iccid, info)


async def registered_iccid(db: Executor, *, charger_id: uuid.UUID) -> str | None:
    iccid: str | None = await fetch_val(db, "chargers.registered_iccid", charger_id)
    return iccid


async def bind_iccid(db: Executor, *, charger_id: uuid.UUID, iccid: str) -> None:
    """Raises UniqueViolationError when that SIM belongs to another charger."""
    await execute(db, "chargers.bind_iccid", charger_id, iccid)


async def touch(db: Executor, *, charger_id: uuid.UUID, now: datetime) -> None:
    await execute(db, "chargers.touch", charger_id, now)


# ---- connector status (one message) ------------------------------------------------------


async def set_connector_status(
    db: Executor, *, charger_id: uuid.UUID, connector_no: int, status: str, at: datetime
) -> None:
    await execute(db, "chargers.set_connector_status", charger_id, connector_no, status, at)


async def set_all_connector_statuses(
    db: Executor, *, charger_id: uuid.UUID, status: str, at: datetime
) -> None:
    await execute(db, "chargers.set_all_connector_statuses", charger_id, status, at)


async def set_open_session_status(
    db: Executor,
    *,
    charger_id: uuid.UUID,
    connector_no: int,
    status: str,
    idle: bool,
    at: datetime,
    live_statuses: Sequence[str],
) -> list[ChangedSession]:
    return await fetch_all(
        db,
        "chargers.set_open_session_status",
        ChangedSession,
        charger_id,
        connector_no,
        status,
        idle,
        at,
        list(live_statuses),
    )


# ---- transactions ------------------------------------------------------------------------


async def driver_by_id_tag(db: Executor, *, id_tag: str) -> uuid.UUID | None:
    driver_id: uuid.UUID | None = await fetch_val(db, "chargers.driver_by_id_tag", id_tag)
    return driver_id


async def connector_of_charger(
    db: Executor, *, charger_id: uuid.UUID, connector_no: int
) -> uuid.UUID | None:
    connector_id: uuid.UUID | None = await fetch_val(
        db, "chargers.connector_of_charger", charger_id, connector_no
    )
    return connector_id


async def session_by_start(
    db: Executor, *, charger_id: uuid.UUID, connector_no: int, started_at: datetime
) -> TransactionAnswer | None:
    return await fetch_one(
        db, "chargers.session_by_start", TransactionAnswer, charger_id, connector_no, started_at
    )


async def start_session(
    db: Executor,
    *,
    charger_id: uuid.UUID,
    connector_id: uuid.UUID | None,
    connector_no: int,
    id_tag: str,
    id_tag_status: str,
    driver_id: uuid.UUID | None,
    reservation_id: int | None,
    failed_status: str,
    meter_start: int,
    started_at: datetime,
) -> TransactionAnswer | None:
    return await fetch_one(
        db,
        "chargers.start_session",
        TransactionAnswer,
        charger_id,
        connector_id,
        connector_no,
        id_tag,
        id_tag_status,
        driver_id,
        reservation_id,
        failed_status,
        meter_start,
        started_at,
    )


async def session_of_charger(
    db: Executor, *, charger_id: uuid.UUID, transaction_id: int
) -> ChargerSession | None:
    return await fetch_one(
        db, "chargers.session_of_charger", ChargerSession, charger_id, transaction_id
    )


async def stop_session(
    db: Executor,
    *,
    charger_id: uuid.UUID,
    transaction_id: int,
    meter_stop: int,
    stopped_at: datetime,
    reason: str,
) -> None:
    await execute(
        db, "chargers.stop_session", charger_id, transaction_id, meter_stop, stopped_at, reason
    )


# ---- meter samples and batches -----------------------------------------------------------


async def insert_samples(
    db: Executor,
    *,
    charger_id: uuid.UUID,
    connector_no: int,
    transaction_id: int | None,
    columns: Sequence[Sequence[Any]],
) -> None:
    """`columns`: ats, measurands, values, units, contexts, phases (parallel lists)."""
    await execute(db, "chargers.insert_samples", charger_id, connector_no, transaction_id, *columns)


async def touch_many(db: Executor, *, charger_ids: list[uuid.UUID], now: datetime) -> None:
    await execute(db, "chargers.touch_many", charger_ids, now)


async def set_connector_statuses_many(
    db: Executor,
    *,
    charger_ids: list[uuid.UUID],
    connector_nos: list[int],
    statuses: list[str],
    ats: list[datetime],
) -> None:
    await execute(
        db, "chargers.set_connector_statuses_many", charger_ids, connector_nos, statuses, ats
    )


async def set_open_session_statuses_many(
    db: Executor,
    *,
    charger_ids: list[uuid.UUID],
    connector_nos: list[int],
    statuses: list[str | None],
    idle: list[bool],
    ats: list[datetime],
    live_statuses: Sequence[str],
) -> list[ChangedSession]:
    return await fetch_all(
        db,
        "chargers.set_open_session_statuses_many",
        ChangedSession,
        charger_ids,
        connector_nos,
        statuses,
        idle,
        ats,
        list(live_statuses),
    )


async def session_chargers(db: Executor, *, transaction_ids: list[int]) -> list[TransactionOwner]:
    return await fetch_all(db, "chargers.session_chargers", TransactionOwner, transaction_ids)


async def insert_samples_many(db: Executor, *, columns: Sequence[Sequence[Any]]) -> None:
    """`columns`: charger ids, connector nos, transaction ids, ats, measurands, values,
    units, contexts, phases (parallel lists, one row each)."""
    await execute(db, "chargers.insert_samples_many", *columns)


async def update_sessions_live_many(
    db: Executor,
    *,
    charger_ids: list[uuid.UUID],
    transaction_ids: list[int],
    energy_wh: list[int | None],
    power_w: list[int | None],
    soc: list[float | None],
    ats: list[datetime],
) -> list[ChangedSession]:
    return await fetch_all(
        db,
        "chargers.update_sessions_live_many",
        ChangedSession,
        charger_ids,
        transaction_ids,
        energy_wh,
        power_w,
        soc,
        ats,
    )
