"""Payloads of the staff login and audit-log endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    totp_code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]


class LoginResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in_s: int
    roles: list[str]


class AuditEntry(msgspec.Struct):
    audit_id: int
    at: datetime
    actor_type: str
    actor_id: str | None
    actor_email: str | None
    action: str
    entity_type: str
    entity_id: str | None
    before: Any
    after: Any
    request_id: str | None


class AuditPage(msgspec.Struct):
    items: list[AuditEntry]
    next_cursor: str | None
