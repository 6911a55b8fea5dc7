"""The asyncpg pool and the one-transaction-per-use-case dependency."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, TypeVar

import asyncpg
import msgspec
from litestar.datastructures import State

from app.core.settings import Settings

T = TypeVar("T")
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
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
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
