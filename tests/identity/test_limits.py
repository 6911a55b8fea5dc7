"""Send limits of `POST /v1/auth/otp`: resend cool-down, per number, per address, per
country calling code, the global budget; over a limit → 429 + Retry-After and no SMS;
Redis down → 503 and no SMS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar

from app.core.settings import Settings, get_settings
from app.identity.limits import ip_bucket
from app.main import create_app
from tests.factories import mobile_numbers

LOOSE = {
    "otp_resend_after_s": 0,
    "otp_phone_max": 1000,
    "otp_ip_max": 1000,
    "otp_prefix_max": 1000,
    "sms_hourly_budget": 1000,
}


@asynccontextmanager
async def api(settings: Settings, **limits: Any) -> AsyncIterator[Litestar]:
    """The app with its lifespan running in this event loop, so that requests can come
    from any client address (httpx.ASGITransport) and share its pool."""
    app = create_app(msgspec.structs.replace(settings, **{**LOOSE, **limits}), run_migrations=False)
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))  # type: ignore[arg-type]
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield app
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        await from_app.get()
        await task


@asynccontextmanager
async def from_ip(app: Litestar, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=cast(Any, app), client=(ip, 40000))  # TypedDict scopes
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as c:
        yield c


async def otp(app: Litestar, phone: str, ip: str = "198.51.100.1") -> httpx.Response:
    async with from_ip(app, ip) as c:
        return await c.post("/v1/auth/otp", json={"phone": phone})


def assert_limited(r: httpx.Response, *, at_most_s: int) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "rate_limited"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert 1 <= int(r.headers["retry-after"]) <= at_most_s


async def sms_queued(db: asyncpg.Connection) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM outbox WHERE job = 'send_sms'")
    return count


async def test_resend_cool_down(settings: Settings, db: asyncpg.Connection) -> None:
    a, b = mobile_numbers("DE", 2)
    async with api(settings, otp_resend_after_s=30) as app:
        r = await otp(app, a)
        assert r.status_code == 202
        assert r.json()["resend_after_s"] == 30
        assert_limited(await otp(app, a), at_most_s=30)
        assert (await otp(app, b)).status_code == 202
    assert await sms_queued(db) == 2


async def test_per_phone_number(settings: Settings, db: asyncpg.Connection) -> None:
    [phone] = mobile_numbers("DE", 1)
    async with api(settings, otp_phone_max=3, otp_phone_window_s=600) as app:
        for i in range(3):
            assert (await otp(app, phone, ip=f"198.51.100.{i}")).status_code == 202
        assert_limited(await otp(app, phone, ip="198.51.100.99"), at_most_s=600)
    assert await sms_queued(db) == 3


async def test_per_client_address(settings: Settings, db: asyncpg.Connection) -> None:
    phones = mobile_numbers("DE", 5)
    async with api(settings, otp_ip_max=3) as app:
        for phone in phones[:3]:
            assert (await otp(app, phone, ip="203.0.113.7")).status_code == 202
        assert_limited(await otp(app, phones[3], ip="203.0.113.7"), at_most_s=3600)
        assert (await otp(app, phones[4], ip="203.0.113.8")).status_code == 202
    assert await sms_queued(db) == 4


async def test_ipv6_addresses_count_per_64(settings: Settings) -> None:
    assert ip_bucket("2001:db8:1:2::1") == ip_bucket("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert ip_bucket("::ffff:198.51.100.4") == "198.51.100.4"
    phones = mobile_numbers("DE", 3)
    async with api(settings, otp_ip_max=1) as app:
        assert (await otp(app, phones[0], ip="2001:db8:1:2::1")).status_code == 202
        assert_limited(await otp(app, phones[1], ip="2001:db8:1:2:abcd::5"), at_most_s=3600)
        assert (await otp(app, phones[2], ip="2001:db8:1:3::1")).status_code == 202


async def test_per_country_calling_code(settings: Settings, db: asyncpg.Connection) -> None:
    german = mobile_numbers("DE", 4)
    [french] = mobile_numbers("FR", 1)
    async with api(settings, otp_prefix_max=3, otp_prefix_window_s=900) as app:
        for i, phone in enumerate(german[:3]):
            assert (await otp(app, phone, ip=f"192.0.2.{i}")).status_code == 202
        assert_limited(await otp(app, german[3], ip="192.0.2.50"), at_most_s=900)
        assert (await otp(app, french, ip="192.0.2.51")).status_code == 202
    assert await sms_queued(db) == 4


async def test_global_hourly_budget(settings: Settings, db: asyncpg.Connection) -> None:
    phones = [*mobile_numbers("DE", 1), *mobile_numbers("FR", 1), *mobile_numbers("NL", 1)]
    [late] = mobile_numbers("ES", 1)
    async with api(settings, sms_hourly_budget=3) as app:
        for i, phone in enumerate(phones):
            assert (await otp(app, phone, ip=f"192.0.2.{i}")).status_code == 202
        assert_limited(await otp(app, late, ip="192.0.2.200"), at_most_s=3600)
    assert await sms_queued(db) == 3


async def test_refused_requests_do_not_spend_the_budget(
    settings: Settings, db: asyncpg.Connection
) -> None:
    a, b = mobile_numbers("DE", 2)
    async with api(settings, otp_phone_max=1, sms_hourly_budget=2) as app:
        assert (await otp(app, a)).status_code == 202
        for _ in range(5):
            assert (await otp(app, a)).status_code == 429  # per number
        assert (await otp(app, b)).status_code == 202  # the budget still had room
    assert await sms_queued(db) == 2


async def test_redis_down_fails_closed(settings: Settings, db: asyncpg.Connection) -> None:
    down = msgspec.structs.replace(settings, redis_url="redis://127.0.0.1:1/0")
    async with api(down) as app:
        r = await otp(app, "+4915112345678")
    assert r.status_code == 503
    assert r.json()["code"] == "service_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    assert await db.fetchval("SELECT count(*) FROM otp_challenges") == 0
    assert await sms_queued(db) == 0


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "DATABASE_URL": "postgresql://x/y",
        "REDIS_URL": "redis://x",
        "JWT_SECRET": "s",
        "OTP_RESEND_AFTER_S": "45",
        "OTP_PHONE_MAX": "4",
        "OTP_PHONE_WINDOW_S": "1800",
        "OTP_IP_MAX": "9",
        "OTP_PREFIX_MAX": "77",
        "SMS_HOURLY_BUDGET": "250",
        "OTP_ALLOWED_COUNTRIES": "de, fr",
        "OTP_TTL_S": "240",
        "OTP_MAX_ATTEMPTS": "3",
        "DRIVER_ACCESS_TTL_S": "600",
        "TWILIO_API_BASE": "http://127.0.0.1:4010",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        s = get_settings()
    finally:
        get_settings.cache_clear()
    assert (s.otp_resend_after_s, s.otp_phone_max, s.otp_phone_window_s) == (45, 4, 1800)
    assert (s.otp_ip_max, s.otp_prefix_max, s.sms_hourly_budget) == (9, 77, 250)
    assert s.otp_allowed_countries == ("DE", "FR")
    assert (s.otp_ttl_s, s.otp_max_attempts, s.driver_access_ttl_s) == (240, 3, 600)
    assert s.twilio_api_base == "http://127.0.0.1:4010"
    assert not s.twilio_configured
