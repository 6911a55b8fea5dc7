"""Typed functions over `sql/queries/admin.sql`: one per block, keyword arguments, rows as
Structs."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from app.admin.schemas import AuditEntry
from app.core.sql import Executor, fetch_all, fetch_one, fetch_val


class StaffLogin(msgspec.Struct, frozen=True):
    """A staff user as the login sees it."""

    staff_id: uuid.UUID
    email: str
    password_hash: str
    roles: list[str]
    totp_secret: str
    totp_last_step: int
    failed_logins: int
    locked_until: datetime | None
    disabled: bool


class LoginFailures(msgspec.Struct, frozen=True):
    failed_logins: int
    locked_until: datetime | None


async def staff_by_email(db: Executor, *, email: str) -> StaffLogin | None:
    return await fetch_one(db, "admin.staff_by_email", StaffLogin, email)


async def insert_staff(
    db: Executor, *, email: str, password_hash: str, roles: list[str], totp_secret: str
) -> uuid.UUID:
    staff_id: uuid.UUID = await fetch_val(
        db, "admin.insert_staff", email, password_hash, roles, totp_secret
    )
    return staff_id


async def update_staff_credentials(
    db: Executor, *, email: str, password_hash: str, roles: list[str], totp_secret: str
) -> uuid.UUID | None:
    """The staff id, or None when nobody has this email."""
    staff_id: uuid.UUID | None = await fetch_val(
        db, "admin.update_staff_credentials", email, password_hash, roles, totp_secret
    )
    return staff_id


async def record_login_failure(
    db: Executor, *, staff_id: uuid.UUID, max_failures: int, lockout_s: float
) -> LoginFailures | None:
    return await fetch_one(
        db, "admin.record_login_failure", LoginFailures, staff_id, max_failures, lockout_s
    )


async def record_login_success(db: Executor, *, staff_id: uuid.UUID, step: int) -> bool:
    """False when this TOTP step (or a later one) was used already: a replay."""
    return await fetch_val(db, "admin.record_login_success", staff_id, step) is not None


async def list_audit(
    db: Executor,
    *,
    after_at: datetime | None,
    after_id: int | None,
    entity_type: str | None,
    entity_id: str | None,
    limit: int,
) -> list[AuditEntry]:
    """Newest first, after the keyset `(after_at, after_id)` when given."""
    return await fetch_all(
        db, "admin.list_audit", AuditEntry, after_at, after_id, entity_type, entity_id, limit
    )
