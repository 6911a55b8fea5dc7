"""Append to the audit log: every change made by staff (and system decisions on fleet
state) is written in the same transaction as the change itself. Read back by
`GET /admin/v1/audit-log` (app/admin)."""

from __future__ import annotations

from typing import Any

from app.core.auth import StaffPrincipal
from app.core.sql import Executor, fetch_val


async def record(
    conn: Executor,
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
    """One entry; `actor` None is the system (or `actor_type`, e.g. "cli")."""
    await insert(
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


async def insert(
    db: Executor,
    *,
    actor_type: str,
    actor_id: str | None,
    actor_email: str | None,
    action: str,
    entity_type: str,
    entity_id: str | None,
    before: Any,
    after: Any,
    request_id: str | None,
) -> None:
    """The typed query over `sql/queries/audit.sql` `insert`."""
    await fetch_val(
        db,
        "audit.insert",
        actor_type,
        actor_id,
        actor_email,
        action,
        entity_type,
        entity_id,
        before,
        after,
        request_id,
    )
