"""Staff use cases: login with password (argon2) + TOTP (RFC 6238, ±1 step, no replay),
failed-login throttling, staff creation for the CLI, audit-log reads."""

from __future__ import annotations

import asyncio
import hmac
from datetime import datetime
from urllib.parse import quote

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from app.admin import queries
from app.admin.schemas import AuditPage, LoginRequest, LoginResponse
from app.core.auth import Role, StaffPrincipal, issue_staff_token
from app.core.db import Connection, commit_anyway
from app.core.errors import DomainError, RateLimited
from app.core.pagination import CursorInt, CursorTime, decode_cursor, encode_cursor
from app.core.redis import key
from app.core.settings import Settings

HASHER = PasswordHasher()
# Verified against when the email is unknown, so both cases cost the same time.
_DUMMY_HASH = HASHER.hash("not-a-real-password")
TOTP_STEP_S = 30
ISSUER = "Voltway"


class InvalidCredentials(DomainError):
    status, code, title = 401, "invalid_credentials", "Email, password or code is wrong"


def totp_step_matching(secret: str, code: str, now: datetime) -> int | None:
    """The RFC 6238 time step (±1 around now) whose code equals `code`, else None."""
    totp = pyotp.TOTP(secret, interval=TOTP_STEP_S)
    current = int(now.timestamp()) // TOTP_STEP_S
    found = None
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def otpauth_uri(email: str, secret: str) -> str:
    return (
        pyotp.TOTP(secret, interval=TOTP_STEP_S)
        .provisioning_uri(name=email, issuer_name=ISSUER)
        .replace(quote(email), quote(email, safe="@"))
    )


async def _verify_password(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return HASHER.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


async def login(
    conn: Connection,
    redis: Redis,
    settings: Settings,
    body: LoginRequest,
    client_ip: str,
    now: datetime,
) -> LoginResponse:
    ip_key = key(settings, "login-fail-ip", client_ip)
    try:
        ip_failures = int(await redis.get(ip_key) or 0)
    except Exception:  # Redis down: the per-account lock in PostgreSQL still holds
        ip_failures = 0
    if ip_failures >= settings.login_ip_max_failures:
        raise RateLimited(
            "too many failed logins from this address", retry_after_s=settings.login_lockout_s
        )

    """A bearer token for password + TOTP. A failed attempt is counted in the request's
    transaction, which commits anyway (`commit_anyway`) although the request answers 401."""
    row = await queries.staff_by_email(conn, email=body.email)
    if row is None or row.disabled:
        await _verify_password(_DUMMY_HASH, body.password)
        await _count_ip_failure(redis, settings, ip_key)
        raise InvalidCredentials()
    if row.locked_until is not None and row.locked_until > now:
        retry = int((row.locked_until - now).total_seconds()) + 1
        raise RateLimited("too many failed logins for this account", retry_after_s=retry)

    password_ok = await _verify_password(row.password_hash, body.password)
    step = totp_step_matching(row.totp_secret, body.totp_code, now)
    # A step at or before the last one used is a replay, refused like a wrong code.
    if not password_ok or step is None or step <= row.totp_last_step:
        await queries.record_login_failure(
            conn,
            staff_id=row.staff_id,
            max_failures=settings.login_max_failures,
            lockout_s=float(settings.login_lockout_s),
        )
        await _count_ip_failure(redis, settings, ip_key)
        raise commit_anyway(InvalidCredentials())
    if not await queries.record_login_success(conn, staff_id=row.staff_id, step=step):
        raise InvalidCredentials()  # a concurrent login used this very code first

    principal = StaffPrincipal(
        staff_id=str(row.staff_id),
        email=row.email,
        roles=tuple(Role(r) for r in row.roles),
    )
    return LoginResponse(
        access_token=issue_staff_token(settings, principal, now),
        token_type="Bearer",  # noqa: S106 - the scheme's name, not a secret
        expires_in_s=settings.staff_token_ttl_s,
        roles=list(principal.roles),
    )


async def _count_ip_failure(redis: Redis, settings: Settings, ip_key: str) -> None:
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(ip_key)
            pipe.expire(ip_key, settings.login_lockout_s)
            await pipe.execute()
    except Exception:  # counting is best effort when Redis is away
        return


async def create_or_update_staff(
    conn: Connection, *, email: str, password: str, roles: list[Role], totp_secret: str | None
) -> tuple[str, str, bool]:
    """Returns (staff_id, totp_secret, created). Re-running for an email resets it."""
    secret = totp_secret or pyotp.random_base32()
    pyotp.TOTP(secret).now()  # raises on a malformed base32 secret
    password_hash = await asyncio.to_thread(HASHER.hash, password)
    role_values = [r.value for r in roles]
    staff_id = await queries.update_staff_credentials(
        conn, email=email, password_hash=password_hash, roles=role_values, totp_secret=secret
    )
    created = staff_id is None
    if staff_id is None:
        staff_id = await queries.insert_staff(
            conn, email=email, password_hash=password_hash, roles=role_values, totp_secret=secret
        )
    return str(staff_id), secret, created


async def list_audit(
    conn: Connection,
    *,
    limit: int,
    cursor: str | None,
    entity_type: str | None,
    entity_id: str | None,
) -> AuditPage:
    after = decode_cursor(cursor, tuple[CursorTime, CursorInt])
    rows = await queries.list_audit(
        conn,
        after_at=after[0] if after else None,
        after_id=after[1] if after else None,
        entity_type=entity_type,
        entity_id=entity_id,
        limit=limit + 1,
    )
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor((last.at, last.audit_id))
    return AuditPage(items=items, next_cursor=next_cursor)
