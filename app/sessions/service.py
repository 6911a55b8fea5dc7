"""Charging sessions: start (hold, then RemoteStart), live state, stop, bill, receipt.

A start has steps that other processes must see in between, so `start` runs on the pool
with short transactions of its own rather than the request's one:

1. **reserve the start** (one transaction, the connector row locked so concurrent starts on
   it queue up): the connector is online, free or reserved for this driver; the tariff
   version in force is locked; a STARTING row is written (its OCPP transactionId with it).
   The unique index "one active session per driver" refuses a second one (409).
2. **the hold**: `app.payments.service.place_hold` (PaymentIntent, manual capture,
   confirmed off-session, idempotency key from the session id). Declined / no card → the
   session is FAILED, 402, and nothing is sent to the charger.
3. **hold in place** is committed (`preauth_minor`), then RemoteStartTransaction goes out
   from a task of this process (the answer can take seconds; the driver gets 201 now).
   `Rejected` or no answer → FAILED and the hold released (a zero capture decision: the
   payments job cancels the PaymentIntent). A start the charger accepted but never began
   is failed the same way by `sweep_starting`.

**A start at the charger** with the driver's app idTag (Authorize, or StartTransaction
without Authorize) is the same kind of session and is accepted only with a hold in place:
Authorize answers `Accepted` at once when the driver's STARTING session with its hold is
on this charger (the app start above: chargers that authorise remote starts ask), and
otherwise places the hold right there with a short timeout
(`SESSION_CHARGER_HOLD_TIMEOUT_S`) while the charger waits: `Accepted` once it is in place,
`Blocked` for no card / a decline / too slow (a hold that lands after the timeout is
released), `ConcurrentTx` when the driver charges elsewhere, `Invalid` for an unknown tag.
We place it there rather than refuse every tag without an app session, because a driver
who plugs in and taps a card is a real case and a hold is all the acceptance needs.

The OCPP events then drive the state (`app.chargers.service` calls in here, in the
transaction of each message): StartTransaction → CHARGING; StatusNotification →
SUSPENDED / FINISHING / CHARGING (`app.sessions.state`); MeterValues → live values, the
alert rules (`app.notifications.alerts.session_changed`) and the hold check; StopTransaction
→ COMPLETED, then the bill (once: `session_bills`' primary key), the receipt and the
capture decisions (`app.payments.service.settle_session`, done by the payments job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from prometheus_client import Histogram

from app.chargers.commands import CommandClient, CommandError
from app.core import outbox
from app.core.clock import Clock
from app.core.errors import Conflict, DomainError, NotFound
from app.core.pagination import CursorTime, decode_cursor, encode_cursor
from app.core.settings import Settings
from app.core.sql import Executor
from app.notifications import alerts
from app.payments import queries as payment_queries
from app.payments import service as payments
from app.payments.schemas import PaymentSummary
from app.payments.stripe_client import Gateway
from app.pricing import engine
from app.pricing import service as pricing
from app.reservations import service as reservations
from app.sessions import billing, curve, queries, state
from app.sessions.billing import Reading, Receipt, ReceiptPayment
from app.sessions.schemas import (
    AdminSessionPage,
    AdminSessionView,
    SessionPage,
    SessionRow,
    SessionStart,
    SessionStarted,
    SessionView,
)

log = logging.getLogger("app.sessions")

HOLD_LOW_JOB: Final = "session_hold_low"
SHOWN: Final = frozenset({"online", "degraded"})  # connectivity states a start may use
AC_TYPES: Final = frozenset({"TYPE2"})
SWEEP_BATCH: Final = 200

START_SECONDS = Histogram(
    "session_start_seconds",
    "POST /v1/sessions by stage: reserve (checks, tariff lock, STARTING row), hold (Stripe"
    " PaymentIntent confirmed and recorded), remote_start (hold in place → the charger's"
    " answer to RemoteStartTransaction, an upper bound of its arrival at the charger)",
    ["stage"],
    buckets=(
        0.001,
        0.002,
        0.003,
        0.005,
        0.0075,
        0.01,
        0.015,
        0.02,
        0.03,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.5,
        1.0,
        2.5,
        5.0,
        10.0,
    ),
)


# --- Errors --------------------------------------------------------------------------


class ConnectorUnavailable(DomainError):
    status, code, title = 409, "connector_unavailable", "The connector cannot be used now"


class ConnectorNotFound(NotFound):
    code, title = "connector_not_found", "No such connector"


class ReservationNotFound(NotFound):
    code, title = "reservation_not_found", "No such reservation of yours on this connector"


class SessionActive(Conflict):
    code, title = "session_active", "You already have an active session"


class SessionNotFound(NotFound):
    code, title = "session_not_found", "No such session"


class SessionNotActive(Conflict):
    code, title = "session_not_active", "The session is not running"


# --- The process's runtime (Stripe, charger commands, background tasks) --------------


@dataclass(eq=False)
class Runtime:
    """What the session use cases need beyond a connection, one per process: registered
    by the sessions lifespan (API) so the OCPP handlers find it by their pool."""

    settings: Settings
    gateway: Gateway | None
    commands: CommandClient
    clock: Clock = field(default_factory=Clock)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed: %r", task.exception())

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Let running tasks finish (shutdown; tests), then cancel what is left."""
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task


_RUNTIMES: dict[int, Runtime] = {}


def register(pool: asyncpg.Pool, runtime: Runtime) -> None:
    _RUNTIMES[id(pool)] = runtime


def unregister(pool: asyncpg.Pool) -> None:
    _RUNTIMES.pop(id(pool), None)


def runtime_for(pool: asyncpg.Pool) -> Runtime | None:
    return _RUNTIMES.get(id(pool))


def _uuid(raw: str | uuid.UUID, error: DomainError) -> uuid.UUID:
    if isinstance(raw, uuid.UUID):
        return raw
    try:
        return uuid.UUID(raw)
    except (ValueError, TypeError, AttributeError):
        raise error from None


def hold_key(session_id: uuid.UUID, n: int) -> str:
    """The Stripe idempotency key of a session's n-th hold (a retry gets the same one)."""
    return f"session:{session_id}:hold:{n}"


# --- Tariffs (immutable versions, compiled once per process) --------------------------

_COMPILED: dict[tuple[uuid.UUID, int], engine.CompiledTariff] = {}


async def compiled_tariff(
    db: Executor, tariff_id: uuid.UUID, version: int
) -> engine.CompiledTariff:
    key = (tariff_id, version)
    ct = _COMPILED.get(key)
    if ct is None:
        conn: Any = db
        ct = engine.compile_tariff(await pricing.tariff_version(conn, str(tariff_id), version))
        if len(_COMPILED) > 1000:
            _COMPILED.clear()
        _COMPILED[key] = ct
    return ct


# --- Start from the app ----------------------------------------------------------------


async def start(
    pool: asyncpg.Pool,
    rt: Runtime,
    *,
    driver_id: str,
    body: SessionStart,
    now: datetime,
    timings: dict[str, float] | None = None,
) -> SessionStarted:
    """`POST /v1/sessions` (see the module docstring for the steps). `timings` receives
    the seconds of the `reserve` and `hold` steps (the route's Server-Timing header)."""
    driver = uuid.UUID(driver_id)
    connector_id = _uuid(body.connector_id, ConnectorNotFound())
    t0 = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        k = await queries.connector_for_start(conn, connector_id=connector_id, driver_id=driver)
        if k is None:
            raise ConnectorNotFound()
        if k.connectivity not in SHOWN:
            raise ConnectorUnavailable("the charger is offline")
        holder = await reservations.holder(conn, connector_id=connector_id, at=now)
        if holder is not None and holder.driver_id != driver:
            raise ConnectorUnavailable("the connector is reserved for someone else")
        reservation_uuid = holder.reservation_id if holder is not None else None
        if body.reservation_id is not None and (
            reservation_uuid is None or str(reservation_uuid) != body.reservation_id.lower()
        ):
            raise ReservationNotFound()
        usable = k.connector_status == "AVAILABLE" or (
            k.connector_status == "RESERVED" and reservation_uuid is not None
        )
        if not usable or await queries.connector_busy(
            conn, charger_id=k.charger_id, connector_no=k.connector_no
        ):
            raise ConnectorUnavailable(f"the connector is {k.connector_status.lower()}")
        tag = k.id_tag
        if tag is None:
            raise SessionNotFound("no such driver")
        tariff = await queries.tariff_in_force(conn, connector_id=connector_id, at=now)
        if tariff is None:
            raise ConnectorUnavailable("no tariff applies to this connector now")
        try:  # (the error aborts this transaction, which then rolls back: no savepoint)
            new = await queries.insert_starting(
                conn,
                origin="app",
                charger_id=k.charger_id,
                connector_id=connector_id,
                connector_no=k.connector_no,
                id_tag=tag,
                driver_id=driver,
                now=now,
                tariff_id=uuid.UUID(tariff.tariff_id),
                tariff_version=tariff.version,
                currency=tariff.currency,
                reservation_uuid=reservation_uuid,
            )
        except asyncpg.UniqueViolationError:
            raise SessionActive() from None
    t1 = time.perf_counter()
    START_SECONDS.labels("reserve").observe(t1 - t0)
    amount = rt.settings.payment_hold_minor
    try:  # on the pool: no connection is held while Stripe answers
        await _hold(pool, rt, new.session_id, driver, amount, tariff.currency, 1, now)
    except payments.PaymentMethodRequired:
        await _fail(pool, new.session_id, "payment_method_required", now)
        raise
    except payments.CardDeclined:
        await _fail(pool, new.session_id, "card_declined", now)
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            await _fail(pool, new.session_id, "payments_unavailable", rt.clock.now())
        raise
    held = time.perf_counter()
    START_SECONDS.labels("hold").observe(held - t1)
    if timings is not None:
        timings.update(reserve=t1 - t0, hold=held - t1)
    rt.spawn(
        remote_start(
            pool,
            rt,
            session_id=new.session_id,
            charge_point_id=k.charge_point_id,
            connector_no=k.connector_no,
            id_tag=tag,
            held_at=held,
        )
    )
    return SessionStarted(
        session_id=str(new.session_id),
        status="STARTING",
        preauth_minor=amount,
        currency=tariff.currency,
        tariff_id=tariff.tariff_id,
        tariff_version=tariff.version,
        connector_id=str(connector_id),
        transaction_id=new.transaction_id,
    )


async def _hold(
    db: Executor,
    rt: Runtime,
    session_id: uuid.UUID,
    driver_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    n: int,
    now: datetime,
) -> None:
    """Place the session's n-th hold and record it (committed: the charger may ask now)."""
    if rt.gateway is None:
        raise payments.PaymentsUnavailable("payments are not configured (STRIPE_SECRET_KEY)")
    hold = await payments.place_hold(
        db,
        rt.gateway,
        driver_id=driver_id,
        amount_minor=amount_minor,
        currency=currency,
        idempotency_key=hold_key(session_id, n),
        metadata={"session_id": str(session_id), "hold": n},
        session_id=session_id,
        now=now,
    )
    await queries.hold_placed(db, session_id=session_id, amount_minor=hold.amount_minor)


async def _fail(
    db: asyncpg.Pool | asyncpg.Connection, session_id: uuid.UUID, reason: str, now: datetime
) -> bool:
    """STARTING → FAILED with its holds released, in one transaction; False when it had
    moved on already (the charger started it meanwhile)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _fail(conn, session_id, reason, now)
    conn = db
    async with conn.transaction():
        failed = await queries.fail_starting(conn, session_id=session_id, reason=reason, now=now)
        if failed:
            await release_holds(conn, session_id=session_id, now=now)
        return failed


async def release_holds(db: Executor, *, session_id: uuid.UUID, now: datetime) -> None:
    """Every hold of a session that will not be billed is released (zero captures; the
    payments job cancels the PaymentIntents)."""
    row = await queries.session(db, session_id=session_id)
    if row is None or row.driver_id is None:
        return
    await payments.settle_session(
        db,
        session_id=session_id,
        driver_id=row.driver_id,
        total_minor=0,
        currency=row.currency or "EUR",
        now=now,
    )


async def remote_start(
    pool: asyncpg.Pool,
    rt: Runtime,
    *,
    session_id: uuid.UUID,
    charge_point_id: str,
    connector_no: int,
    id_tag: str,
    held_at: float | None = None,
) -> str:
    """RemoteStartTransaction for a session whose hold is in place; anything but
    `Accepted` fails the session and releases the hold. Returns what happened."""
    try:
        result = await rt.commands.remote_start(
            charge_point_id,
            id_tag=id_tag,
            connector_id=connector_no,
            timeout_s=rt.settings.session_remote_start_timeout_s,
        )
        if held_at is not None:
            START_SECONDS.labels("remote_start").observe(time.perf_counter() - held_at)
        outcome = "accepted" if result.status == "Accepted" else "charger_rejected"
    except CommandError as exc:
        outcome = "charger_no_answer" if exc.code in ("Timeout", "Unreachable") else "charger_error"
        log.info("RemoteStart of session %s failed: %s", session_id, exc)
    if outcome != "accepted":
        await _fail(pool, session_id, outcome, rt.clock.now())
    return outcome


# --- Start at the charger (Authorize / StartTransaction with the driver's idTag) ------


async def authorize_at_charger(
    pool: asyncpg.Pool, *, charger_id: uuid.UUID, driver_id: uuid.UUID
) -> str:
    """Authorize for a driver's idTag on this charger: the idTagInfo status."""
    active = await queries.active_session_of_driver(pool, driver_id=driver_id)
    if active is not None:
        held = active.status == "STARTING" and active.preauth_minor is not None
        return "Accepted" if held and active.charger_id == charger_id else "ConcurrentTx"
    return await hold_at_charger(pool, charger_id=charger_id, driver_id=driver_id, connector=None)


CANCEL_WINDOW: Final = timedelta(minutes=5)


async def hold_at_charger(
    pool: asyncpg.Pool,
    *,
    charger_id: uuid.UUID,
    driver_id: uuid.UUID,
    connector: tuple[uuid.UUID, int] | None,
) -> str:
    """Open a STARTING session for a start at the charger and place its hold while the
    charger waits (at most SESSION_CHARGER_HOLD_TIMEOUT_S): `Accepted` when it is in
    place, `Blocked` when not, `ConcurrentTx` when the driver has another session.

    A StartTransaction (`connector` given) right after the driver called off their app
    start here is the charger acting on the RemoteStart it had accepted: `Blocked`, so the
    charger stops instead of charging on a fresh hold."""
    rt = runtime_for(pool)
    if rt is None or rt.gateway is None:
        return "Blocked"
    now = rt.clock.now()
    if connector is not None and await queries.recently_cancelled(
        pool, charger_id=charger_id, driver_id=driver_id, since=now - CANCEL_WINDOW
    ):
        return "Blocked"
    async with pool.acquire() as conn, conn.transaction():
        if connector is None:  # Authorize names no connector; the tariff is the charger's
            first = await queries.first_connector(conn, charger_id=charger_id)
            connector = None if first is None else (first.connector_id, first.connector_no)
        tariff = None
        if connector is not None:
            tariff = await queries.tariff_in_force(conn, connector_id=connector[0], at=now)
        if tariff is None:
            return "Blocked"
        tag = await queries.driver_tag(conn, driver_id=driver_id)
        assert tag is not None
        try:
            async with conn.transaction():
                new = await queries.insert_starting(
                    conn,
                    origin="charger",
                    charger_id=charger_id,
                    connector_id=connector[0] if connector else None,
                    connector_no=connector[1] if connector else 0,
                    id_tag=tag,
                    driver_id=driver_id,
                    now=now,
                    tariff_id=uuid.UUID(tariff.tariff_id),
                    tariff_version=tariff.version,
                    currency=tariff.currency,
                    reservation_uuid=None,
                )
        except asyncpg.UniqueViolationError:
            return "ConcurrentTx"
    hold = rt.spawn(_hold_on_pool(pool, rt, new.session_id, driver_id, tariff.currency, now))
    try:
        async with asyncio.timeout(rt.settings.session_charger_hold_timeout_s):
            await asyncio.shield(hold)
        return "Accepted"
    except TimeoutError:
        log.warning("hold for a start at the charger took too long (session %s)", new.session_id)
        rt.spawn(_fail_when_done(pool, rt, hold, new.session_id, "hold_timeout"))
        return "Blocked"
    except payments.PaymentMethodRequired:
        reason = "payment_method_required"
    except payments.CardDeclined:
        reason = "card_declined"
    except Exception as exc:
        log.warning("hold for a start at the charger failed: %r", exc)
        reason = "payments_unavailable"
    await _fail(pool, new.session_id, reason, rt.clock.now())
    return "Blocked"


async def _hold_on_pool(
    pool: asyncpg.Pool,
    rt: Runtime,
    session_id: uuid.UUID,
    driver_id: uuid.UUID,
    currency: str,
    now: datetime,
) -> None:
    await _hold(pool, rt, session_id, driver_id, rt.settings.payment_hold_minor, currency, 1, now)


async def _fail_when_done(
    pool: asyncpg.Pool, rt: Runtime, hold: asyncio.Task[None], session_id: uuid.UUID, reason: str
) -> None:
    """A hold the charger stopped waiting for: fail the session once it lands (and
    release it, whatever the outcome)."""
    with contextlib.suppress(Exception):
        await hold
    await _fail(pool, session_id, reason, rt.clock.now())


async def begin_transaction(
    conn: asyncpg.Connection,
    *,
    charger_id: uuid.UUID,
    driver_id: uuid.UUID,
    connector_id: uuid.UUID,
    connector_no: int,
    id_tag: str,
    meter_start_wh: int,
    started_at: datetime,
    reservation_id: int | None,
    now: datetime,
) -> int | None:
    """StartTransaction for a driver with a held STARTING session on this charger: it is
    CHARGING now (on the connector the charger names); returns the transactionId, or None
    when there is no such session. Call in the message's transaction."""
    begun = await queries.begin_held(
        conn,
        charger_id=charger_id,
        driver_id=driver_id,
        connector_no=connector_no,
        connector_id=connector_id,
        meter_start_wh=meter_start_wh,
        started_at=started_at,
        reservation_id=reservation_id,
    )
    if begun is None:
        return None
    reservation = await reservations.on_transaction_started(
        conn,
        charger_id=charger_id,
        connector_no=connector_no,
        reservation_id=reservation_id,
        id_tag=id_tag,
        now=started_at,
    )
    if reservation is not None:
        await queries.set_reservation(
            conn, session_id=begun.session_id, reservation_uuid=reservation
        )
    await alerts.session_changed(conn, session_id=begun.session_id, now=now)
    return begun.transaction_id


# --- Live state ------------------------------------------------------------------------


async def live_changed(
    conn: asyncpg.Connection, session_ids: Sequence[uuid.UUID], now: datetime, *, meter: bool
) -> None:
    """The live state of these (paid) sessions changed in this transaction: alert rules,
    and after MeterValues the hold check (90 % of what is authorised → a job tries a
    further hold, else stops the session and tells the driver)."""
    for session_id in session_ids:
        await alerts.session_changed(conn, session_id=session_id, now=now)
        if meter:
            await check_hold(conn, session_id=session_id, now=now)


async def running_cost(db: Executor, row: SessionRow, now: datetime) -> int | None:
    """The cost so far of a running session, priced with its locked tariff version. A
    session the charger already ended (its bill not written yet) costs what it will be
    billed: nothing accrues after its end (time after it would add a parking step)."""
    if row.tariff_id is None or row.tariff_version is None:
        return None
    ct = await compiled_tariff(db, row.tariff_id, row.tariff_version)
    readings = await queries.energy_readings(db, transaction_id=row.transaction_id)
    ended = row.ended_at is not None
    bill = billing.bill_session(
        ct,
        ZoneInfo(row.timezone),
        start_at=row.started_at,
        meter_start_wh=row.meter_start_wh,
        readings=[Reading(r.at, r.wh) for r in readings],
        end_at=row.ended_at or max(now, row.started_at),
        meter_stop_wh=row.meter_stop_wh if ended else None,
        charging_end=row.charging_ended_at,
    )
    return bill.total_minor


async def check_hold(db: Executor, *, session_id: uuid.UUID, now: datetime) -> bool:
    """Queue the hold job once per hold level when the running cost reached 90 %."""
    row = await queries.session(db, session_id=session_id)
    if (
        row is None
        or row.preauth_minor is None
        or row.hold_exhausted_at is not None
        or row.status not in state.LIVE
    ):
        return False
    cost = await running_cost(db, row, now)
    if cost is None or not billing.hold_low(cost, row.preauth_minor):
        return False
    queued = await outbox.enqueue(
        db,
        job=HOLD_LOW_JOB,
        args={"session_id": str(session_id)},
        dedupe_key=f"session_hold_low:{session_id}:{row.holds}",
    )
    return queued is not None


# --- Stop ------------------------------------------------------------------------------


async def transaction_stopped(
    conn: asyncpg.Connection, *, session_id: uuid.UUID, now: datetime
) -> None:
    """After StopTransaction closed the session (same transaction): bill it once, decide
    the captures, end its reservation, run the alert rules."""
    row = await queries.session(conn, session_id=session_id)
    if row is None:
        return
    if row.status == "COMPLETED" and row.preauth_minor is not None and row.driver_id is not None:
        await bill(conn, row, now)
    if row.reservation_uuid is not None:
        await reservations.on_session_ended(conn, reservation_uuid=row.reservation_uuid, now=now)
    if row.driver_id is not None:
        await alerts.session_changed(conn, session_id=session_id, now=now)


async def bill(conn: asyncpg.Connection, row: SessionRow, now: datetime) -> Receipt | None:
    """Write the bill of a finished session, once (None when it was billed before)."""
    if row.tariff_id is None or row.tariff_version is None or row.ended_at is None:
        return None
    assert row.driver_id is not None
    assert row.meter_stop_wh is not None
    ct = await compiled_tariff(conn, row.tariff_id, row.tariff_version)
    readings = await queries.energy_readings(conn, transaction_id=row.transaction_id)
    charging_end = row.charging_ended_at or row.ended_at
    the_bill = billing.bill_session(
        ct,
        ZoneInfo(row.timezone),
        start_at=row.started_at,
        meter_start_wh=row.meter_start_wh,
        readings=[Reading(r.at, r.wh) for r in readings],
        end_at=row.ended_at,
        meter_stop_wh=row.meter_stop_wh,
        charging_end=charging_end,
    )
    energy_wh = max(row.meter_stop_wh - row.meter_start_wh, 0)
    lines = msgspec.to_builtins(billing.receipt(the_bill, energy_wh=energy_wh).lines)
    written = await queries.insert_bill(
        conn,
        session_id=row.session_id,
        tariff_id=row.tariff_id,
        tariff_version=row.tariff_version,
        currency=the_bill.currency,
        energy_wh=energy_wh,
        session_start=row.started_at,
        charging_end=min(max(charging_end, row.started_at), row.ended_at),
        session_end=row.ended_at,
        subtotal_minor=the_bill.subtotal_minor,
        vat_minor=the_bill.vat_minor,
        total_minor=the_bill.total_minor,
        lines=lines,
        billed_at=now,
    )
    if not written:
        return None
    holds = [  # the order settle_session captures in: holds in place, oldest first
        (p.payment_intent_id, p.amount_minor)
        for p in await payment_queries.session_payments(conn, session_id=row.session_id)
        if p.kind == "hold" and p.status == "requires_capture"
    ]
    plan, extra = billing.split_capture(the_bill.total_minor, holds)
    paid = [
        ReceiptPayment(kind="hold", payment_intent_id=pi, amount_minor=a) for pi, a in plan if a
    ]
    if extra:
        paid.append(ReceiptPayment(kind="extra", payment_intent_id=None, amount_minor=extra))
    receipt = billing.receipt(the_bill, energy_wh=energy_wh, payments=paid)
    await queries.set_receipt(
        conn,
        session_id=row.session_id,
        subtotal_minor=the_bill.subtotal_minor,
        vat_minor=the_bill.vat_minor,
        total_minor=the_bill.total_minor,
        receipt=msgspec.to_builtins(receipt),
        billed_at=now,
    )
    await payments.settle_session(
        conn,
        session_id=row.session_id,
        driver_id=row.driver_id,
        total_minor=the_bill.total_minor,
        currency=the_bill.currency,
        now=now,
    )
    return receipt


async def stop(
    pool: asyncpg.Pool, rt: Runtime, *, driver_id: str, session_id: str, now: datetime
) -> SessionView:
    """`POST /v1/sessions/{id}/stop`: RemoteStopTransaction to the charger (a start not
    begun yet is called off instead: FAILED, hold released)."""
    sid = _uuid(session_id, SessionNotFound())
    driver = uuid.UUID(driver_id)
    async with pool.acquire() as conn:
        row = await queries.session(conn, session_id=sid, driver_id=driver)
        if row is None:
            raise SessionNotFound()
        if row.status == "STARTING":
            await _fail(conn, sid, "cancelled", now)
        elif row.status in state.LIVE:
            await queries.request_stop(conn, session_id=sid, now=now)
            rt.spawn(remote_stop(rt, row.charge_point_id, row.transaction_id))
        else:
            raise SessionNotActive(f"the session is {row.status.lower()}")
        async with conn.transaction():
            fresh = await queries.session(conn, session_id=sid)
            assert fresh is not None
            return await view(conn, fresh, now)


async def remote_stop(rt: Runtime, charge_point_id: str, transaction_id: int) -> str:
    try:
        result = await rt.commands.remote_stop(
            charge_point_id,
            transaction_id=transaction_id,
            timeout_s=rt.settings.session_remote_start_timeout_s,
        )
    except CommandError as exc:
        log.warning("RemoteStop of transaction %s failed: %s", transaction_id, exc)
        return exc.code
    if result.status != "Accepted":
        log.warning("%s rejected RemoteStop of transaction %s", charge_point_id, transaction_id)
    return result.status


# --- Reads -----------------------------------------------------------------------------


async def _estimate(db: Executor, row: SessionRow) -> curve.Estimate:
    if row.status not in state.LIVE:
        return curve.Estimate(minutes_to_80=None, minutes_to_full=None)
    battery = float(row.vehicle_battery_wh) if row.vehicle_battery_wh else None
    if battery is None and row.soc_percent is not None:
        first = await queries.first_soc(db, transaction_id=row.transaction_id)
        if first is not None:
            readings = await queries.energy_readings(db, transaction_id=row.transaction_id)
            before = [r.wh for r in readings if r.at <= first.at]
            battery = curve.infer_battery_wh(
                soc_first=first.soc,
                energy_at_first_wh=(before[-1] - row.meter_start_wh) if before else 0.0,
                soc_now=row.soc_percent,
                energy_now_wh=float(row.energy_wh),
            )
    limits = [float(row.connector_power_w)] if row.connector_power_w else []
    car = row.vehicle_max_ac_w if row.connector_type in AC_TYPES else row.vehicle_max_dc_w
    if car:
        limits.append(float(car))
    return curve.estimate(
        soc=row.soc_percent,
        power_w=None if row.power_w is None else float(row.power_w),
        battery_wh=battery,
        max_power_w=min(limits) if limits else None,
    )


async def view(db: Executor, row: SessionRow, now: datetime) -> SessionView:
    """A session as its driver sees it."""
    if row.total_minor is not None:
        cost: int | None = row.total_minor
    elif row.status in state.LIVE:
        cost = await running_cost(db, row, now)
    elif row.status == "STARTING":
        cost = 0
    else:
        cost = None
    est = await _estimate(db, row)
    summary = await payments.session_payment(db, session_id=row.session_id)
    return SessionView(
        session_id=str(row.session_id),
        status=row.status,  # type: ignore[arg-type]
        connector_id=None if row.connector_id is None else str(row.connector_id),
        site_id=str(row.site_id),
        reservation_id=None if row.reservation_uuid is None else str(row.reservation_uuid),
        started_at=row.started_at,
        ended_at=row.ended_at,
        energy_kwh=round(row.energy_wh / 1000, 3),
        power_kw=None if row.power_w is None else round(row.power_w / 1000, 3),
        soc_percent=row.soc_percent,
        cost_so_far_minor=cost,
        estimated_minutes_remaining=est.minutes_to_full,
        estimated_minutes_to_80=est.minutes_to_80,
        currency=row.currency,
        tariff_id=None if row.tariff_id is None else str(row.tariff_id),
        tariff_version=row.tariff_version,
        payment=summary,
        receipt=None if row.receipt is None else msgspec.convert(row.receipt, Receipt),
        charger_id=str(row.charger_id),
        connector_no=row.connector_no,
        stop_requested_at=row.stop_requested_at,
        failure_reason=row.failure_reason,
    )


async def get(db: Executor, *, driver_id: str, session_id: str, now: datetime) -> SessionView:
    sid = _uuid(session_id, SessionNotFound())
    row = await queries.session(db, session_id=sid, driver_id=uuid.UUID(driver_id))
    if row is None:
        raise SessionNotFound()
    return await view(db, row, now)


async def list_for_driver(
    db: Executor, *, driver_id: str, limit: int, cursor: str | None, now: datetime
) -> SessionPage:
    after = decode_cursor(cursor, tuple[CursorTime, uuid.UUID])
    rows = await queries.driver_sessions(
        db, driver_id=uuid.UUID(driver_id), after=after, limit=limit + 1
    )
    items = [await view(db, r, now) for r in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        tail = rows[limit - 1]
        nxt = encode_cursor((tail.started_at, tail.session_id))
    return SessionPage(items=items, next_cursor=nxt)


async def list_for_admin(
    db: Executor,
    *,
    status: str | None,
    site_id: str | None,
    start_from: datetime | None,
    start_to: datetime | None,
    limit: int,
    cursor: str | None,
) -> AdminSessionPage:
    after = decode_cursor(cursor, tuple[CursorTime, uuid.UUID])
    start_from = None if start_from is None else pricing.aware(start_from, "from")
    start_to = None if start_to is None else pricing.aware(start_to, "to")
    site = None
    if site_id is not None:
        try:
            site = uuid.UUID(site_id)
        except ValueError:
            return AdminSessionPage(items=[])
    rows = await queries.admin_sessions(
        db,
        status=status,
        site_id=site,
        start_from=start_from,
        start_to=start_to,
        after=after,
        limit=limit + 1,
    )
    items: list[AdminSessionView] = []
    for r in rows[:limit]:
        summary: PaymentSummary = await payments.session_payment(db, session_id=r.session_id)
        items.append(
            AdminSessionView(
                session_id=str(r.session_id),
                status=r.status,  # type: ignore[arg-type]
                origin=r.origin,
                driver_id=None if r.driver_id is None else str(r.driver_id),
                charge_point_id=r.charge_point_id,
                charger_id=str(r.charger_id),
                connector_id=None if r.connector_id is None else str(r.connector_id),
                connector_no=r.connector_no,
                site_id=str(r.site_id),
                transaction_id=r.transaction_id,
                started_at=r.started_at,
                ended_at=r.ended_at,
                energy_kwh=round(r.energy_wh / 1000, 3),
                currency=r.currency,
                tariff_id=None if r.tariff_id is None else str(r.tariff_id),
                tariff_version=r.tariff_version,
                total_minor=r.total_minor,
                payment=summary,
                failure_reason=r.failure_reason,
                billed_at=r.billed_at,
            )
        )
    nxt = None
    if len(rows) > limit:
        tail = rows[limit - 1]
        nxt = encode_cursor((tail.started_at, tail.session_id))
    return AdminSessionPage(items=items, next_cursor=nxt)


# --- Sweeps ----------------------------------------------------------------------------


async def sweep_starting(pool: asyncpg.Pool, settings: Settings, now: datetime) -> int:
    """Starts the charger accepted but never began (or nobody answered for): FAILED,
    holds released. Returns how many."""
    before = now - timedelta(seconds=settings.session_start_timeout_s)
    done = 0
    async with pool.acquire() as conn, conn.transaction():
        for session_id in await queries.stale_starting(conn, before=before, limit=SWEEP_BATCH):
            if await queries.fail_starting(
                conn, session_id=session_id, reason="not_started", now=now
            ):
                await release_holds(conn, session_id=session_id, now=now)
                done += 1
    return done
