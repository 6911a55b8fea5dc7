"""Typed functions over `sql/queries/discovery.sql`: the index load's three reads. Sites
come back as `SiteRow`s; chargers and connectors as binary COPY streams (fixed-width rows
that `app.discovery.live` parses straight into numpy columns, no Python object per row)."""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence

import asyncpg

from app.core.sql import Q
from app.discovery.columns import SiteRow


async def index_sites(conn: asyncpg.Connection) -> list[SiteRow]:
    """Every site the index holds, in `site_seq` order (positional: 100k rows, no dicts)."""
    return [SiteRow(*r) for r in await conn.fetch(Q("discovery.index_sites"))]


async def copy_chargers(conn: asyncpg.Connection, *, visible_states: Collection[str]) -> io.BytesIO:
    """Binary COPY of (seq, visible, uuid) per charger; `visible` when its connectivity
    state is one of `visible_states`."""
    return await _copy(conn, Q("discovery.copy_chargers"), list(visible_states))


async def copy_connectors(
    conn: asyncpg.Connection, *, connector_types: Sequence[str], statuses: Sequence[str]
) -> io.BytesIO:
    """Binary COPY of (seq, charger_seq, site_seq, no, type, power_w, status, uuid) per
    connector; `type` and `status` as indexes into `connector_types` and `statuses`."""
    return await _copy(conn, Q("discovery.copy_connectors"), list(connector_types), list(statuses))


async def _copy(conn: asyncpg.Connection, sql: str, *args: object) -> io.BytesIO:
    out = io.BytesIO()

    # A coroutine sink, not the BytesIO itself: given a file, asyncpg writes every chunk
    # through the loop's thread pool (`run_in_executor(None, f.write, …)`). That pool is
    # gone once the interpreter starts to exit; a load still running in its thread when
    # the worker stopped then wedged the connection, and the worker never exited
    # (`tests/discovery/test_load.py`). In memory there is nothing to hand off anyway.
    async def sink(chunk: bytes) -> None:
        out.write(chunk)

    await conn.copy_from_query(sql, *args, output=sink, format="binary")
    return out  # read with getbuffer(): ~90 MB for a million connectors, not copied
