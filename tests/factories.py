"""Plain factory functions with keyword defaults (STYLE.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pyotp
from litestar.testing import AsyncTestClient

from app.admin.service import create_or_update_staff
from app.core.auth import Role, StaffPrincipal, issue_staff_token
from app.core.settings import Settings


async def make_staff(
    db: asyncpg.Connection,
    *,
    email: str = "staff@example.com",
    password: str = "correct horse battery",
    roles: tuple[Role, ...] = (Role.ADMIN,),
    totp_secret: str | None = None,
) -> dict[str, Any]:
    staff_id, secret, _ = await create_or_update_staff(
        db, email=email, password=password, roles=list(roles), totp_secret=totp_secret
    )
    return {"staff_id": staff_id, "email": email, "password": password, "totp_secret": secret}


def staff_token(settings: Settings, *, roles: tuple[Role, ...], staff_id: str = "s-1") -> str:
    principal = StaffPrincipal(staff_id=staff_id, email=f"{staff_id}@example.com", roles=roles)
    return issue_staff_token(settings, principal, datetime.now(UTC))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def totp_now(secret: str, *, at: datetime | None = None) -> str:
    return pyotp.TOTP(secret).at(at or datetime.now(UTC))


def charger(
    cpid: str,
    *,
    password: str = "charger-password-0001",
    iccid: str | None = None,
    connectors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "charge_point_id": cpid,
        "ocpp_password": password,
        "connectors": connectors
        or [
            {"connector_no": 1, "type": "CCS2", "power_kw": 150},
            {"connector_no": 2, "type": "TYPE2", "power_kw": 22},
        ],
    }
    if iccid:
        out["iccid"] = iccid
    return out


def site(
    external_id: str,
    *,
    lat: float = 52.52,
    lon: float = 13.405,
    timezone: str = "Europe/Berlin",
    name: str | None = None,
    chargers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "name": name or f"Site {external_id}",
        "address": "Somewhere 1, Berlin",
        "lat": lat,
        "lon": lon,
        "timezone": timezone,
        "chargers": chargers if chargers is not None else [charger(f"CP-{external_id}")],
    }


async def import_fleet(
    client: AsyncTestClient[Any], token: str, sites: list[dict[str, Any]], **kw: Any
) -> Any:
    r = await client.post(
        "/admin/v1/fleet/import", json={"sites": sites}, headers=auth(token), **kw
    )
    return r
