"""Append to the audit log: every change made by staff (and system decisions on fleet
state) is written in the same transaction as the change itself."""

from __future__ import annotations

from typing import Any

from app.admin import queries
from app.core.auth import StaffPrincipal
from app.core.db import Connection


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
    await queries.insert_audit(
        conn,
        actor_type=actor_type or ("staff" if actor else "system"),
        actor_id=actor.staff_id if actor else None,
        actor_email=actor.email if actor else None,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        before=before,
        after=after,
        request_id=request_id,
    )
