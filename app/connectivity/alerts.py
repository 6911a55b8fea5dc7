"""Operator alerts about charger connectivity (`operator_alerts`, migration 0007).

Raised on quarantine, on an outage longer than `OFFLINE_ALERT_AFTER_S` (once per outage, by
the link sweep), on degraded events (data-usage thresholds) and on flapping (a charger
opening many connections in a short window). Each alert has a `dedupe_key`, so raising is
idempotent. Listed by `GET /admin/v1/alerts`.

Delivery: the SMS issue will send them to the on-call operators (and set `delivered_at`);
until then they are visible in the admin API and counted on `/metrics`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from uuid import UUID

from prometheus_client import Counter, Gauge

from app.connectivity import queries
from app.connectivity.schemas import AlertPage
from app.core.db import Connection
from app.core.pagination import CursorInt, decode_cursor, encode_cursor

KINDS: Final = ("quarantine", "offline", "degraded", "flapping")

ALERTS_RAISED = Counter(
    "operator_alerts_raised_total", "Operator alerts raised about chargers, by kind", ["kind"]
)
ALERTS_OPEN = Gauge(
    "operator_alerts_open",
    "Operator alerts not acknowledged yet (as of the last link sweep)",
    multiprocess_mode="mostrecent",
)


async def raise_alert(
    conn: Connection,
    charger_id: UUID,
    kind: str,
    reason: str,
    *,
    dedupe_key: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Raise an alert unless one with this key exists; True when it is new."""
    alert_id = await queries.insert_alert(
        conn,
        charger_id=charger_id,
        kind=kind,
        reason=reason,
        detail=detail or {},
        dedupe_key=dedupe_key,
        raised_at=at,
    )
    if alert_id is None:
        return False
    ALERTS_RAISED.labels(kind).inc()
    return True


async def raise_offline_alerts(conn: Connection, now: datetime, after_s: float) -> int:
    """One alert per outage longer than `after_s`; returns how many were raised now."""
    raised = await queries.raise_offline_alerts(conn, now=now, after_s=after_s)
    if raised:
        ALERTS_RAISED.labels("offline").inc(raised)
    return raised


async def refresh_open_gauge(conn: Connection) -> int:
    count = await queries.open_alerts(conn)
    ALERTS_OPEN.set(count)
    return count


async def list_alerts(
    conn: Connection, *, kind: str | None, open_only: bool, limit: int, cursor: str | None
) -> AlertPage:
    after = decode_cursor(cursor, tuple[CursorInt])
    rows = await queries.list_alerts(
        conn,
        kind=kind,
        open_only=open_only,
        before_id=after[0] if after else None,
        limit=limit + 1,
    )
    items = rows[:limit]
    next_cursor = encode_cursor((items[-1].alert_id,)) if len(rows) > limit else None
    return AlertPage(items=items, next_cursor=next_cursor)
