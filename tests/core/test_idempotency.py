"""Idempotency-Key: one effect, identical replays, a different body with the same key → 422."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.db import RequestTransactions, create_pool, provide_db
from app.core.deps import Db
from app.core.errors import EXCEPTION_HANDLERS
from app.core.idempotency import MAX_BODY_BYTES, IdempotencyMiddleware, purge_idempotency_keys
from app.core.settings import Settings
from app.main import create_app
from tests.factories import auth, site, staff_token


@asynccontextmanager
async def _serve(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this event loop (Litestar's test client runs it in a thread of its own,
    one request at a time), so that tests can hold a request mid-flight."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    lifespan = asyncio.create_task(app(scope, to_app.get, from_app.put))  # type: ignore[arg-type]
    await to_app.put({"type": "lifespan.startup"})
    assert (await from_app.get())["type"] == "lifespan.startup.complete"
    try:
        transport = httpx.ASGITransport(app=cast(Any, app))  # Litestar's scope types are TypedDicts
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await lifespan


async def test_same_key_fifty_times_one_effect(settings: Settings, db: asyncpg.Connection) -> None:
    """Fifty at once (in this event loop, really concurrent) on a pool of ten."""
    headers = {**auth(staff_token(settings, roles=(Role.ADMIN,))), "Idempotency-Key": "k-1"}
    body = {"sites": [site("s1"), site("s2")]}
    async with _serve(create_app(settings, run_migrations=False)) as client:
        responses = await asyncio.gather(
            *(client.post("/admin/v1/fleet/import", json=body, headers=headers) for _ in range(50))
        )
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert responses[0].json()["created"]["sites"] == 2
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'fleet.import'") == 1


async def test_same_key_different_body_is_422(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    headers = {**auth(staff_token(settings, roles=(Role.ADMIN,))), "Idempotency-Key": "k-2"}
    first = await client.post(
        "/admin/v1/fleet/import", json={"sites": [site("a")]}, headers=headers
    )
    assert first.status_code == 200
    r = await client.post("/admin/v1/fleet/import", json={"sites": [site("b")]}, headers=headers)
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_to_the_caller(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    a = {**auth(staff_token(settings, roles=(Role.ADMIN,), staff_id="a")), "Idempotency-Key": "k"}
    b = {**auth(staff_token(settings, roles=(Role.ADMIN,), staff_id="b")), "Idempotency-Key": "k"}
    r1 = await client.post("/admin/v1/fleet/import", json={"sites": [site("a")]}, headers=a)
    r2 = await client.post("/admin/v1/fleet/import", json={"sites": [site("b")]}, headers=b)
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert r2.json()["created"]["sites"] == 1


async def test_errors_are_replayed_too_but_not_5xx(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    viewer = {**auth(staff_token(settings, roles=(Role.VIEWER,))), "Idempotency-Key": "k-3"}
    r1 = await client.post("/admin/v1/fleet/import", json={"sites": []}, headers=viewer)
    r2 = await client.post("/admin/v1/fleet/import", json={"sites": []}, headers=viewer)
    assert r1.status_code == r2.status_code == 403
    assert r2.headers.get("idempotent-replayed") == "true"


# --- the stored response commits with the handler's work -------------------------------
# A small app of its own: one route that writes an "effect" row through `db` and, when
# asked, waits for the test before it answers (a request caught mid-flight).


class EffectIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    blob: str = ""
    second_connection: bool = False  # the handler also asks on a pooled connection


MIDDLEWARE: list[Any] = [IdempotencyMiddleware, RequestTransactions]  # as in app.main


def _effects_app(settings: Settings, gate: dict[str, asyncio.Event]) -> Litestar:
    @post("/effects", status_code=201)
    async def make_effect(db: Db, state: State, data: JSONBody[EffectIn]) -> dict[str, str]:
        await db.execute("INSERT INTO effects (name) VALUES ($1)", data.name)
        if data.second_connection:
            await asyncio.sleep(0.05)  # let every request take its first connection
            await state.pool.fetchval("SELECT 1")
        if data.name in gate:
            gate[f"{data.name}:inside"].set()
            await gate[data.name].wait()
        return {"name": data.name}

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await create_pool(settings)
        try:
            yield
        finally:
            await app.state.pool.close()

    return Litestar(
        route_handlers=[make_effect],
        dependencies={"db": Provide(provide_db)},
        middleware=MIDDLEWARE,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        state=State({"settings": settings}),
    )


@pytest.fixture
async def effects(
    settings: Settings, db: asyncpg.Connection
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, asyncio.Event]]]:
    await db.execute("CREATE TABLE effects (name text)")
    gate: dict[str, asyncio.Event] = {}
    small_pool = msgspec.structs.replace(
        settings, db_pool_min=0, db_pool_max=2, idempotency_wait_s=0.5
    )
    async with _serve(_effects_app(small_pool, gate)) as client:
        yield client, gate


def _hold(gate: dict[str, asyncio.Event], name: str) -> asyncio.Event:
    gate[f"{name}:inside"] = asyncio.Event()
    gate[name] = asyncio.Event()
    return gate[f"{name}:inside"]


async def test_nothing_is_visible_until_the_response_commits_with_the_effect(
    effects: tuple[httpx.AsyncClient, dict[str, asyncio.Event]], db: asyncpg.Connection
) -> None:
    client, gate = effects
    inside = _hold(gate, "a")
    headers = {"Idempotency-Key": "k-held"}
    first = asyncio.create_task(client.post("/effects", json={"name": "a"}, headers=headers))
    await inside.wait()
    # mid-flight: neither the effect nor the claim is committed, so a crash now leaves nothing
    assert await db.fetchval("SELECT count(*) FROM effects") == 0
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    # duplicates wait without holding a connection (the pool has 2), then give up with 409
    waiting = await asyncio.gather(
        *(client.post("/effects", json={"name": "a"}, headers=headers) for _ in range(5))
    )
    assert {r.status_code for r in waiting} == {409}
    assert {r.json()["code"] for r in waiting} == {"idempotency_in_progress"}
    gate["a"].set()
    answered = await first
    assert answered.status_code == 201
    stored = await db.fetchrow("SELECT status_code, body FROM idempotency_keys")
    assert stored is not None
    assert (stored["status_code"], stored["body"]) == (201, answered.content)
    assert await db.fetchval("SELECT count(*) FROM effects") == 1
    replay = await client.post("/effects", json={"name": "a"}, headers=headers)
    assert (replay.status_code, replay.content) == (201, answered.content)
    assert replay.headers["idempotent-replayed"] == "true"
    assert await db.fetchval("SELECT count(*) FROM effects") == 1


async def test_a_request_lost_mid_flight_leaves_no_key_in_progress(
    effects: tuple[httpx.AsyncClient, dict[str, asyncio.Event]], db: asyncpg.Connection
) -> None:
    """The worker dies (here: its task is cancelled) after the handler wrote: the effect and
    the claim go together, so the client's retry runs at once, and only once."""
    client, gate = effects
    inside = _hold(gate, "b")
    headers = {"Idempotency-Key": "k-lost"}
    lost = asyncio.create_task(client.post("/effects", json={"name": "b"}, headers=headers))
    await inside.wait()
    lost.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lost
    del gate["b"]
    retry = await client.post("/effects", json={"name": "b"}, headers=headers)
    assert retry.status_code == 201
    assert await db.fetchval("SELECT count(*) FROM effects WHERE name = 'b'") == 1
    again = await client.post("/effects", json={"name": "b"}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert await db.fetchval("SELECT count(*) FROM effects WHERE name = 'b'") == 1


async def test_a_failed_commit_keeps_neither_the_effect_nor_the_key(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """A constraint checked only at COMMIT fails after the handler answered: the client gets
    a 503, nothing was kept, and the retry (once the cause is fixed) runs."""
    await db.execute("CREATE TABLE effect_parents (name text PRIMARY KEY)")
    await db.execute(
        """CREATE TABLE effects (
               name text REFERENCES effect_parents (name) DEFERRABLE INITIALLY DEFERRED)"""
    )
    app = _effects_app(settings, {})
    headers = {"Idempotency-Key": "k-commit"}
    async with _serve(app) as client:
        failed = await client.post("/effects", json={"name": "c"}, headers=headers)
        assert failed.status_code == 503
        assert await db.fetchval("SELECT count(*) FROM effects") == 0
        assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
        await db.execute("INSERT INTO effect_parents VALUES ('c')")
        retry = await client.post("/effects", json={"name": "c"}, headers=headers)
        assert retry.status_code == 201
        assert await db.fetchval("SELECT count(*) FROM effects") == 1


async def test_the_buffered_body_is_limited(
    effects: tuple[httpx.AsyncClient, dict[str, asyncio.Event]], db: asyncpg.Connection
) -> None:
    client, _ = effects
    headers = {"Idempotency-Key": "k-big", "content-type": "application/json"}
    big = msgspec.json.encode({"name": "d", "blob": "x" * MAX_BODY_BYTES})
    r = await client.post("/effects", content=big, headers=headers)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert await db.fetchval("SELECT count(*) FROM effects") == 0
    small = await client.post("/effects", json={"name": "d", "blob": "x" * 1000}, headers=headers)
    assert small.status_code == 201


async def test_expired_keys_are_purged(settings: Settings, db: asyncpg.Connection) -> None:
    await db.execute(
        """INSERT INTO idempotency_keys (scope, key, request_hash, status_code, created_at)
           VALUES ('s', 'old', 'h', 200, now() - make_interval(secs => $1 + 60)),
                  ('s', 'new', 'h', 200, now())""",
        float(settings.idempotency_ttl_s),
    )
    pool = await create_pool(settings)
    try:
        assert await purge_idempotency_keys({"pool": pool, "settings": settings}) == 1
    finally:
        await pool.close()
    assert [r["key"] for r in await db.fetch("SELECT key FROM idempotency_keys")] == ["new"]


async def test_keyed_runs_leave_connections_for_their_handlers(
    effects: tuple[httpx.AsyncClient, dict[str, asyncio.Event]], db: asyncpg.Connection
) -> None:
    """Each keyed run holds a connection and its handler asks for another: with a pool of
    two, two at once would each hold one and wait for the other for ever. At most half the
    pool runs keyed (the rest poll), so all of them are answered."""
    client, _ = effects
    requests = [
        client.post(
            "/effects",
            json={"name": f"e{i}", "second_connection": True},
            headers={"Idempotency-Key": f"k-e{i}"},
        )
        for i in range(4)
    ]
    answered = await asyncio.wait_for(asyncio.gather(*requests), timeout=20)
    assert [r.status_code for r in answered] == [201] * 4
    assert await db.fetchval("SELECT count(*) FROM effects") == 4
