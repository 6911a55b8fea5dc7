"""Reservations: hold a connector now or book a slot later; never two drivers on one
connector; moved to a twin connector when a charger drops off (API.md "Reservations").

What decides what:
- **The database** makes double booking impossible (migration 0008: exclusion constraints
  over connector × time range and driver × time range for PENDING/CONFIRMED/ACTIVE, a
  partial unique index for one live hold per driver). The checks exist for a friendly
  409; a lost race ends in the constraint, mapped to the same 409 codes. The hot steps
  (a hold's checks + insert, its confirmation, a cancel) are single statements calling
  plpgsql functions of 0008: one round trip each, in autocommit, on the pool.
- **The charger** must accept a hold: a PENDING row is committed first (the constraints
  count it, so competitors are refused at once, and nobody sees it: not the API, not
  search), ReserveNow is sent with no database connection held, and only `Accepted` turns
  it CONFIRMED; anything else deletes it — nothing kept, and no other request ever sees a
  CONFIRMED hold the charger refused. Nothing the charger's own messages need is locked
  while it answers (no connector or connectivity row): the ocpp library handles one
  incoming message per charger at a time, so a StatusNotification blocked on our lock
  would hold up the very answer we wait for. (Likewise CancelReservation after a cancel
  runs on the pool, after the commit.)
- **Connectivity** decides when a charger is hidden; a trigger turns that into a move job
  (`move_off_charger`) in the same transaction.

Lock order everywhere: driver advisory lock → connector advisory lock (every insert, and a
hold's confirmation: PENDING → CONFIRMED is re-checked by the constraint, and a conflicting
insert at that moment would deadlock with it) → reservation rows → the charger's guard
(advisory, shared, only after the charger answered) → connectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg
import msgspec

from app.chargers.commands import CommandClient, CommandError
from app.core import outbox
from app.core.errors import DomainError, FieldError, NotFound, ValidationFailed
from app.core.pagination import CursorTime, decode_cursor, encode_cursor
from app.core.sql import Executor
from app.reservations import queries as q
from app.reservations import slots
from app.reservations.schemas import (
    Checks,
    ConnectorRow,
    RequestContext,
    Reservation,
    ReservationPage,
    ReservationRequest,
    ReservationRow,
    ReservationStatus,
)

log = logging.getLogger("app.reservations")

MAX_FUTURE_SLOTS: Final = 3
# Connectivity states shown in search (API.md: a charger appears while it is online;
# degraded chargers are still shown) and the states that hide a charger.
SHOWN: Final = frozenset({"online", "degraded"})
HIDDEN: Final = frozenset({"offline", "quarantined"})
# Connector statuses a hold from now can start on (a slot later only needs a usable one).
NOT_BOOKABLE: Final = frozenset({"FAULTED", "UNAVAILABLE"})

BEGIN_SLOT_JOB: Final = "begin_reservation_slot"
SLOT_RETRY: Final = timedelta(seconds=30)
PENDING_AFTER: Final = timedelta(seconds=60)  # ≫ any ReserveNow timeout


class ReservationsConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How long a charger has to answer ReserveNow / CancelReservation."""

    charger_timeout_s: float = 5.0


def config_from_env() -> ReservationsConfig:
    raw = os.environ.get("RESERVATION_CHARGER_TIMEOUT_S", "")
    return ReservationsConfig(charger_timeout_s=float(raw)) if raw else ReservationsConfig()


class ConnectorUnavailable(DomainError):
    status, code, title = 409, "connector_unavailable", "The connector cannot be reserved"


class ReservationLimit(DomainError):
    status, code, title = 409, "reservation_limit", "Reservation limit reached"


class ConnectorNotFound(DomainError):
    status, code, title = 404, "connector_not_found", "No such connector"


class ReservationNotFound(NotFound):
    title = "No such reservation"


class NotCancellable(DomainError):
    status, code, title = 409, "reservation_not_cancellable", "The reservation is over"


# ------------------------------------------------------------------------- create


async def create(
    pool: asyncpg.Pool,
    commands: CommandClient,
    *,
    driver_id: str,
    data: ReservationRequest,
    now: datetime,
    config: ReservationsConfig,
) -> Reservation:
    """A hold from now (the charger must accept ReserveNow) or a future slot (ReserveNow
    when it begins).

    A hold is three short steps on the pool instead of the request's one transaction, so
    that no connection is held while the charger answers (that wait, not the SQL, is what
    bounds how many holds a pool serves per second): (1) the checks and a PENDING row in
    one statement (`reservation_begin_hold`) — the constraints count it, so a competing
    request is refused at once; (2) ReserveNow with no connection held; (3) CONFIRMED in
    one statement (`reservation_confirm_hold`), or the row deleted when the charger
    refused, did not answer or went offline meanwhile. A PENDING row is never shown by the
    API or in search; one left by a process that died in between is swept (`expire`)."""
    driver_uuid = uuid.UUID(driver_id)
    if data.start_at is not None:
        return await _book_slot(pool, driver_uuid, data, now)
    async with pool.acquire() as conn:
        connector, context, window = await _request(conn, driver_uuid, data, now)
        _check_connector(connector, hold=True)
        began = await _begin_hold(conn, driver_uuid, connector, window, now)
    try:
        await _reserve_at_charger(
            commands,
            connector,
            ocpp_reservation_id=began.ocpp_reservation_id,
            expires_at=window.expires_at,
            id_tag=context.id_tag,
            config=config,
        )
    except ConnectorUnavailable:
        await q.delete_pending(pool, reservation_id=began.reservation_id)  # nothing kept
        raise
    # The charger's guard, then its state, in one statement: a settle() hiding it
    # meanwhile either committed (the hold is deleted) or waits for this statement (its
    # trigger then sees the hold CONFIRMED and moves it).
    confirmed = await q.confirm_hold(
        pool, reservation_id=began.reservation_id, charger_id=connector.charger_id, now=now
    )
    if confirmed is None:
        _cancel_quietly(commands, connector.charge_point_id, began.ocpp_reservation_id, config)
        raise ConnectorUnavailable("the charger went offline")
    return confirmed.public()


class _Began(msgspec.Struct, frozen=True):
    reservation_id: uuid.UUID
    ocpp_reservation_id: int


async def _begin_hold(
    conn: asyncpg.Connection,
    driver_id: uuid.UUID,
    connector: ConnectorRow,
    window: slots.Window,
    now: datetime,
) -> _Began:
    with refused_by_constraints():
        began = await q.begin_hold(
            conn,
            driver_id=driver_id,
            connector=connector,
            start_at=window.start_at,
            expires_at=window.expires_at,
            now=now,
        )
    if began.verdict == "driver_holding":
        raise ReservationLimit("you already hold a connector; cancel that reservation first")
    if began.verdict == "driver_overlap":
        raise ReservationLimit("you have another reservation at that time")
    if began.verdict == "connector_overlap":
        raise ConnectorUnavailable("the connector is reserved for that time")
    if began.verdict == "connector_pending":
        raise ConnectorUnavailable("another driver is reserving this connector right now")
    assert began.verdict == "ok"
    assert began.reservation_id is not None
    assert began.ocpp_reservation_id is not None
    return _Began(began.reservation_id, began.ocpp_reservation_id)


async def _book_slot(
    pool: asyncpg.Pool, driver_id: uuid.UUID, data: ReservationRequest, now: datetime
) -> Reservation:
    """A future slot: checked and inserted CONFIRMED in one transaction with its begin job
    (the charger hears of it when it begins)."""
    async with pool.acquire() as conn, conn.transaction():
        connector, _, window = await _request(conn, driver_id, data, now)
        _check_connector(connector, hold=False)
        await q.lock_driver(conn, driver_id=driver_id)
        await q.lock_connector(conn, connector_id=connector.connector_id)
        checks = await q.checks(
            conn,
            driver_id=driver_id,
            now=now,
            start_at=window.start_at,
            expires_at=window.expires_at,
            connector_id=connector.connector_id,
        )
        _check_driver(checks, window)
        if checks.connector_overlap:
            raise ConnectorUnavailable("the connector is reserved for that time")
        if checks.connector_pending:
            raise ConnectorUnavailable("another driver is reserving this connector right now")
        with refused_by_constraints():
            row = await q.insert(
                conn,
                driver_id=driver_id,
                connector=connector,
                kind="slot",
                status="CONFIRMED",
                start_at=window.start_at,
                expires_at=window.expires_at,
                began_at=None,
                moved_from=None,
                now=now,
            )
        await _enqueue_begin(conn, row)
    return row.public()


async def _request(
    conn: asyncpg.Connection, driver_id: uuid.UUID, data: ReservationRequest, now: datetime
) -> tuple[ConnectorRow, RequestContext, slots.Window]:
    """The connector, the driver and the window a request asks for (404/422 otherwise)."""
    context = await q.request_context(conn, connector_id=data.connector_id, driver_id=driver_id)
    if context is None:
        raise ReservationNotFound("the driver does not exist")
    connector = context.connector()
    if connector is None:
        raise ConnectorNotFound(
            "no connector with this id",
            errors=[FieldError(field="connector_id", message="unknown connector")],
        )
    try:
        window = slots.window(
            now=now,
            start_at=data.start_at,
            duration_min=data.duration_min,
            vehicle=_vehicle(
                context.vehicle_battery_wh, context.vehicle_max_ac_w, context.vehicle_max_dc_w
            ),
            connector_type=connector.type,
            connector_power_w=connector.power_w,
        )
    except slots.SlotError as exc:
        raise ValidationFailed(
            f"{exc.field}: {exc.message}", errors=[FieldError(field=exc.field, message=exc.message)]
        ) from None
    return connector, context, window


async def _still_shown(db: Executor, charger_id: uuid.UUID) -> bool:
    """Take the charger's guard (see migration 0008), then read its state: two statements,
    so the read sees whatever a settle() we waited for committed."""
    await q.guard_charger(db, charger_id=charger_id)
    return await q.charger_state(db, charger_id=charger_id) in SHOWN


def _vehicle(
    battery_wh: int | None, max_ac_w: int | None, max_dc_w: int | None
) -> slots.VehicleSpec | None:
    if battery_wh is None:
        return None
    return slots.VehicleSpec(battery_wh, max_ac_w or 0, max_dc_w or 0)


def _check_driver(checks: Checks, window: slots.Window) -> None:
    """The per-driver caps (counted under the driver's advisory lock: they cannot race)."""
    if window.hold and checks.holding:
        raise ReservationLimit("you already hold a connector; cancel that reservation first")
    if not window.hold and checks.future >= MAX_FUTURE_SLOTS:
        raise ReservationLimit(f"at most {MAX_FUTURE_SLOTS} future slots at a time")
    if checks.driver_overlap:
        raise ReservationLimit("you have another reservation at that time")


def _check_connector(connector: ConnectorRow, *, hold: bool) -> None:
    if connector.connectivity not in SHOWN:
        raise ConnectorUnavailable(f"the charger is {connector.connectivity}")
    if connector.status in NOT_BOOKABLE:
        raise ConnectorUnavailable(f"the connector is {connector.status.lower()}")
    if hold and connector.status != "AVAILABLE":
        raise ConnectorUnavailable(f"the connector is {connector.status.lower()}")


@contextlib.contextmanager
def refused_by_constraints() -> Iterator[None]:
    """The reservations table's constraints as the API's errors: an exclusion constraint
    (an overlap) → `constraint_error`, the one-live-hold index → `reservation_limit`."""
    try:
        yield
    except asyncpg.ExclusionViolationError as exc:
        raise constraint_error(exc) from None
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "reservations_one_live_hold":
            raise ReservationLimit("you already hold a connector") from None
        raise


def constraint_error(exc: asyncpg.ExclusionViolationError) -> DomainError:
    """The API error for an exclusion constraint of the reservations table."""
    if exc.constraint_name == "reservations_driver_one_at_a_time":
        return ReservationLimit("you have another reservation at that time")
    return ConnectorUnavailable("the connector is reserved for that time")


async def _reserve_at_charger(
    commands: CommandClient,
    connector: ConnectorRow,
    *,
    ocpp_reservation_id: int,
    expires_at: datetime,
    id_tag: str,
    config: ReservationsConfig,
) -> None:
    """ReserveNow for this reservation; ConnectorUnavailable unless the charger accepts."""
    try:
        result = await commands.reserve_now(
            connector.charge_point_id,
            connector_id=connector.connector_no,
            expiry=expires_at,
            id_tag=id_tag,
            reservation_id=ocpp_reservation_id,
            timeout_s=config.charger_timeout_s,
        )
    except CommandError as exc:
        if exc.code == "Timeout":  # it may still accept late: take it back
            _cancel_quietly(commands, connector.charge_point_id, ocpp_reservation_id, config)
        raise ConnectorUnavailable(
            f"the charger did not confirm the reservation ({exc.code})"
        ) from None
    if result.status != "Accepted":
        raise ConnectorUnavailable(f"the charger answered {result.status}")


async def _reserve_row(
    commands: CommandClient,
    connector: ConnectorRow,
    row: ReservationRow,
    id_tag: str,
    config: ReservationsConfig,
) -> None:
    await _reserve_at_charger(
        commands,
        connector,
        ocpp_reservation_id=row.ocpp_reservation_id,
        expires_at=row.expires_at,
        id_tag=id_tag,
        config=config,
    )


_background: set[asyncio.Task[None]] = set()


def _cancel_quietly(
    commands: CommandClient,
    charge_point_id: str,
    ocpp_reservation_id: int,
    config: ReservationsConfig,
) -> None:
    """Best effort, in the background: CancelReservation for a reservation we did not keep
    (the charger's copy would otherwise last until its expiryDate)."""

    async def cancel() -> None:
        with contextlib.suppress(CommandError, OSError):
            await commands.cancel_reservation(
                charge_point_id,
                reservation_id=ocpp_reservation_id,
                timeout_s=config.charger_timeout_s,
            )

    task = asyncio.get_running_loop().create_task(cancel())
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _enqueue_begin(db: Executor, row: ReservationRow, *, attempt: int = 0) -> None:
    """The job that sends ReserveNow when the slot begins (at `start_at`, or retried)."""
    args: dict[str, Any] = {"reservation_id": str(row.reservation_id)}
    if attempt:
        args["attempt"] = attempt
    await outbox.enqueue(
        db,
        job=BEGIN_SLOT_JOB,
        args=args,
        dedupe_key=f"reservations:begin:{row.reservation_id}:{attempt}",
        available_at=row.start_at if attempt == 0 else None,
    )


# --------------------------------------------------------------------- read / list


async def get(db: Executor, *, driver_id: str, reservation_id: str) -> Reservation:
    rid = _parse_id(reservation_id)
    row = await q.get_for_driver(db, reservation_id=rid, driver_id=uuid.UUID(driver_id))
    if row is None:
        raise ReservationNotFound("no such reservation")
    return row.public()


async def list_for_driver(
    db: Executor, *, driver_id: str, limit: int, cursor: str | None
) -> ReservationPage:
    after = decode_cursor(cursor, tuple[CursorTime, uuid.UUID])
    rows = await q.list_for_driver(db, driver_id=uuid.UUID(driver_id), after=after, limit=limit + 1)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor((last.created_at, last.reservation_id))
    return ReservationPage(items=[r.public() for r in page], next_cursor=next_cursor)


def _parse_id(reservation_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(reservation_id)
    except ValueError:
        raise ReservationNotFound("no such reservation") from None


# -------------------------------------------------------------------------- cancel


class Release(msgspec.Struct, frozen=True):
    """CancelReservation owed to a charger after a cancel (sent right after the commit)."""

    reservation_id: uuid.UUID
    charge_point_id: str
    ocpp_reservation_id: int


async def cancel(
    pool: asyncpg.Pool, *, driver_id: str, reservation_id: str, now: datetime
) -> tuple[Reservation, Release | None]:
    """The driver cancels: CANCELLED at once (the connector is free in search) in one
    statement (`reservation_cancel`, migration 0008), with an outbox row for
    CancelReservation that the caller settles itself right after (`release_after_commit`).
    Cancelling twice answers the same."""
    rid = _parse_id(reservation_id)
    row = await q.cancel(pool, reservation_id=rid, driver_id=uuid.UUID(driver_id), now=now)
    if row is None:
        raise ReservationNotFound("no such reservation")
    if row.status != ReservationStatus.CANCELLED:
        raise NotCancellable(f"the reservation is {row.status}")
    release = None
    if row.ended_at == now and row.charger_released_at is None:  # cancelled just now
        release = Release(row.reservation_id, row.charge_point_id, row.ocpp_reservation_id)
    return row.public(), release


async def _cancel_at_charger(
    commands: CommandClient,
    charge_point_id: str,
    ocpp_reservation_id: int,
    config: ReservationsConfig,
) -> str | None:
    """CancelReservation: the charger's answer (`Accepted`, or `Rejected` when it does not
    hold the reservation: both settle it), or None when it does not answer (logged)."""
    try:
        result = await commands.cancel_reservation(
            charge_point_id, reservation_id=ocpp_reservation_id, timeout_s=config.charger_timeout_s
        )
    except CommandError as exc:
        log.info("CancelReservation %s not answered (%s)", ocpp_reservation_id, exc.code)
        return None
    return result.status


async def release_after_commit(
    pool: asyncpg.Pool,
    commands: CommandClient,
    release: Release,
    *,
    now: datetime,
    config: ReservationsConfig,
) -> None:
    """After a cancel has committed (a background task of the response): CancelReservation
    from this process at once, so the connector is free at the charger within
    milliseconds; no connection is held while it answers. If it does not answer, the
    outbox job written with the cancel tries again (and the resync when it reconnects)."""
    answer = await _cancel_at_charger(
        commands, release.charge_point_id, release.ocpp_reservation_id, config
    )
    if answer is None:
        return
    with contextlib.suppress(OSError, asyncpg.PostgresError):  # else the outbox job does
        await q.release_done(pool, reservation_id=release.reservation_id, now=now)


async def release_at_charger(
    db: Executor,
    commands: CommandClient,
    *,
    reservation_id: uuid.UUID,
    now: datetime,
    config: ReservationsConfig,
) -> str:
    """Send CancelReservation for a reservation that is over; returns what happened.
    `Accepted` and `Rejected` (the charger does not hold it) both settle it; a charger
    that does not answer is retried when it reconnects (the resync job) and its own copy
    ends at expiryDate anyway."""
    row = await q.get(db, reservation_id=reservation_id)
    if row is None or row.charger_released_at is not None or row.charger_reserved_at is None:
        return "nothing"
    if row.status in (ReservationStatus.CONFIRMED, ReservationStatus.ACTIVE):
        return "live"
    connector = await q.connector(db, connector_id=row.connector_id)
    if connector is None:
        return "nothing"
    answer = await _cancel_at_charger(
        commands, connector.charge_point_id, row.ocpp_reservation_id, config
    )
    if answer is None:
        return "unanswered"
    await q.mark_charger_released(db, reservation_id=reservation_id, now=now)
    return answer


# --------------------------------------------------------------- the charger's side


async def on_transaction_started(
    db: Executor,
    *,
    charger_id: uuid.UUID,
    connector_no: int,
    reservation_id: int | None,
    id_tag: str,
    now: datetime,
) -> uuid.UUID | None:
    """StartTransaction on a reserved connector (with its `reservationId`, or by the
    reserving driver's idTag): the CONFIRMED reservation becomes ACTIVE; returns its id.
    Call it in the transaction that opens the session (after the session row exists)."""
    row = await q.activate(
        db,
        charger_id=charger_id,
        connector_no=connector_no,
        ocpp_reservation_id=reservation_id,
        id_tag=id_tag,
        now=now,
    )
    return None if row is None else row.reservation_id


async def on_session_ended(db: Executor, *, reservation_uuid: uuid.UUID, now: datetime) -> None:
    """The session on an ACTIVE reservation ended: FULFILLED (once)."""
    await q.fulfil(db, reservation_id=reservation_uuid, now=now)


async def holder(db: Executor, *, connector_id: uuid.UUID, at: datetime) -> ReservationRow | None:
    """The live reservation covering this connector at `at`, if any (a session start by
    anyone else is refused)."""
    return await q.holder(db, connector_id=connector_id, at=at)


# ------------------------------------------------------------------------- expiry


async def expire(db: Executor, *, now: datetime) -> int:
    """CONFIRMED reservations past `expires_at` become EXPIRED and their connectors free in
    search; ACTIVE ones whose session ended become FULFILLED. Safe to run twice."""
    ended = await q.expire_due(db, now=now)
    for connector_id in sorted({r.connector_id for r in ended}):
        await q.sync_connector_status(db, connector_id=connector_id, now=now)
    await q.fulfil_ended(db, now=now)
    return len(ended)


async def sweep_pending(
    db: Executor, commands: CommandClient, *, now: datetime, config: ReservationsConfig
) -> int:
    """PENDING holds older than any charger answer (their process died between ReserveNow
    and the decision) are deleted, and their chargers told to forget them."""
    swept = await q.sweep_pending(db, before=now - PENDING_AFTER)
    for row in swept:
        connector = await q.connector(db, connector_id=row.connector_id)
        if connector is not None:
            _cancel_quietly(commands, connector.charge_point_id, row.ocpp_reservation_id, config)
    return len(swept)


# --------------------------------------------------------------------- slot begins


async def begin_slot(
    conn: asyncpg.Connection,
    commands: CommandClient,
    *,
    reservation_id: uuid.UUID,
    now: datetime,
    attempt: int,
    config: ReservationsConfig,
) -> str:
    """A slot begins: it holds the connector from now (RESERVED in search, counted as the
    driver's live hold) and the charger receives ReserveNow. A charger that refuses
    (e.g. a walk-in still charging) is asked again every 30 s until the slot expires.
    Idempotent: a repeat re-sends ReserveNow only if no answer was Accepted."""
    async with conn.transaction():
        row = await q.lock(conn, reservation_id=reservation_id)
        if row is None or row.status != ReservationStatus.CONFIRMED or row.expires_at <= now:
            return "over"
        if row.began_at is None:
            try:
                async with conn.transaction():
                    began = await q.mark_began(conn, reservation_id=reservation_id, now=now)
            except asyncpg.UniqueViolationError:
                # the driver is still charging on another reservation past its end
                await q.end_reservation(
                    conn,
                    reservation_id=reservation_id,
                    status="CANCELLED",
                    cancel_reason="driver_busy",
                    now=now,
                    released=True,
                )
                return "cancelled"
            assert began is not None
            row = began
            await q.sync_connector_status(conn, connector_id=row.connector_id, now=now)
    if row.charger_reserved_at is not None:
        return "reserved"
    connector = await q.connector(conn, connector_id=row.connector_id)
    driver = await q.driver(conn, driver_id=row.driver_id)
    if connector is None or driver is None:
        return "over"
    try:
        await _reserve_row(commands, connector, row, driver.id_tag, config)
    except ConnectorUnavailable as exc:
        log.info("slot %s: %s; asking again", reservation_id, exc.detail)
        if now + SLOT_RETRY < row.expires_at:
            async with conn.transaction():
                await outbox.enqueue(
                    conn,
                    job=BEGIN_SLOT_JOB,
                    args={"reservation_id": str(reservation_id), "attempt": attempt + 1},
                    dedupe_key=f"reservations:begin:{reservation_id}:{attempt + 1}",
                    available_at=now + SLOT_RETRY,
                )
        return "refused"
    await q.mark_charger_reserved(conn, reservation_id=reservation_id, now=now)
    return "reserved"


# -------------------------------------------------------- charger reconnected


async def resync_charger(
    conn: asyncpg.Connection,
    commands: CommandClient,
    *,
    charger_id: uuid.UUID,
    now: datetime,
    config: ReservationsConfig,
) -> dict[str, int]:
    """After a reconnect: ReserveNow again for what should hold, CancelReservation for
    what should not (chargers persist reservations across reboots, some badly)."""
    sent = {"reserved": 0, "released": 0}
    for row in await q.held_on_charger(conn, charger_id=charger_id, now=now):
        connector = await q.connector(conn, connector_id=row.connector_id)
        driver = await q.driver(conn, driver_id=row.driver_id)
        if connector is None or driver is None:
            continue
        try:
            await _reserve_row(commands, connector, row, driver.id_tag, config)
        except ConnectorUnavailable as exc:
            log.info("resync of reservation %s: %s", row.ocpp_reservation_id, exc.detail)
            continue
        await q.mark_charger_reserved(conn, reservation_id=row.reservation_id, now=now)
        sent["reserved"] += 1
    for row in await q.unreleased_on_charger(conn, charger_id=charger_id, now=now):
        outcome = await release_at_charger(
            conn, commands, reservation_id=row.reservation_id, now=now, config=config
        )
        if outcome in ("Accepted", "Rejected"):
            sent["released"] += 1
    return sent


# ------------------------------------------------------------- connectivity moves


class MoveOutcome(msgspec.Struct, frozen=True):
    reservation_id: str
    status: str  # MOVED or CANCELLED
    moved_to: str | None = None


async def move_off_charger(
    conn: asyncpg.Connection,
    commands: CommandClient,
    *,
    charger_id: uuid.UUID,
    now: datetime,
    config: ReservationsConfig,
) -> list[MoveOutcome]:
    """The charger is hidden (offline/quarantined): each of its CONFIRMED reservations
    moves to a twin connector at the same site (same type, power ≥, shown in search, free
    for that time) as a new CONFIRMED reservation, or is cancelled (`charger_offline`);
    the driver gets an SMS either way. One transaction per reservation; safe to run twice
    (a reservation already moved or cancelled is skipped, a charger back online is left)."""
    if await q.charger_state(conn, charger_id=charger_id) not in HIDDEN:
        return []
    outcomes: list[MoveOutcome] = []
    for reservation_id in await q.live_on_charger(conn, charger_id=charger_id):
        async with conn.transaction():
            outcome = await _move_one(conn, commands, reservation_id, now, config)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


async def _move_one(
    conn: asyncpg.Connection,
    commands: CommandClient,
    reservation_id: uuid.UUID,
    now: datetime,
    config: ReservationsConfig,
) -> MoveOutcome | None:
    old = await q.lock(conn, reservation_id=reservation_id)
    if old is None or old.status != ReservationStatus.CONFIRMED:
        return None
    if await q.charger_state(conn, charger_id=old.charger_id) not in HIDDEN:
        return None  # back in search meanwhile: nothing to move
    driver = await q.driver(conn, driver_id=old.driver_id)
    assert driver is not None  # reservations are deleted with their driver
    holding = old.began_at is not None
    for twin in await q.twin_connectors(conn, reservation_id=old.reservation_id):
        new = await _try_twin(conn, commands, old, twin, driver.id_tag, holding, now, config)
        if new is None:
            continue
        await q.sync_connector_status(conn, connector_id=old.connector_id, now=now)
        if holding:
            await q.sync_connector_status(conn, connector_id=twin.connector_id, now=now)
        else:
            await _enqueue_begin(conn, new)
        await _alert(
            conn,
            kind="reservation_moved",
            row=old,
            now=now,
            facts={
                "site_name": twin.site_name,
                "timezone": twin.site_timezone,
                "connector_label": f"{twin.charge_point_id} #{twin.connector_no}",
                "at": old.start_at,
            },
        )
        return MoveOutcome(str(old.reservation_id), "MOVED", str(new.reservation_id))
    ended = await q.end_reservation(
        conn,
        reservation_id=old.reservation_id,
        status="CANCELLED",
        cancel_reason="charger_offline",
        now=now,
        released=False,  # told when it reconnects (the resync job)
    )
    assert ended is not None
    await q.sync_connector_status(conn, connector_id=old.connector_id, now=now)
    site = await q.connector(conn, connector_id=old.connector_id)
    await _alert(
        conn,
        kind="reservation_cancelled",
        row=old,
        now=now,
        facts={
            "site_name": site.site_name if site is not None else None,
            "timezone": site.site_timezone if site is not None else None,
            "at": old.start_at if old.kind == "slot" else None,
        },
    )
    return MoveOutcome(str(old.reservation_id), "CANCELLED")


async def _try_twin(
    conn: asyncpg.Connection,
    commands: CommandClient,
    old: ReservationRow,
    twin: ConnectorRow,
    id_tag: str,
    holding: bool,
    now: datetime,
    config: ReservationsConfig,
) -> ReservationRow | None:
    """Move `old` onto `twin` inside a savepoint; None (and nothing changed) if the twin
    is taken meanwhile or its charger refuses ReserveNow."""
    accepted = False
    try:
        async with conn.transaction():  # a savepoint: a refusal leaves `old` CONFIRMED
            await q.lock_connector(conn, connector_id=twin.connector_id)
            await q.end_reservation(
                conn,
                reservation_id=old.reservation_id,
                status="MOVED",
                cancel_reason=None,
                now=now,
                released=False,
            )
            with refused_by_constraints():
                new = await q.insert(
                    conn,
                    driver_id=old.driver_id,
                    connector=twin,
                    kind=old.kind,
                    status="CONFIRMED",
                    start_at=old.start_at,
                    expires_at=old.expires_at,
                    began_at=now if holding else None,
                    moved_from=old.reservation_id,
                    now=now,
                )
            if holding:
                await _reserve_row(commands, twin, new, id_tag, config)
                accepted = True
                await q.mark_charger_reserved(conn, reservation_id=new.reservation_id, now=now)
                if not await _still_shown(conn, twin.charger_id):
                    raise ConnectorUnavailable("the twin's charger went offline")
            await q.set_moved_to(
                conn, reservation_id=old.reservation_id, moved_to=new.reservation_id
            )
            return new
    except (ConnectorUnavailable, ReservationLimit) as exc:
        log.info(
            "reservation %s: twin %s refused (%s)",
            old.reservation_id,
            twin.connector_id,
            exc.detail,
        )
        if accepted:
            _cancel_quietly(commands, twin.charge_point_id, new.ocpp_reservation_id, config)
        return None


async def _alert(
    db: Executor, *, kind: str, row: ReservationRow, now: datetime, facts: dict[str, Any]
) -> None:
    """The driver's SMS (reservation_moved / reservation_cancelled) through the
    notifications domain, in this transaction."""
    from app.notifications.alerts import queue_alert  # the SMS domain's one entry point

    await queue_alert(
        db,
        kind=kind,
        driver_id=row.driver_id,
        now=now,
        reservation_id=row.reservation_id,
        facts=facts,
    )
