"""Keeps each API worker's FleetIndex fresh.

- At start-up: a full load from PostgreSQL (three queries) into a new `FleetIndex`.
- Then: a dedicated connection LISTENs on `vw_discovery`; triggers (migration 0002) send
  status and connectivity deltas, applied in O(log n) — visible in search within
  milliseconds of the commit, in every worker process.
- Structural changes (`f`: sites/chargers/connectors added or edited) schedule a debounced
  full rebuild in a thread; deltas that arrive meanwhile are re-applied to the new index.
- If the LISTEN connection drops, it reconnects and rebuilds (nothing was heard meanwhile).
  A periodic rebuild (`DISCOVERY_RESYNC_S`) bounds any drift.
Because it rides on PostgreSQL, search keeps working and stays fresh while Redis is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import io
import logging
import time
from typing import Any

import asyncpg
import numpy as np
from numpy.typing import NDArray

from app.core.listen import Listener
from app.discovery import queries, updates
from app.discovery.columns import (
    CONNECTOR_TYPES,
    STATUSES,
    VISIBLE_STATES,
    ChargerCols,
    ConnectorCols,
)
from app.discovery.index import FleetIndex

CHANNEL = "vw_discovery"
# Each statement of a load (a million connectors take seconds): a wedged connection must
# not keep the load's thread, and so the worker's exit, waiting for ever.
LOAD_TIMEOUT_S = 120.0
log = logging.getLogger("app.discovery")


async def load_index(dsn: str) -> FleetIndex:
    """A fresh index from PostgreSQL, loaded and built in a worker thread with its own
    connection and event loop: decoding a million rows takes seconds, and doing it on the
    serving loop would stall every request of this worker meanwhile (the thread only
    competes for the GIL, which the serving loop gets back every few milliseconds)."""
    return await asyncio.to_thread(_load_in_thread, dsn)


def _load_in_thread(dsn: str) -> FleetIndex:
    # The coroutine is made here, in the thread: made by the caller, it was never awaited
    # (a RuntimeWarning) when the caller was cancelled before the thread began.
    return asyncio.run(_load(dsn))


async def _load(dsn: str) -> FleetIndex:
    """Sites as rows; chargers and connectors as binary COPY parsed straight into numpy
    columns (a million connectors: ~90 MB of fixed-width rows, no Python object per row)."""
    conn = await asyncpg.connect(dsn, timeout=10, command_timeout=LOAD_TIMEOUT_S)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            sites = await queries.index_sites(conn)
            chargers_copy = await queries.copy_chargers(conn, visible_states=VISIBLE_STATES)
            connectors_copy = await queries.copy_connectors(
                conn, connector_types=CONNECTOR_TYPES, statuses=STATUSES
            )
    finally:
        await conn.close(timeout=5)  # then terminated: a thread must never wait for ever
    ch = _columns(chargers_copy, CHARGER_ROW)
    co = _columns(connectors_copy, CONNECTOR_ROW)
    del chargers_copy, connectors_copy
    chargers = ChargerCols(seq=ch["seq"], visible=ch["visible"], uuid=ch["uuid"])
    connectors = ConnectorCols(
        seq=co["seq"],
        charger_seq=co["charger_seq"],
        site_seq=co["site_seq"],
        no=co["no"],
        type=co["type"],
        power_w=co["power_w"],
        status=co["status"],
        uuid=co["uuid"],
    )
    index = FleetIndex.build_columns(sites, chargers, connectors)
    del sites, ch, co, chargers, connectors
    release_memory()
    return index


def _row(*fields: tuple[str, str | tuple[str, tuple[int]]]) -> np.dtype[Any]:
    """The dtype of one binary COPY row of fixed-width, NOT NULL fields: a field count,
    then each field's length and value (network byte order)."""
    spec: list[Any] = [("n_fields", ">i2")]
    for i, (name, kind) in enumerate(fields):
        spec += [(f"len{i}", ">i4"), (name, kind)]
    return np.dtype(spec)


CHARGER_ROW = _row(("seq", ">i8"), ("visible", ">i4"), ("uuid", ("u1", (16,))))
CONNECTOR_ROW = _row(
    ("seq", ">i8"),
    ("charger_seq", ">i8"),
    ("site_seq", ">i8"),
    ("no", ">i4"),
    ("type", ">i4"),
    ("power_w", ">i4"),
    ("status", ">i4"),
    ("uuid", ("u1", (16,))),
)
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _columns(data: io.BytesIO, row: np.dtype[Any]) -> dict[str, NDArray[Any]]:
    """The columns of a binary COPY stream of fixed-width rows (native byte order)."""
    buf = data.getbuffer()
    if bytes(buf[:11]) != COPY_SIGNATURE:
        raise ValueError("not a binary COPY stream")
    start = 19 + int.from_bytes(buf[15:19], "big")  # header + extension area
    body = len(buf) - start - 2  # the trailer is a field count of -1
    if body % row.itemsize or bytes(buf[len(buf) - 2 :]) != b"\xff\xff":
        raise ValueError("unexpected binary COPY layout (a NULL or a changed column type?)")
    rows = np.frombuffer(buf, dtype=row, count=body // row.itemsize, offset=start)
    names = [n for n in row.names or () if n != "n_fields" and not n.startswith("len")]
    if len(rows) and (rows["n_fields"] != len(names)).any():
        raise ValueError("unexpected field count in binary COPY rows")
    cols = {n: rows[n].astype(rows[n].dtype.newbyteorder("=")) for n in names}
    del rows
    buf.release()
    return cols


def release_memory() -> None:
    """Hand the load's temporaries (millions of rows) back to the OS, so the worker's RSS
    is the index, not the high-water mark of building it."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class LiveIndex:
    """The current index plus the machinery that keeps it fresh."""

    def __init__(self, dsn: str, *, debounce_s: float = 0.2, resync_s: float = 600.0) -> None:
        self.dsn = dsn
        self.debounce_s = debounce_s
        self.resync_s = resync_s
        self.index = FleetIndex.build([], [], [])
        self.loaded_at = 0.0
        self.deltas_applied = 0
        self._pending: list[str] | None = None  # deltas heard while a rebuild runs
        self._rebuild_requested = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._listener = Listener(dsn, CHANNEL, self._on_notify, self._rebuild_requested.set)
        self._stopping = False

    async def start(self, pool: asyncpg.Pool) -> None:
        # Listen first, then load: a change committed during the load is either in the
        # loaded rows or heard (and re-applied afterwards), never lost.
        self._listener.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listener.ready.wait(), timeout=5)
        self._pending = []
        try:
            self.index = await load_index(self.dsn)
            self.loaded_at = time.monotonic()
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("discovery index not loaded at start-up (%r); retrying", exc)
            self._rebuild_requested.set()
        pending, self._pending = self._pending, None
        for payload in pending:
            if payload[:1] != "f":
                self.apply(payload)
        self._tasks.append(asyncio.create_task(self._rebuild_loop(), name="discovery-rebuild"))

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self._listener.stop()

    # ---- deltas -----------------------------------------------------------------------

    def _on_notify(self, payload: str) -> None:
        if self._pending is not None:
            self._pending.append(payload)
        self.apply(payload)

    def apply(self, payload: str) -> None:
        kind = payload[:1]
        if kind == "f":
            self._rebuild_requested.set()
            return
        seq, _, value = payload[1:].partition(":")
        if not seq.isdigit():
            return
        if kind == "s":
            ok = updates.set_connector_status(self.index, int(seq), value)
        elif kind == "h":
            ok = updates.set_charger_state(self.index, int(seq), value)
        else:
            return
        self.deltas_applied += 1
        if not ok:  # something the index has not seen yet: pick it up with a rebuild
            self._rebuild_requested.set()

    # ---- background tasks -------------------------------------------------------------

    async def _rebuild_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rebuild_requested.wait(), timeout=self.resync_s)
            await asyncio.sleep(self.debounce_s)  # let a burst of changes settle
            self._rebuild_requested.clear()
            self._pending = []
            try:
                new = await load_index(self.dsn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("discovery rebuild failed (%r); will retry", exc)
                self._pending = None
                await asyncio.sleep(1.0)
                self._rebuild_requested.set()
                continue
            pending, self._pending = self._pending, None
            self.index = new
            self.loaded_at = time.monotonic()
            for payload in pending:  # absolute values: re-applying is harmless
                if payload[:1] != "f":
                    self.apply(payload)
