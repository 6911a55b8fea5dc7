"""Driver identity use cases: request a code, exchange it, refresh, log out, profile.

- The code request answers the same whatever the number (known driver or not): it never
  looks drivers up; the driver is created at the first successful exchange.
- Code checks and refresh rotations run in the request's transaction and fail with
  `commit_anyway(...)` when they wrote something the failure must keep (a wrong code is
  counted, a reused refresh token revokes its login) although the request ends in a 401.
  The challenge (or token) row stays locked until then, so concurrent guesses queue up.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import msgspec
from redis.asyncio import Redis

from app.core.auth import DriverPrincipal, issue_driver_token
from app.core.db import Connection, commit_anyway
from app.core.errors import DomainError, FieldError, NotFound, ValidationFailed
from app.core.settings import Settings
from app.fleet.schemas import ConnectorType
from app.identity import codes, limits, queries
from app.identity.phone import InvalidPhone, UnsupportedPhone, parse_phone
from app.identity.schemas import (
    DriverProfile,
    OtpChallenge,
    OtpRequest,
    ProfilePatch,
    RefreshRequest,
    TokenRequest,
    TokenResponse,
    Vehicle,
)
from app.notifications.service import QueuedSms, queue_sms

OTP_PURPOSE = "otp"


class PhoneNotSupported(DomainError):
    status, code, title = 422, "phone_not_supported", "This number cannot receive login codes"


class InvalidCode(DomainError):
    status, code, title = 401, "invalid_code", "The code is wrong"


class ChallengeLocked(DomainError):
    status, code, title = 401, "challenge_locked", "Too many wrong codes; request a new one"


class ChallengeExpired(DomainError):
    status, code, title = 401, "challenge_expired", "The code has expired; request a new one"


class ChallengeUsed(DomainError):
    status, code, title = 401, "challenge_used", "The code was already used; request a new one"


class InvalidRefreshToken(DomainError):
    status, code, title = 401, "invalid_refresh_token", "The refresh token is not valid"


class RefreshTokenExpired(DomainError):
    status, code, title = 401, "refresh_token_expired", "The refresh token has expired"


class RefreshTokenRevoked(DomainError):
    status, code, title = 401, "refresh_token_revoked", "This login has ended; sign in again"


class RefreshTokenReused(DomainError):
    status, code, title = (
        401,
        "refresh_token_reused",
        "This refresh token was already used; the login has been ended",
    )


def otp_text(code: str, ttl_s: int) -> str:
    minutes = max(1, ttl_s // 60)
    return f"{code} is your Voltway code. It expires in {minutes} min. Never share it."


# --- POST /v1/auth/otp -----------------------------------------------------------------


async def request_otp(
    db: Connection,
    redis: Redis,
    settings: Settings,
    body: OtpRequest,
    client_ip: str,
    now: datetime,
) -> tuple[OtpChallenge, QueuedSms]:
    """Validate the number, pass the send limits, then store the challenge and queue its
    SMS in the request's transaction (the caller enqueues the job after the commit)."""
    try:
        phone = parse_phone(body.phone, settings.otp_allowed_countries)
    except InvalidPhone as exc:
        raise ValidationFailed(
            f"phone: {exc}", errors=[FieldError(field="phone", message=str(exc))]
        ) from None
    except UnsupportedPhone as exc:
        raise PhoneNotSupported(
            str(exc), errors=[FieldError(field="phone", message=str(exc))]
        ) from None

    await limits.check_and_count(
        redis, settings, phone=phone.e164, client_ip=client_ip, country_code=phone.country_code
    )

    challenge_id = uuid.uuid4()
    code = codes.new_code()
    expires_at = now + timedelta(seconds=settings.otp_ttl_s)
    await queries.insert_challenge(
        db,
        challenge_id=challenge_id,
        phone=phone.e164,
        code_hash=codes.hash_code(settings.jwt_secret, challenge_id, code),
        created_at=now,
        expires_at=expires_at,
        max_attempts=settings.otp_max_attempts,
        client_ip=limits.ip_bucket(client_ip),
    )
    queued = await queue_sms(
        db,
        to=phone.e164,
        body=otp_text(code, settings.otp_ttl_s),
        redacted_body=otp_text("*" * codes.CODE_DIGITS, settings.otp_ttl_s),
        purpose=OTP_PURPOSE,
        expires_at=expires_at,
        now=now,
    )
    challenge = OtpChallenge(
        challenge_id=str(challenge_id),
        expires_in_s=settings.otp_ttl_s,
        resend_after_s=settings.otp_resend_after_s,
    )
    return challenge, queued


# --- POST /v1/auth/token ---------------------------------------------------------------


async def exchange_code(
    conn: Connection, settings: Settings, body: TokenRequest, now: datetime
) -> TokenResponse:
    """Check the code (constant time, counted, single use); create the driver on first
    login; start a login family with its first refresh token."""
    ch = await queries.lock_challenge(conn, challenge_id=body.challenge_id)
    if ch is None:
        codes.hash_code(settings.jwt_secret, body.challenge_id, body.code)  # same work
        raise InvalidCode()
    if ch.consumed_at is not None:
        raise ChallengeUsed()
    if ch.attempts >= ch.max_attempts:
        raise ChallengeLocked()
    if ch.expires_at <= now:
        raise ChallengeExpired()
    if not codes.code_matches(settings.jwt_secret, body.challenge_id, body.code, ch.code_hash):
        attempts = await queries.count_wrong_code(conn, challenge_id=body.challenge_id)
        raise commit_anyway(ChallengeLocked() if attempts >= ch.max_attempts else InvalidCode())
    await queries.consume_challenge(conn, challenge_id=body.challenge_id, now=now)
    driver = await queries.upsert_driver_login(
        conn, phone=ch.phone, id_tag=codes.new_id_tag(), now=now
    )
    family_id = await queries.insert_family(conn, driver_id=driver.driver_id, now=now)
    refresh_token = await _insert_refresh_token(conn, settings, family_id, now)
    profile = await _profile(conn, driver.driver_id)
    principal = DriverPrincipal(driver_id=str(driver.driver_id), family_id=str(family_id))
    return _token_response(settings, principal, refresh_token, profile, now)


async def _insert_refresh_token(
    conn: Connection, settings: Settings, family_id: uuid.UUID, now: datetime
) -> str:
    token = codes.new_refresh_token()
    await queries.insert_refresh_token(
        conn,
        token_hash=codes.hash_refresh_token(token),
        family_id=family_id,
        issued_at=now,
        expires_at=now + timedelta(seconds=settings.driver_refresh_ttl_s),
    )
    return token


def _token_response(
    settings: Settings,
    principal: DriverPrincipal,
    refresh_token: str,
    profile: DriverProfile,
    now: datetime,
) -> TokenResponse:
    return TokenResponse(
        access_token=issue_driver_token(settings, principal, now),
        token_type="Bearer",  # noqa: S106 - the scheme's name, not a secret
        expires_in_s=settings.driver_access_ttl_s,
        refresh_token=refresh_token,
        refresh_expires_in_s=settings.driver_refresh_ttl_s,
        driver=profile,
    )


# --- POST /v1/auth/refresh, /v1/auth/logout ---------------------------------------------


async def refresh(
    conn: Connection, settings: Settings, body: RefreshRequest, now: datetime
) -> TokenResponse:
    """Rotate: the presented token is spent and a new one issued in the same family.
    A spent token presented again means it was copied: the whole family is revoked."""
    token_hash = codes.hash_refresh_token(body.refresh_token)
    row = await queries.lock_refresh_token(conn, token_hash=token_hash)
    if row is None:
        raise InvalidRefreshToken()
    if row.revoked_at is not None:
        raise RefreshTokenRevoked()
    if row.used_at is not None:
        await queries.revoke_family(conn, family_id=row.family_id, now=now, reason="reuse")
        raise commit_anyway(RefreshTokenReused())
    if row.expires_at <= now:
        raise RefreshTokenExpired()
    await queries.spend_refresh_token(conn, token_hash=token_hash, now=now)
    new_token = await _insert_refresh_token(conn, settings, row.family_id, now)
    profile = await _profile(conn, row.driver_id)
    principal = DriverPrincipal(driver_id=str(row.driver_id), family_id=str(row.family_id))
    return _token_response(settings, principal, new_token, profile, now)


async def logout(db: Connection, principal: DriverPrincipal, now: datetime) -> None:
    """End the login the access token belongs to: its refresh tokens and access tokens."""
    await queries.revoke_family(
        db, family_id=uuid.UUID(principal.family_id), now=now, reason="logout"
    )


# --- /v1/me ------------------------------------------------------------------------------


async def get_profile(db: Connection, driver_id: str) -> DriverProfile:
    return await _profile(db, uuid.UUID(driver_id))


async def _profile(db: Connection, driver_id: uuid.UUID) -> DriverProfile:
    row = await queries.driver_profile(db, driver_id=driver_id)
    if row is None:
        raise NotFound("no such driver")
    return _profile_from_row(row)


def _profile_from_row(row: queries.DriverRow) -> DriverProfile:
    vehicle = None
    if (
        row.vehicle_battery_wh is not None
        and row.vehicle_max_ac_w is not None
        and row.vehicle_max_dc_w is not None
    ):
        vehicle = Vehicle(
            battery_kwh=round(row.vehicle_battery_wh / 1000, 3),
            max_ac_kw=round(row.vehicle_max_ac_w / 1000, 3),
            max_dc_kw=round(row.vehicle_max_dc_w / 1000, 3),
            connector_types=msgspec.convert(row.vehicle_connector_types, list[ConnectorType]),
        )
    return DriverProfile(
        driver_id=row.driver_id,
        phone=row.phone,
        name=row.name,
        email=row.email,
        vehicle=vehicle,
        sms_alerts=row.sms_alerts,
        sms_opted_out=row.sms_opted_out,
        id_tag=row.id_tag,
        created_at=row.created_at,
    )


async def update_profile(
    db: Connection, driver_id: str, patch: ProfilePatch, now: datetime
) -> DriverProfile:
    """Change only the fields the patch carries; `null` clears name, email or vehicle."""
    unset = msgspec.UnsetType
    vehicle = patch.vehicle if isinstance(patch.vehicle, Vehicle) else None
    connector_types: list[str] = []
    if vehicle is not None:
        connector_types = list(dict.fromkeys(t.value for t in vehicle.connector_types))
    updated = await queries.update_driver_profile(
        db,
        driver_id=uuid.UUID(driver_id),
        set_name=not isinstance(patch.name, unset),
        name=None if isinstance(patch.name, unset) else patch.name,
        set_email=not isinstance(patch.email, unset),
        email=None if isinstance(patch.email, unset) else patch.email,
        set_vehicle=not isinstance(patch.vehicle, unset),
        battery_wh=round(vehicle.battery_kwh * 1000) if vehicle else None,
        max_ac_w=round(vehicle.max_ac_kw * 1000) if vehicle else None,
        max_dc_w=round(vehicle.max_dc_kw * 1000) if vehicle else None,
        connector_types=connector_types,
        sms_alerts=None if isinstance(patch.sms_alerts, unset) else patch.sms_alerts,
        now=now,
    )
    if not updated:
        raise NotFound("no such driver")
    return await get_profile(db, driver_id)
