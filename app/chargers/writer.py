"""Group commit for the two messages every charger sends all the time: StatusNotification
and MeterValues (TARGETS.md: ≥ 3,000/s on one API process).

One statement per message kind and batch instead of a transaction per message: a
handler hands its message to the writer and waits until the batch holding it has been
committed, so the CallResult still means "stored". While one batch is being written the
next one fills up, so batches grow with the load and stay at one message when it is
quiet (no added delay). A batch that fails is retried message by message, so one bad
message fails alone.

A charger's own messages never share a batch out of order: the ocpp library handles one
message per connection at a time and answers only after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

import asyncpg
from prometheus_client import Histogram

from app.chargers import queries as q
from app.chargers import service
from app.chargers.service import CONNECTOR_STATUS, SESSION_STATUS, ChargerIdentity, Samples
from app.sessions import service as session_service
from app.sessions import state as session_state

log = logging.getLogger("app.chargers")

INT4_MAX: Final = 2**31 - 1

BATCH_SIZE = Histogram(
    "ocpp_write_batch_size",
    "Messages per group-committed batch (StatusNotification / MeterValues)",
    ["kind"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
BATCH_SECONDS = Histogram(
    "ocpp_write_batch_seconds",
    "Time to write and commit one batch",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


@dataclass(slots=True)
class _StatusItem:
    charger_id: uuid.UUID
    connector_no: int
    status: str  # connectors.status
    session_status: str | None
    at: datetime
    future: asyncio.Future[None] = field(repr=False)
    idle: bool = False  # the car stopped drawing power (parking runs, app.sessions.state)


@dataclass(slots=True)
class _MeterItem:
    charger_id: uuid.UUID
    connector_no: int
    transaction_id: int | None
    samples: Samples
    future: asyncio.Future[None] = field(repr=False)


def _whole(value: float | None, limit: int) -> int | None:
    """An integer column's value, or None when the charger sent something unusable."""
    if value is None or not math.isfinite(value) or abs(value) > limit:
        return None
    return round(value)


_I = TypeVar("_I", _StatusItem, _MeterItem)

# Errors that one message's content can cause (a value out of range, a constraint): the
# batch is retried message by message. Anything else (connection lost, timeout) fails it.
_ONE_BAD_MESSAGE: Final = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
    TypeError,
    OverflowError,
)


class _Batcher(Generic[_I]):
    """Items in, one `flush(batch)` at a time, every item's future settled afterwards."""

    def __init__(
        self,
        name: str,
        flush: Callable[[Sequence[_I]], Awaitable[None]],
        max_batch: int,
        timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.flush: Callable[[Sequence[_I]], Awaitable[None]] = flush
        self.max_batch = max_batch
        self.items: list[_I] = []
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.batches = 0
        self.largest = 0

    async def put(self, item: _I) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name=f"ocpp-writer:{self.name}")
        self.items.append(item)
        self.wakeup.set()
        await item.future

    async def _run(self) -> None:
        try:
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                while self.items:
                    batch = self.items[: self.max_batch]
                    del self.items[: self.max_batch]
                    await self._write(batch)
        finally:
            pending, self.items = self.items, []
            for item in pending:
                if not item.future.done():
                    item.future.set_exception(ConnectionError("the OCPP writer stopped"))

    async def _write(self, batch: list[_I]) -> None:
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.flush(batch)
        except asyncio.CancelledError:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(ConnectionError("the OCPP writer stopped"))
            raise
        except Exception as exc:
            if len(batch) > 1 and isinstance(exc, _ONE_BAD_MESSAGE):
                for item in batch:  # find the one that fails; the others are written
                    await self._write([item])
                return
            # The database is away (or one message is bad): these messages fail, the
            # chargers get a CallError and send their transaction messages again.
            log.warning("OCPP %s write of %d message(s) failed: %r", self.name, len(batch), exc)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        BATCH_SIZE.labels(self.name).observe(len(batch))
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        for item in batch:
            if not item.future.done():
                item.future.set_result(None)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


class OcppWriter:
    """The per-process writer of StatusNotification and MeterValues (see module doc)."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 1000) -> None:
        self.pool = pool
        self._statuses = _Batcher[_StatusItem]("status", self._flush_statuses, max_batch)
        self._meters = _Batcher[_MeterItem]("meter", self._flush_meters, max_batch)

    async def close(self) -> None:
        await self._statuses.close()
        await self._meters.close()

    def stats(self) -> dict[str, int]:
        return {
            "status_batches": self._statuses.batches,
            "status_largest_batch": self._statuses.largest,
            "meter_batches": self._meters.batches,
            "meter_largest_batch": self._meters.largest,
        }

    # ------------------------------------------------------------------- intake

    async def status(
        self, charger: ChargerIdentity, connector_no: int, ocpp_status: str, at: datetime
    ) -> None:
        """Store a StatusNotification; returns once committed."""
        mapped = CONNECTOR_STATUS.get(ocpp_status)
        if mapped is None or not 0 <= connector_no <= INT4_MAX:
            return  # nothing to store (no such connector can exist)
        if connector_no == 0:  # the whole charger: rare, its own path
            await service.status(self.pool, charger, connector_no, ocpp_status, at)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._statuses.put(
            _StatusItem(
                charger.charger_id,
                connector_no,
                mapped,
                SESSION_STATUS.get(ocpp_status),
                at,
                future,
                session_state.is_idle(ocpp_status),
            )
        )

    async def meter_values(
        self,
        charger: ChargerIdentity,
        *,
        connector_no: int,
        transaction_id: int | None,
        meter_value: list[dict[str, Any]],
    ) -> None:
        """Store a MeterValues (samples, and the live state of the charger's own
        transaction); returns once committed."""
        if not 0 <= connector_no <= INT4_MAX:
            return
        if transaction_id is not None and not 0 <= transaction_id <= INT4_MAX:
            transaction_id = None  # not one of ours
        samples = service.parse_samples(meter_value)
        if not samples.ats:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._meters.put(
            _MeterItem(charger.charger_id, connector_no, transaction_id, samples, future)
        )

    # ------------------------------------------------------------------ batches

    async def _flush_statuses(self, batch: Sequence[_StatusItem]) -> None:
        latest: dict[tuple[uuid.UUID, int], _StatusItem] = {}
        for item in batch:  # in arrival order: the latest per connector wins
            latest[(item.charger_id, item.connector_no)] = item
        keys = sorted(latest)  # one lock order for every batch
        chargers = sorted({charger_id for charger_id, _ in keys})
        sessions = [k for k in keys if latest[k].session_status is not None]
        async with self.pool.acquire() as conn, conn.transaction():
            await q.touch_many(conn, charger_ids=chargers, now=datetime.now(UTC))
            await q.set_connector_statuses_many(
                conn,
                charger_ids=[k[0] for k in keys],
                connector_nos=[k[1] for k in keys],
                statuses=[latest[k].status for k in keys],
                ats=[latest[k].at for k in keys],
            )
            if sessions:
                changed = await q.set_open_session_statuses_many(
                    conn,
                    charger_ids=[k[0] for k in sessions],
                    connector_nos=[k[1] for k in sessions],
                    statuses=[latest[k].session_status for k in sessions],
                    idle=[latest[k].idle for k in sessions],
                    ats=[latest[k].at for k in sessions],
                    live_statuses=session_state.LIVE,
                )
                paid = sorted(r.session_id for r in changed if r.paid)
                if paid:  # alert rules of the sessions someone pays for
                    await session_service.live_changed(conn, paid, datetime.now(UTC), meter=False)

    async def _flush_meters(self, batch: Sequence[_MeterItem]) -> None:
        transaction_ids = sorted({i.transaction_id for i in batch if i.transaction_id is not None})
        async with self.pool.acquire() as conn, conn.transaction():
            owners: dict[int, uuid.UUID] = {}
            if transaction_ids:
                rows = await q.session_chargers(conn, transaction_ids=transaction_ids)
                owners = {r.transaction_id: r.charger_id for r in rows}
            charger_ids: list[uuid.UUID] = []
            connector_nos: list[int] = []
            tx_ids: list[int | None] = []
            ats: list[datetime] = []
            measurands: list[str] = []
            values: list[float] = []
            units: list[str | None] = []
            contexts: list[str | None] = []
            phases: list[str | None] = []
            # transaction → (charger, energy, power, soc, latest time), newest wins per field
            live: dict[int, list[Any]] = {}
            for item in batch:
                tx = item.transaction_id
                if tx is not None and owners.get(tx) != item.charger_id:
                    tx = None  # not this charger's transaction: keep the samples unlinked
                s = item.samples
                n = len(s.ats)
                charger_ids += [item.charger_id] * n
                connector_nos += [item.connector_no] * n
                tx_ids += [tx] * n
                ats += s.ats
                measurands += s.measurands
                values += s.values
                units += s.units
                contexts += s.contexts
                phases += s.phases
                if tx is None or s.latest is None:
                    continue
                current = live.get(tx)
                energy = _whole(s.energy, 2**63 - 1)
                power = _whole(s.power, INT4_MAX)
                if current is None:
                    live[tx] = [item.charger_id, energy, power, s.soc, s.latest]
                elif s.latest >= current[4]:
                    live[tx] = [
                        item.charger_id,
                        current[1] if energy is None else energy,
                        current[2] if power is None else power,
                        current[3] if s.soc is None else s.soc,
                        s.latest,
                    ]
            await q.insert_samples_many(
                conn,
                columns=(
                    charger_ids,
                    connector_nos,
                    tx_ids,
                    ats,
                    measurands,
                    values,
                    units,
                    contexts,
                    phases,
                ),
            )
            if live:
                order = sorted(live)
                changed = await q.update_sessions_live_many(
                    conn,
                    charger_ids=[live[t][0] for t in order],
                    transaction_ids=order,
                    energy_wh=[live[t][1] for t in order],
                    power_w=[live[t][2] for t in order],
                    soc=[live[t][3] for t in order],
                    ats=[live[t][4] for t in order],
                )
                paid = sorted(r.session_id for r in changed if r.paid)
                if paid:  # alert rules and the hold check of paid sessions
                    await session_service.live_changed(conn, paid, datetime.now(UTC), meter=True)
