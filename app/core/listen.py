"""A PostgreSQL LISTEN that stays up: the freshness of every per-process cache (the
discovery index, the price book) rides on one of these.

A dedicated connection (not from the pool: LISTEN is per session) subscribes to one
channel and calls `on_notify(payload)` for each notification, in the event loop. A dead
socket is noticed within a second (a `SELECT 1` probe); it reconnects with back-off
(0.2 s doubling to 5 s) and then calls `on_reconnect()`, because notifications sent
meanwhile are lost — the owner reloads. `ready` is set once the first LISTEN is in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger("app.listen")


class Listener:
    def __init__(
        self,
        dsn: str,
        channel: str,
        on_notify: Callable[[str], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self.on_notify = on_notify
        self.on_reconnect = on_reconnect
        self.ready = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listen-{self.channel}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close()

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.on_notify(payload)

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                self._conn = conn = await asyncpg.connect(self.dsn, timeout=5)
                await conn.add_listener(self.channel, self._heard)
                if self.ready.is_set():  # a reconnect: notifications may have been missed
                    self.on_reconnect()
                self.ready.set()
                delay = 0.2
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
                    await conn.execute("SELECT 1")  # notices a dead socket
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN %s connection lost (%r); reconnecting", self.channel, exc)
            finally:
                await self._close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
