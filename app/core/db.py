"""The asyncpg pool and the one-transaction-per-use-case dependency."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, TypeVar

import asyncpg
import msgspec
from litestar.datastructures import State

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


async def provide_db(state: State) -> AsyncGenerator[asyncpg.Connection, None]:
    """A connection inside one transaction for the whole request: committed when the
    handler returns, rolled back when it raises. Services never commit."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn, conn.transaction():
        yield conn


def to_struct(record: Mapping[str, Any] | None, type_: type[T]) -> T | None:
    """An asyncpg Record becomes a Struct at the query boundary."""
    if record is None:
        return None
    return msgspec.convert(dict(record), type_, from_attributes=False, strict=False)


def to_structs(records: Iterable[Mapping[str, Any]], type_: type[T]) -> list[T]:
    return msgspec.convert([dict(r) for r in records], list[type_], strict=False)  # type: ignore[valid-type]
