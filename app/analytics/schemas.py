"""Payloads of `GET /admin/v1/analytics/usage`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

GroupBy = Literal["site", "hour", "day"]


class Money(msgspec.Struct, frozen=True, kw_only=True):
    currency: str
    amount_minor: int


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    """One group: a site, a local hour of day (`00`…`23`) or a local day (`YYYY-MM-DD`)."""

    key: str
    label: str
    sessions: int
    """Sessions that started in the period (and in this group)."""
    energy_kwh: float
    """Energy of those sessions."""
    revenue: list[Money]
    """Billed totals (incl. VAT) of those sessions, per currency (unbilled ones count 0)."""
    occupied_h: float
    """Connector-hours occupied by sessions (open sessions up to now)."""
    available_h: float
    """Connector-hours of every connector that existed then."""
    utilisation: float | None
    """`occupied_h / available_h` (null without connectors)."""
    site_id: str | None = None
    timezone: str | None = None


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    from_: datetime = msgspec.field(name="from")
    to: datetime
    group_by: GroupBy
    totals: UsageRow
    items: list[UsageRow]
    next_cursor: str | None = None


# ---- rows as the queries return them ------------------------------------------------


class TotalsRow(msgspec.Struct, frozen=True, kw_only=True):
    sessions: int
    energy_wh: int
    occupied_s: float
    available_s: float


class SiteUsage(msgspec.Struct, frozen=True, kw_only=True):
    site_id: str
    name: str
    timezone: str
    sessions: int
    energy_wh: int
    occupied_s: float
    available_s: float


class HourUsage(msgspec.Struct, frozen=True, kw_only=True):
    hour: int
    sessions: int
    energy_wh: int
    occupied_s: float
    available_s: float


class DayUsage(msgspec.Struct, frozen=True, kw_only=True):
    day: date
    sessions: int
    energy_wh: int
    occupied_s: float
    available_s: float


class RevenueRow(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    currency: str
    amount_minor: int
