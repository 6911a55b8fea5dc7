"""Typed functions over `sql/queries/identity.sql`: one per block, keyword arguments,
rows as Structs."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from app.core.sql import Executor, execute, fetch_one, fetch_returned, fetch_val


class Challenge(msgspec.Struct, frozen=True):
    """An SMS-code challenge as locked for one code check."""

    challenge_id: uuid.UUID
    phone: str
    code_hash: bytes
    expires_at: datetime
    attempts: int
    max_attempts: int
    consumed_at: datetime | None


class DriverLogin(msgspec.Struct, frozen=True):
    driver_id: uuid.UUID
    created: bool


class RefreshTokenRow(msgspec.Struct, frozen=True):
    """A refresh token with its login family, locked for rotation."""

    token_hash: bytes
    family_id: uuid.UUID
    expires_at: datetime
    used_at: datetime | None
    driver_id: uuid.UUID
    revoked_at: datetime | None


class DriverRow(msgspec.Struct, frozen=True):
    """A driver's stored profile (vehicle in Wh and W) and whether the number opted out."""

    driver_id: str
    phone: str
    name: str | None
    email: str | None
    vehicle_battery_wh: int | None
    vehicle_max_ac_w: int | None
    vehicle_max_dc_w: int | None
    vehicle_connector_types: list[str]
    sms_alerts: bool
    id_tag: str
    created_at: datetime
    sms_opted_out: bool


class Purged(msgspec.Struct, frozen=True):
    challenges: int
    tokens: int
    families: int


async def insert_challenge(
    db: Executor,
    *,
    challenge_id: uuid.UUID,
    phone: str,
    code_hash: bytes,
    created_at: datetime,
    expires_at: datetime,
    max_attempts: int,
    client_ip: str,
) -> None:
    await execute(
        db,
        "identity.insert_challenge",
        challenge_id,
        phone,
        code_hash,
        created_at,
        expires_at,
        max_attempts,
        client_ip,
    )


async def lock_challenge(db: Executor, *, challenge_id: uuid.UUID) -> Challenge | None:
    return await fetch_one(db, "identity.lock_challenge", Challenge, challenge_id)


async def count_wrong_code(db: Executor, *, challenge_id: uuid.UUID) -> int:
    """The attempts so far, this wrong one included."""
    return int(await fetch_val(db, "identity.count_wrong_code", challenge_id))


async def consume_challenge(db: Executor, *, challenge_id: uuid.UUID, now: datetime) -> bool:
    return await execute(db, "identity.consume_challenge", challenge_id, now) == 1


async def upsert_driver_login(
    db: Executor, *, phone: str, id_tag: str, now: datetime
) -> DriverLogin:
    return await fetch_returned(db, "identity.upsert_driver_login", DriverLogin, phone, id_tag, now)


async def insert_family(db: Executor, *, driver_id: uuid.UUID, now: datetime) -> uuid.UUID:
    family_id: uuid.UUID = await fetch_val(db, "identity.insert_family", driver_id, now)
    return family_id


async def insert_refresh_token(
    db: Executor,
    *,
    token_hash: bytes,
    family_id: uuid.UUID,
    issued_at: datetime,
    expires_at: datetime,
) -> None:
    await execute(db, "identity.insert_refresh_token", token_hash, family_id, issued_at, expires_at)


async def lock_refresh_token(db: Executor, *, token_hash: bytes) -> RefreshTokenRow | None:
    return await fetch_one(db, "identity.lock_refresh_token", RefreshTokenRow, token_hash)


async def spend_refresh_token(db: Executor, *, token_hash: bytes, now: datetime) -> bool:
    return await execute(db, "identity.spend_refresh_token", token_hash, now) == 1


async def revoke_family(db: Executor, *, family_id: uuid.UUID, now: datetime, reason: str) -> bool:
    """False when the family was revoked already."""
    return await execute(db, "identity.revoke_family", family_id, now, reason) == 1


async def driver_profile(db: Executor, *, driver_id: uuid.UUID) -> DriverRow | None:
    return await fetch_one(db, "identity.driver_profile", DriverRow, driver_id)


async def update_driver_profile(
    db: Executor,
    *,
    driver_id: uuid.UUID,
    set_name: bool,
    name: str | None,
    set_email: bool,
    email: str | None,
    set_vehicle: bool,
    battery_wh: int | None,
    max_ac_w: int | None,
    max_dc_w: int | None,
    connector_types: list[str],
    sms_alerts: bool | None,
    now: datetime,
) -> bool:
    """Change the fields whose `set_*` flag is true (`sms_alerts` None = unchanged);
    False for an unknown driver."""
    updated = await fetch_val(
        db,
        "identity.update_driver_profile",
        driver_id,
        set_name,
        name,
        set_email,
        email,
        set_vehicle,
        battery_wh,
        max_ac_w,
        max_dc_w,
        connector_types,
        sms_alerts,
        now,
    )
    return updated is not None


async def family_driver(db: Executor, *, family_id: uuid.UUID) -> uuid.UUID | None:
    """The driver of a login family that is not revoked."""
    driver_id: uuid.UUID | None = await fetch_val(db, "identity.family_is_active", family_id)
    return driver_id


async def purge_expired(db: Executor, *, before: datetime) -> Purged:
    return await fetch_returned(db, "identity.purge_expired", Purged, before)
