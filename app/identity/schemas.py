"""Payloads of driver authentication and `/v1/me`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from app.fleet.schemas import ConnectorType

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=EMAIL_PATTERN)]


class OtpRequest(msgspec.Struct, forbid_unknown_fields=True):
    phone: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=32,
            description="Mobile number in E.164, e.g. `+4915112345678`",
            examples=["+4915112345678"],
        ),
    ]


class OtpChallenge(msgspec.Struct):
    challenge_id: str
    expires_in_s: int
    resend_after_s: int


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    challenge_id: uuid.UUID
    code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$", description="The 6-digit SMS code")]


class RefreshRequest(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Vehicle(msgspec.Struct, forbid_unknown_fields=True):
    battery_kwh: Annotated[float, msgspec.Meta(gt=0, le=500, description="Usable capacity")]
    max_ac_kw: Annotated[float, msgspec.Meta(ge=0, le=100, description="On-board charger")]
    max_dc_kw: Annotated[float, msgspec.Meta(ge=0, le=1500, description="0 when AC only")]
    connector_types: Annotated[list[ConnectorType], msgspec.Meta(max_length=6)]


class DriverProfile(msgspec.Struct):
    driver_id: str
    phone: str
    name: str | None
    email: str | None
    vehicle: Vehicle | None
    sms_alerts: bool
    sms_opted_out: bool
    id_tag: Annotated[str, msgspec.Meta(description="OCPP idTag for this driver's charging")]
    created_at: datetime


class ProfilePatch(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Only the fields given change; `null` clears `name`, `email` or `vehicle`."""

    name: Name | msgspec.UnsetType | None = msgspec.UNSET
    email: Email | msgspec.UnsetType | None = msgspec.UNSET
    vehicle: Vehicle | msgspec.UnsetType | None = msgspec.UNSET
    sms_alerts: bool | msgspec.UnsetType = msgspec.UNSET


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in_s: int
    refresh_token: str
    refresh_expires_in_s: int
    driver: DriverProfile
