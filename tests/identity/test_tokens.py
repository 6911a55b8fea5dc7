"""Access and refresh tokens: rotation, reuse detection, logout, expiry, where a driver's
token is not accepted."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import DriverPrincipal, Role, issue_driver_token
from app.core.settings import Settings
from app.identity import service
from app.identity.schemas import RefreshRequest
from tests.factories import auth, login_driver, make_driver, staff_token
from tests.standins.twilio import TwilioStandIn

PHONE = "+4915112345678"


async def refresh(client: AsyncTestClient[Litestar], token: str) -> Any:
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


async def me(client: AsyncTestClient[Litestar], access_token: str) -> int:
    return (await client.get("/v1/me", headers=auth(access_token))).status_code


async def test_refresh_rotates_and_reuse_revokes_the_whole_login(
    client: AsyncTestClient[Litestar], job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    first = await login_driver(client, job_ctx, twilio, PHONE)
    r = await refresh(client, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["driver"]["driver_id"] == first["driver"]["driver_id"]
    assert await me(client, second["access_token"]) == 200
    r = await refresh(client, second["refresh_token"])
    third = r.json()

    # the spent first token shows up again: someone copied it
    r = await refresh(client, first["refresh_token"])
    assert r.status_code == 401
    assert r.json()["code"] == "refresh_token_reused"
    # every token of that login is dead now, refresh and access alike
    r = await refresh(client, third["refresh_token"])
    assert r.status_code == 401
    assert r.json()["code"] == "refresh_token_revoked"
    assert await me(client, third["access_token"]) == 401
    assert await me(client, first["access_token"]) == 401

    # another login of the same driver is not affected
    other = await login_driver(client, job_ctx, twilio, PHONE)
    assert await me(client, other["access_token"]) == 200


async def test_concurrent_refreshes_of_one_token_rotate_once(
    client: AsyncTestClient[Litestar], job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    tokens = await login_driver(client, job_ctx, twilio, PHONE)
    results = await asyncio.gather(*(refresh(client, tokens["refresh_token"]) for _ in range(5)))
    assert sorted(r.status_code for r in results) == [200, 401, 401, 401, 401]


async def test_logout_ends_the_login(
    client: AsyncTestClient[Litestar], job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    tokens = await login_driver(client, job_ctx, twilio, PHONE)
    r = await client.post("/v1/auth/logout", headers=auth(tokens["access_token"]))
    assert r.status_code == 204
    assert r.content == b""
    assert await me(client, tokens["access_token"]) == 401
    r = await refresh(client, tokens["refresh_token"])
    assert r.status_code == 401
    assert r.json()["code"] == "refresh_token_revoked"
    assert (await client.post("/v1/auth/logout")).status_code == 401


async def test_unknown_refresh_token(client: AsyncTestClient[Litestar]) -> None:
    r = await refresh(client, "not-a-token")
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_refresh_token"
    r = await client.post("/v1/auth/refresh", json={"refresh_token": ""})
    assert r.status_code == 422


async def test_refresh_token_expires_after_30_days(
    client: AsyncTestClient[Litestar],
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
    settings: Settings,
) -> None:
    tokens = await login_driver(client, job_ctx, twilio, PHONE)
    body = RefreshRequest(refresh_token=tokens["refresh_token"])
    later = datetime.now(UTC) + timedelta(days=30, seconds=1)  # the injected clock
    with pytest.raises(service.RefreshTokenExpired):
        await service.refresh(job_ctx["pool"], settings, body, later)
    sooner = datetime.now(UTC) + timedelta(days=29)
    rotated = await service.refresh(job_ctx["pool"], settings, body, sooner)
    assert rotated.refresh_token != tokens["refresh_token"]


async def test_access_token_expires_after_15_minutes(
    client: AsyncTestClient[Litestar], db: Any, settings: Settings
) -> None:
    now = datetime.now(UTC)
    fresh = await make_driver(db, settings, phone="+4915112340001", now=now - timedelta(minutes=14))
    stale = await make_driver(db, settings, phone="+4915112340002", now=now - timedelta(minutes=16))
    assert await me(client, fresh["access_token"]) == 200
    r = await client.get("/v1/me", headers=auth(stale["access_token"]))
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


def _forge(claims: dict[str, Any], alg: str = "none") -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}."


async def test_forged_tokens_are_refused(
    client: AsyncTestClient[Litestar], db: Any, settings: Settings
) -> None:
    driver = await make_driver(db, settings)
    claims = jwt.decode(driver["access_token"], options={"verify_signature": False})
    assert await me(client, driver["access_token"]) == 200
    assert await me(client, _forge(claims)) == 401  # alg: none
    wrong = jwt.encode(claims, "another-secret-of-sufficient-length-0123456789", algorithm="HS256")
    assert await me(client, wrong) == 401
    staff_typed = jwt.encode({**claims, "typ": "staff"}, settings.jwt_secret, algorithm="HS256")
    assert await me(client, staff_typed) == 401
    no_family = jwt.encode(
        {k: v for k, v in claims.items() if k != "sid"}, settings.jwt_secret, algorithm="HS256"
    )
    assert await me(client, no_family) == 401
    assert (await client.get("/v1/me")).status_code == 401
    assert (await client.get("/v1/me", headers={"Authorization": "Basic abc"})).status_code == 401


async def test_a_drivers_token_cannot_reach_admin(
    client: AsyncTestClient[Litestar], db: Any, settings: Settings
) -> None:
    driver = await make_driver(db, settings)
    for path in ("/admin/v1/audit-log", "/admin/v1/fleet/sites", "/admin/v1/fleet/chargers"):
        r = await client.get(path, headers=auth(driver["access_token"]))
        assert r.status_code == 401, path
    r = await client.post(
        "/admin/v1/fleet/import", json={"sites": []}, headers=auth(driver["access_token"])
    )
    assert r.status_code == 401


async def test_a_staff_token_is_not_a_drivers(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    token = staff_token(settings, roles=(Role.ADMIN,))
    assert await me(client, token) == 401


async def test_a_deleted_drivers_token_stops_working(
    client: AsyncTestClient[Litestar], db: Any, settings: Settings
) -> None:
    driver = await make_driver(db, settings)
    await db.execute("DELETE FROM drivers WHERE driver_id = $1::uuid", driver["driver_id"])
    assert await me(client, driver["access_token"]) == 401


def test_token_claims(settings: Settings) -> None:
    now = datetime(2020, 1, 1, tzinfo=UTC)
    principal = DriverPrincipal(
        driver_id="7f1d3c52-3b7e-4f42-9b2a-0a9c1f1d2e3f",
        family_id="0c7a9f40-8a32-4b8e-8d7e-3e0d2f1b4a5c",
    )
    claims = jwt.decode(
        issue_driver_token(settings, principal, now),
        settings.jwt_secret,
        algorithms=["HS256"],
        options={"verify_exp": False},
    )
    assert claims == {
        "typ": "driver",
        "sub": principal.driver_id,
        "sid": principal.family_id,
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + 900,
    }
