"""The request transaction (`db`): released in every path, committed anyway on request."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from app.core.db import RequestTransactions, commit_anyway, create_pool, provide_db
from app.core.deps import Db
from app.core.errors import EXCEPTION_HANDLERS, NotFound
from app.core.settings import Settings

POOL = 2


def _app(settings: Settings, *, guarded: bool) -> Litestar:
    small = msgspec.structs.replace(settings, db_pool_min=0, db_pool_max=POOL)

    async def provide_thing() -> str:
        """Fails once `db` has opened its transaction (Litestar resolves both at once)."""
        await asyncio.sleep(0.05)
        raise NotFound("no such thing")

    @get("/things/missing")
    async def missing(db: Db, thing: NamedDependency[str]) -> str:
        return thing

    @get("/ping")
    async def ping(db: Db) -> int:
        answer: int = await db.fetchval("SELECT 1")
        return answer

    @post("/notes/{text:str}", status_code=201)
    async def note(db: Db, text: FromPath[str]) -> None:
        await db.execute("INSERT INTO notes VALUES ($1)", text)
        if text.startswith("kept"):
            raise commit_anyway(NotFound("kept although the request fails"))
        if text.startswith("lost"):
            raise NotFound("rolled back with the request")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await create_pool(small)
        try:
            yield
        finally:
            await app.state.pool.close()

    return Litestar(
        route_handlers=[missing, ping, note],
        dependencies={"db": Provide(provide_db), "thing": Provide(provide_thing)},
        middleware=[RequestTransactions] if guarded else [],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"settings": small}),
    )


@asynccontextmanager
async def _serve(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with app.lifespan():
        transport = httpx.ASGITransport(app=cast(Any, app))  # Litestar's scope types are TypedDicts
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Litestar leaves the dropped cleanup to the garbage collector (the generators sit in
    reference cycles): without collections the leak is certain, not a matter of timing."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _still_serves(app: Litestar, client: httpx.AsyncClient) -> bool:
    try:
        r = await asyncio.wait_for(client.get("/ping"), timeout=3)
    except TimeoutError:
        return False
    return r.status_code == 200


@pytest.mark.usefixtures("no_gc")
async def test_a_dependency_failing_after_db_opened_leaks_nothing(settings: Settings) -> None:
    app = _app(settings, guarded=True)
    async with _serve(app) as client:
        for _ in range(POOL * 3):
            r = await client.get("/things/missing")
            assert r.status_code == 404
        assert await _still_serves(app, client)
        pool: asyncpg.Pool = app.state.pool
        assert pool.get_idle_size() == pool.get_size()


@pytest.mark.usefixtures("no_gc")
async def test_without_the_guard_litestar_drops_the_cleanup(settings: Settings) -> None:
    """Why `RequestTransactions` exists: Litestar forgets the cleanup of dependencies
    already resolved when a sibling raises, so `db` stays checked out with its transaction
    open until a garbage collection happens to run. When this test fails, Litestar cleans
    up by itself and the guard may go."""
    app = _app(settings, guarded=False)
    async with _serve(app) as client:
        for _ in range(POOL):
            assert (await client.get("/things/missing")).status_code == 404
        assert not await _still_serves(app, client)
        pool: asyncpg.Pool = app.state.pool
        assert pool.get_idle_size() == 0
        gc.collect()  # only a collection finalizes the dropped generators and frees them
        assert await _still_serves(app, client)


async def test_commit_anyway_keeps_the_writes_of_a_failing_request(
    settings: Settings, db: asyncpg.Connection
) -> None:
    await db.execute("CREATE TABLE notes (text text)")
    async with _serve(_app(settings, guarded=True)) as client:
        assert (await client.post("/notes/plain")).status_code == 201
        assert (await client.post("/notes/lost-1")).status_code == 404
        kept = await client.post("/notes/kept-1")
    assert kept.status_code == 404
    assert kept.json()["code"] == "not_found"
    rows = await db.fetch("SELECT text FROM notes ORDER BY text")
    assert [r["text"] for r in rows] == ["kept-1", "plain"]
