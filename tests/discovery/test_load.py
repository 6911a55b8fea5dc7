"""The index load (app/discovery/live.py) runs in a worker thread on its own event loop.
A worker that stops while a rebuild is in flight reaches interpreter exit with that load
still running, and from then on no thread pool takes work. The load must finish anyway:
when it handed each COPY chunk to the pool, the connection wedged and the API worker
never exited (CI: tests/chargers/test_processes.py waited 60 s on granian's stop)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from app.discovery import live
from app.discovery.index import FleetIndex
from tests.factories import bring_online, charger, import_fleet, site, staff_token


def _load_where_no_pool_takes_work(dsn: str) -> FleetIndex:
    """`live._load` on a new loop whose thread pool is shut down, as at interpreter exit."""
    loop = asyncio.new_event_loop()
    pool = ThreadPoolExecutor(max_workers=1)
    pool.shutdown()
    loop.set_default_executor(pool)
    try:
        return loop.run_until_complete(asyncio.wait_for(live._load(dsn), timeout=20))
    finally:
        loop.close()


async def test_the_index_loads_when_no_thread_pool_takes_work(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    token = staff_token(settings, roles=(Role.ADMIN,))
    sites = [
        site(f"LOAD-{i}", chargers=[charger(f"CP-LOAD-{i}", connectors=None)]) for i in range(3)
    ]
    r = await import_fleet(client, token, sites)
    assert r.status_code == 200, r.text
    await bring_online(db)
    expected = await db.fetchval("SELECT count(*) FROM connectors")
    assert expected >= 3

    index = await asyncio.to_thread(_load_where_no_pool_takes_work, settings.database_url)

    assert index.connector_count == expected
