"""Named SQL queries loaded from `sql/queries/*.sql`.

Each block starts with `-- name: <domain>.<name>` followed by a one-line `-- ` description;
the SQL runs until the next `-- name:`. Code asks for queries by name; an unknown name
raises at import time of the asking module (see `Q`), and a test checks every name used.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import msgspec

from app.core.settings import ROOT

QUERIES_DIR = ROOT / "sql" / "queries"
T = TypeVar("T")


class Executor(Protocol):
    """An asyncpg connection or pool (both run a query)."""

    async def fetchrow(self, query: str, *args: Any) -> Any: ...
    async def fetch(self, query: str, *args: Any) -> Any: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    async def execute(self, query: str, *args: Any) -> Any: ...


_NAME = re.compile(r"^--\s*name:\s*([a-z0-9_.]+)\s*$", re.MULTILINE)


class Query(NamedTuple):
    """A named SQL block with its one-line description."""

    sql: str
    name: str
    description: str


def parse(text: str, domain: str) -> dict[str, Query]:
    """Split one file into named queries; names are prefixed with the file's domain."""
    out: dict[str, Query] = {}
    matches = list(_NAME.finditer(text))
    for i, m in enumerate(matches):
        body = text[m.end() : matches[i + 1].start() if i + 1 < len(matches) else len(text)]
        lines = body.strip("\n").splitlines()
        description = ""
        if lines and lines[0].startswith("--"):
            description = lines[0].lstrip("-").strip()
            lines = lines[1:]
        sql = "\n".join(lines).strip().rstrip(";")
        name = f"{domain}.{m.group(1)}"
        if name in out:
            raise ValueError(f"duplicate query name {name}")
        out[name] = Query(sql, name, description)
    return out


@lru_cache(maxsize=1)
def all_queries(directory: Path = QUERIES_DIR) -> dict[str, Query]:
    """Every named query, loaded once per process."""
    out: dict[str, Query] = {}
    for path in sorted(directory.glob("*.sql")):
        out.update(parse(path.read_text(), path.stem))
    return out


def Q(name: str) -> str:
    """The SQL of the query called `name` (`<file>.<block>`); KeyError names what is missing.
    (asyncpg wants an exact `str`, so the SQL text itself is returned.)"""
    try:
        return all_queries()[name].sql
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in sql/queries/") from None


# --- Typed query helpers: what every `app/<domain>/queries.py` function is built from. ---
# A query function names its block, takes keyword arguments and passes them positionally
# in the order of the block's `$n` parameters; rows become Structs here, at the boundary.
#
#     async def outbox_row(db: Connection, *, outbox_id: int) -> OutboxRow | None:
#         return await fetch_one(db, "outbox.state", OutboxRow, outbox_id)
#
# The block name is a literal string so that `tests/core/test_sql.py` can check every name
# used by a queries module against sql/queries/.


async def fetch_one(conn: Executor, name: str, type_: type[T], *args: Any) -> T | None:
    """The first row of block `name` as a `type_` Struct, or None."""
    row = await conn.fetchrow(Q(name), *args)
    if row is None:
        return None
    return msgspec.convert(dict(row), type_, strict=False)


async def fetch_returned(conn: Executor, name: str, type_: type[T], *args: Any) -> T:
    """The row block `name` always answers (INSERT … RETURNING, an upsert, an aggregate)
    as a `type_` Struct; no row at all is a bug in the block, and raises."""
    row = await fetch_one(conn, name, type_, *args)
    if row is None:
        raise RuntimeError(f"query {name} answered no row")
    return row


async def fetch_all(conn: Executor, name: str, type_: type[T], *args: Any) -> list[T]:
    """Every row of block `name` as `type_` Structs."""
    rows = await conn.fetch(Q(name), *args)
    return msgspec.convert([dict(r) for r in rows], list[type_], strict=False)  # type: ignore[valid-type]


async def fetch_val(conn: Executor, name: str, *args: Any) -> Any:
    """The first column of the first row of block `name` (None when there is no row)."""
    return await conn.fetchval(Q(name), *args)


async def execute(conn: Executor, name: str, *args: Any) -> int:
    """Run block `name`; returns the number of rows it touched (from the command tag)."""
    tag: str = await conn.execute(Q(name), *args)
    last = tag.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
