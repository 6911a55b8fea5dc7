"""Usage analytics: the numbers come from SQL (`sql/queries/analytics.sql`); this module
checks the period, joins revenue to its groups and renders CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from app.analytics import queries
from app.analytics.schemas import (
    DayUsage,
    GroupBy,
    HourUsage,
    Money,
    RevenueRow,
    Usage,
    UsageRow,
)
from app.core.errors import FieldError, ValidationFailed
from app.core.sql import Executor

DEFAULT_PERIOD = timedelta(days=7)
MAX_PERIOD = timedelta(days=366)


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}", errors=[FieldError(field=field, message=message)]
    )


def period(
    start: datetime | None, end: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """`[from, to)` in UTC; defaults: to = now, from = to − 7 days; at most 366 days."""
    for field, value in (("from", start), ("to", end)):
        if value is not None and value.utcoffset() is None:
            raise _invalid(field, "must carry a UTC offset (RFC 3339)")
    try:
        end = (end or now).astimezone(UTC)
        start = (start or end - DEFAULT_PERIOD).astimezone(UTC)
    except OverflowError:
        raise _invalid("from", "out of range") from None
    if end <= start:
        raise _invalid("to", "must be after from")
    if end - start > MAX_PERIOD:
        raise _invalid("to", "at most 366 days after from")
    if not (start.year >= 1971 and end.year <= 2999):
        raise _invalid("from", "must be between the years 1971 and 2999")
    return start, end


def _row(
    *,
    key: str,
    label: str,
    sessions: int,
    energy_wh: int,
    occupied_s: float,
    available_s: float,
    revenue: list[Money],
    site_id: str | None = None,
    timezone: str | None = None,
) -> UsageRow:
    return UsageRow(
        key=key,
        label=label,
        sessions=sessions,
        energy_kwh=round(energy_wh / 1000, 3),
        revenue=revenue,
        occupied_h=round(occupied_s / 3600, 4),
        available_h=round(available_s / 3600, 4),
        utilisation=round(occupied_s / available_s, 6) if available_s > 0 else None,
        site_id=site_id,
        timezone=timezone,
    )


def _revenue(rows: list[RevenueRow]) -> dict[str, list[Money]]:
    out: dict[str, list[Money]] = defaultdict(list)
    for r in rows:
        out[r.key].append(Money(currency=r.currency, amount_minor=r.amount_minor))
    return out


async def usage(
    db: Executor,
    *,
    start: datetime | None,
    end: datetime | None,
    group_by: GroupBy,
    now: datetime,
    limit: int,
) -> Usage:
    """Sessions, energy, revenue and utilisation per site, local hour of day or local day."""
    t0, t1 = period(start, end, now=now)
    revenue = _revenue(await queries.revenue_by(db, start=t0, end=t1, key=group_by))
    items: list[UsageRow]
    if group_by == "site":
        items = [
            _row(
                key=r.site_id,
                label=r.name,
                sessions=r.sessions,
                energy_wh=r.energy_wh,
                occupied_s=r.occupied_s,
                available_s=r.available_s,
                revenue=revenue.get(r.site_id, []),
                site_id=r.site_id,
                timezone=r.timezone,
            )
            for r in await queries.usage_by_site(db, start=t0, end=t1, now=now, limit=limit)
        ]
        # the site list may be cut at `limit`: the totals are asked for on their own
        tot = await queries.usage_totals(db, start=t0, end=t1, now=now)
        total_revenue = _revenue(await queries.revenue_by(db, start=t0, end=t1, key=""))
        totals = _row(
            key="total",
            label="Total",
            sessions=tot.sessions,
            energy_wh=tot.energy_wh,
            occupied_s=tot.occupied_s,
            available_s=tot.available_s,
            revenue=total_revenue.get("", []),
        )
        return Usage(from_=t0, to=t1, group_by=group_by, totals=totals, items=items)
    rows: Sequence[HourUsage | DayUsage]
    if group_by == "hour":
        rows = await queries.usage_by_hour(db, start=t0, end=t1, now=now)
    else:
        rows = await queries.usage_by_day(db, start=t0, end=t1, now=now)
    items = []
    for r in rows:
        key, label, rev_key = (
            (f"{r.hour:02d}", f"{r.hour:02d}:00", str(r.hour))
            if isinstance(r, HourUsage)
            else (r.day.isoformat(), r.day.isoformat(), r.day.isoformat())
        )
        items.append(
            _row(
                key=key,
                label=label,
                sessions=r.sessions,
                energy_wh=r.energy_wh,
                occupied_s=r.occupied_s,
                available_s=r.available_s,
                revenue=revenue.get(rev_key, []),
            )
        )
    # hours of the day and days cover the period once: the totals are their sums
    money: dict[str, int] = defaultdict(int)
    for group in revenue.values():
        for m in group:
            money[m.currency] += m.amount_minor
    totals = _row(
        key="total",
        label="Total",
        sessions=sum(r.sessions for r in rows),
        energy_wh=sum(r.energy_wh for r in rows),
        occupied_s=sum(r.occupied_s for r in rows),
        available_s=sum(r.available_s for r in rows),
        revenue=[Money(currency=c, amount_minor=a) for c, a in sorted(money.items())],
    )
    return Usage(from_=t0, to=t1, group_by=group_by, totals=totals, items=items)


CSV_COLUMNS = [
    "key",
    "label",
    "site_id",
    "sessions",
    "energy_kwh",
    "occupied_h",
    "available_h",
    "utilisation",
]


def _cell(text: str) -> str:
    """Text that a spreadsheet would run as a formula is quoted (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(report: Usage) -> str:
    """One line per group plus a `total` line; revenue as one `revenue_<currency>_minor`
    column per currency seen (empty where nothing was billed)."""
    currencies = sorted({m.currency for row in [report.totals, *report.items] for m in row.revenue})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([*CSV_COLUMNS, *(f"revenue_{c.lower()}_minor" for c in currencies)])
    for row in [*report.items, report.totals]:
        money = {m.currency: m.amount_minor for m in row.revenue}
        writer.writerow(
            [
                row.key,
                _cell(row.label),
                row.site_id or "",
                row.sessions,
                f"{row.energy_kwh:.3f}",
                f"{row.occupied_h:.4f}",
                f"{row.available_h:.4f}",
                "" if row.utilisation is None else f"{row.utilisation:.6f}",
                *(money.get(c, "") for c in currencies),
            ]
        )
    return buf.getvalue()
