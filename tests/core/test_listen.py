"""The LISTEN behind every per-process cache survives its connection being killed: it
reconnects, tells its owner that notifications may have been missed, and hears new ones."""

from __future__ import annotations

import asyncio

import asyncpg

from app.core.listen import Listener
from tests.factories import eventually


async def test_listener_reconnects_after_its_backend_is_terminated(db_url: str) -> None:
    heard: list[str] = []
    reconnects: list[int] = []
    listener = Listener(db_url, "vw_test", heard.append, lambda: reconnects.append(1))
    listener.start()
    conn = await asyncpg.connect(db_url)
    try:
        await asyncio.wait_for(listener.ready.wait(), timeout=5)
        await conn.execute("SELECT pg_notify('vw_test', 'before')")
        assert await eventually(lambda: _async(heard == ["before"]))

        assert listener._conn is not None
        pid = listener._conn.get_server_pid()
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
        assert await eventually(lambda: _async(bool(reconnects)), within_s=5)

        await conn.execute("SELECT pg_notify('vw_test', 'after')")
        assert await eventually(lambda: _async(heard == ["before", "after"]))
    finally:
        await conn.close()
        await listener.stop()


async def _async(value: bool) -> bool:
    return value
