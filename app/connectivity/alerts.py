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

from app.connectivity.schemas import Alert, AlertPage
from app.core.db import Connection, to_structs
from app.core.pagination import CursorInt, decode_cursor, encode_cursor
from app.core.sql import Q

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
    alert_id = await conn.fetchval(
        Q("connectivity.insert_alert"), charger_id, kind, reason, detail or {}, dedupe_key, at
    )
    if alert_id is None:
        return False
    ALERTS_RAISED.labels(kind).inc()
    return True


async def raise_offline_alerts(conn: Connection, now: datetime, after_s: float) -> int:
    """One alert per outage longer than `after_s`; returns how many were raised now."""
    rows = await conn.fetch(Q("connectivity.raise_offline_alerts"), now, after_s)
    if rows:
        ALERTS_RAISED.labels("offline").inc(len(rows))
    return len(rows)


async def refresh_open_gauge(conn: Connection) -> int:
    count = int(await conn.fetchval(Q("connectivity.open_alerts")))
    ALERTS_OPEN.set(count)
    return count


async def list_alerts(
    conn: Connection, *, kind: str | None, open_only: bool, limit: int, cursor: str | None
) -> AlertPage:
    after = decode_cursor(cursor, tuple[CursorInt])
    rows = await conn.fetch(
        Q("connectivity.list_alerts"), kind, open_only, after[0] if after else None, limit + 1
    )
    items = to_structs(
        [{**dict(r), "charger_id": str(r["charger_id"])} for r in rows[:limit]], Alert
    )
    next_cursor = encode_cursor((items[-1].alert_id,)) if len(rows) > limit else None
    return AlertPage(items=items, next_cursor=next_cursor)
