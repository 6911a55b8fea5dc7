"""Typed functions over `sql/queries/analytics.sql`."""

from __future__ import annotations

from datetime import datetime

from app.analytics.schemas import DayUsage, HourUsage, RevenueRow, SiteUsage, TotalsRow
from app.core.sql import Executor, fetch_all, fetch_returned


async def usage_totals(db: Executor, *, start: datetime, end: datetime, now: datetime) -> TotalsRow:
    return await fetch_returned(db, "analytics.usage_totals", TotalsRow, start, end, now)


async def usage_by_site(
    db: Executor, *, start: datetime, end: datetime, now: datetime, limit: int
) -> list[SiteUsage]:
    return await fetch_all(db, "analytics.usage_by_site", SiteUsage, start, end, now, limit)


async def usage_by_hour(
    db: Executor, *, start: datetime, end: datetime, now: datetime
) -> list[HourUsage]:
    return await fetch_all(db, "analytics.usage_by_hour", HourUsage, start, end, now)


async def usage_by_day(
    db: Executor, *, start: datetime, end: datetime, now: datetime
) -> list[DayUsage]:
    return await fetch_all(db, "analytics.usage_by_day", DayUsage, start, end, now)


async def revenue_by(db: Executor, *, start: datetime, end: datetime, key: str) -> list[RevenueRow]:
    return await fetch_all(db, "analytics.revenue_by", RevenueRow, start, end, key)
