"""Typed functions over `sql/queries/health.sql`."""

from __future__ import annotations

from app.core.sql import Executor, fetch_val


async def ping(db: Executor) -> bool:
    """PostgreSQL answers a query."""
    answer: int = await fetch_val(db, "health.ping")
    return answer == 1
