"""Append to the audit log: every change made by staff (and system decisions on fleet
state) is written in the same transaction as the change itself."""

from __future__ import annotations

from typing import Any

from app.core.auth import StaffPrincipal
from app.core.db import Connection
from app.core.sql import Q


async def record(
    conn: Connection,
    *,
    actor: StaffPrincipal | None,
    action: str,
    entity_type: str,
    entity_id: str | None,
    before: Any = None,
    after: Any = None,
    request_id: str | None = None,
    actor_type: str | None = None,
) -> None:
    await conn.execute(
        Q("admin.insert_audit"),
        actor_type or ("staff" if actor else "system"),
        actor.staff_id if actor else None,
        actor.email if actor else None,
        action,
        entity_type,
        entity_id,
        before,
        after,
        request_id,
    )
