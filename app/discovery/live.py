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
import logging
import time
from typing import Any

import asyncpg

from app.core.sql import Q
from app.discovery.index import ChargerRow, ConnectorRow, FleetIndex, SiteRow

CHANNEL = "vw_discovery"
log = logging.getLogger("app.discovery")


async def load_index(conn: asyncpg.Connection | asyncpg.Pool) -> FleetIndex:
    sites = [SiteRow(*r) for r in await conn.fetch(Q("discovery.index_sites"))]
    chargers = [ChargerRow(*r) for r in await conn.fetch(Q("discovery.index_chargers"))]
    connectors = [ConnectorRow(*r) for r in await conn.fetch(Q("discovery.index_connectors"))]
    index = await asyncio.to_thread(FleetIndex.build, sites, chargers, connectors)
    del sites, chargers, connectors
    _release_memory()
    return index


def _release_memory() -> None:
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
        self._listen_conn: asyncpg.Connection | None = None
        self._listening = asyncio.Event()
        self._stopping = False

    async def start(self, pool: asyncpg.Pool) -> None:
        # Listen first, then load: a change committed during the load is either in the
        # loaded rows or heard (and re-applied afterwards), never lost.
        self._tasks = [asyncio.create_task(self._listen_forever(), name="discovery-listen")]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=5)
        self._pending = []
        try:
            self.index = await load_index(pool)
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
        if self._listen_conn is not None:
            with contextlib.suppress(Exception):
                await self._listen_conn.close()

    # ---- deltas -----------------------------------------------------------------------

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
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
            ok = self.index.set_connector_status(int(seq), value)
        elif kind == "h":
            ok = self.index.set_charger_state(int(seq), value)
        else:
            return
        self.deltas_applied += 1
        if not ok:  # something the index has not seen yet: pick it up with a rebuild
            self._rebuild_requested.set()

    # ---- background tasks -------------------------------------------------------------

    async def _listen_forever(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
                self._listen_conn = conn
                await conn.add_listener(CHANNEL, self._on_notify)
                if self._listening.is_set():  # a reconnect: deltas may have been missed
                    self._rebuild_requested.set()
                self._listening.set()
                delay = 0.2
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
                    await conn.execute("SELECT 1")  # notices a dead socket
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("discovery LISTEN connection lost (%r); reconnecting", exc)
            finally:
                if self._listen_conn is not None:
                    with contextlib.suppress(Exception):
                        await self._listen_conn.close()
                    self._listen_conn = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _rebuild_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rebuild_requested.wait(), timeout=self.resync_s)
            await asyncio.sleep(self.debounce_s)  # let a burst of changes settle
            self._rebuild_requested.clear()
            self._pending = []
            try:
                conn = await asyncpg.connect(self.dsn, timeout=5)
                try:
                    new = await load_index(conn)
                finally:
                    await conn.close()
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
