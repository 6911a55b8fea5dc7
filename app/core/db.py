"""The asyncpg pool and the one-transaction-per-use-case dependency."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, TypeVar

import asyncpg
import msgspec
from litestar import Request

from app.core.settings import Settings

T = TypeVar("T")
log = logging.getLogger("app.db")
Connection = asyncpg.Connection  # type alias used in signatures across domains


async def init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, encoded by msgspec (fast, strict).
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: msgspec.json.encode(v).decode(),
        decoder=msgspec.json.decode,
        schema="pg_catalog",
    )


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """A pool that also comes up while PostgreSQL is down (then with no idle connections),
    so the process starts, `/health/ready` says what is wrong, and it recovers by itself."""
    try:
        return await _create_pool(settings, settings.db_pool_min)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log.warning("PostgreSQL unreachable at start-up (%r); connecting on demand", exc)
        return await _create_pool(settings, 0)


async def _create_pool(settings: Settings, min_size: int) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=min_size,
        max_size=settings.db_pool_max,
        init=init_connection,
        command_timeout=settings.db_statement_timeout_ms / 1000,
        server_settings={
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "application_name": "voltway",
        },
        timeout=10,
    )
    assert pool is not None
    return pool


# ---- the request's transaction ---------------------------------------------------------
#
# `provide_db` (the `db: Db` dependency) opens one transaction per request: committed when
# the handler returns, rolled back when it raises — unless the error was raised through
# `commit_anyway(...)`, for failures that must leave a trace (a wrong code is counted
# although the request answers 401). Under an Idempotency-Key the transaction is the one
# `app.core.idempotency` opened for the key (the handler's work runs in a savepoint of it),
# so the stored response commits together with what the handler did.
#
# Litestar resolves a handler's dependencies concurrently and drops the cleanup of those
# already resolved when a sibling raises: `db` would stay checked out of the pool with its
# transaction open until a garbage collection. So every opened transaction is also
# registered on the request (`RequestTransactions`), and one still open when the response
# starts (cleanup runs before that) or when the request ends is rolled back and returned.

SHARED_CONNECTION = "vw_db_shared"  # scope["state"] key: the Idempotency-Key transaction
_OPEN = "vw_db_open"  # scope["state"] key: transactions opened for this request
_COMMIT_ANYWAY = "_vw_commit_anyway"
E = TypeVar("E", bound=BaseException)


def commit_anyway(error: E) -> E:
    """Mark an error whose request transaction commits anyway: `raise commit_anyway(X())`
    answers X and keeps what the transaction wrote (e.g. a failed login attempt counted,
    its row locks held until then, so concurrent guesses still queue up behind it)."""
    setattr(error, _COMMIT_ANYWAY, True)
    return error


def commits_anyway(error: BaseException) -> bool:
    return bool(getattr(error, _COMMIT_ANYWAY, False))


def _closed(conn: asyncpg.Connection) -> bool:
    """The connection is gone (a pooled one whose socket died is detached from its proxy,
    which then refuses every call)."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


class _Transaction:
    """One request transaction (or savepoint, under an Idempotency-Key) and how it ends."""

    __slots__ = ("conn", "done", "owned", "pool", "tx")

    def __init__(self, pool: asyncpg.Pool, conn: asyncpg.Connection, *, owned: bool) -> None:
        self.pool, self.conn, self.owned = pool, conn, owned
        self.tx = conn.transaction()
        self.done = False

    @classmethod
    async def open(cls, pool: asyncpg.Pool, shared: asyncpg.Connection | None) -> _Transaction:
        if shared is not None:
            t = cls(pool, shared, owned=False)
            await t.tx.start()
            return t
        conn = await pool.acquire()
        try:
            t = cls(pool, conn, owned=True)
            await t.tx.start()
        except BaseException:
            await pool.release(conn)
            raise
        return t

    async def finish(self, *, commit: bool) -> None:
        """Commit or roll back, then give the connection back; a second call does nothing."""
        if self.done:
            return
        self.done = True
        try:
            if _closed(self.conn):
                # PostgreSQL went away mid-request and rolled the transaction back with the
                # connection: nothing to roll back; a commit cannot happen (503, not 500).
                if commit:
                    raise asyncpg.ConnectionDoesNotExistError("connection closed before commit")
                return
            if commit:
                await self.tx.commit()
            else:
                await self.tx.rollback()
        finally:
            if self.owned:
                await self.pool.release(self.conn)


async def provide_db(request: Request[Any, Any, Any]) -> AsyncGenerator[asyncpg.Connection, None]:
    """A connection inside one transaction for the whole request: committed when the
    handler returns, rolled back when it raises (see `commit_anyway`). Services never
    commit."""
    state = request.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    t = await _Transaction.open(request.app.state.pool, state.get(SHARED_CONNECTION))
    opened = state.get(_OPEN)
    if opened is not None:
        opened.append(t)
    try:
        yield t.conn
    except BaseException as exc:
        await t.finish(commit=commits_anyway(exc))
        raise
    else:
        await t.finish(commit=True)


async def end_abandoned(scope: Mapping[str, Any]) -> int:
    """Roll back the request's transactions that are still open (their dependency cleanup
    never ran); returns how many there were."""
    opened: list[_Transaction] | None = scope.get("state", {}).get(_OPEN)
    if not opened:
        return 0
    count = 0
    for t in opened:
        if not t.done:
            count += 1
            try:
                await t.finish(commit=False)
            except Exception as exc:  # the connection is broken; the pool replaces it
                log.warning("could not roll back an abandoned request transaction: %r", exc)
    if count:
        log.info("rolled back %d request transaction(s) whose cleanup never ran", count)
    return count


class RequestTransactions:
    """Pure ASGI middleware: no request leaves a pooled connection checked out. Sits inside
    every middleware that may answer for the app (Idempotency-Key), so a transaction whose
    cleanup never ran is rolled back before the response starts."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[_OPEN] = []

        async def checked_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                await end_abandoned(scope)
            await send(message)

        try:
            await self.app(scope, receive, checked_send)
        finally:
            await end_abandoned(scope)


def to_struct(record: Mapping[str, Any] | None, type_: type[T]) -> T | None:
    """An asyncpg Record becomes a Struct at the query boundary."""
    if record is None:
        return None
    return msgspec.convert(dict(record), type_, from_attributes=False, strict=False)


def to_structs(records: Iterable[Mapping[str, Any]], type_: type[T]) -> list[T]:
    return msgspec.convert([dict(r) for r in records], list[type_], strict=False)  # type: ignore[valid-type]
