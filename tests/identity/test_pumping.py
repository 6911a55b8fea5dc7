"""A simulated SMS-pumping run (TARGETS.md, Security): 10,000 code requests across many
numbers, addresses and country prefixes, premium and far-away ranges included, sent
concurrently, send no more SMS than the configured budget."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import phonenumbers
from litestar.testing import AsyncTestClient
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from app.core.errors import DomainError
from app.core.redis import create_redis
from app.core.settings import Settings
from app.identity import service
from app.identity.schemas import OtpRequest
from app.main import create_app
from tests.factories import mobile_numbers, run_sms_jobs
from tests.standins.twilio import TwilioStandIn

REQUESTS = 10_000
BUDGET = 150
ALLOWED = ("DE", "FR", "NL", "ES", "IT", "PL", "SE", "GB")


def _variants(region: str, kind: int, count: int) -> list[str]:
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None, region
    national = str(example.national_number)
    out = set()
    for i in range(count * 3):
        n = phonenumbers.parse(f"+{example.country_code}{national[:-3]}{i % 1000:03d}", None)
        if phonenumbers.is_valid_number(n):
            out.add(phonenumbers.format_number(n, PhoneNumberFormat.E164))
    return sorted(out)[:count]


def attack_traffic(rng: random.Random) -> list[tuple[str, str]]:
    """(phone, client address) pairs the way a pumping botnet sends them."""
    victims = [p for region in ALLOWED for p in mobile_numbers(region, 250)]
    premium = [
        *_variants("GB", PhoneNumberType.PREMIUM_RATE, 50),
        *_variants("DE", PhoneNumberType.PREMIUM_RATE, 50),
        *_variants("FR", PhoneNumberType.SHARED_COST, 20),
    ]
    far_away = [
        p for region in ("CU", "NG", "PK", "ID", "VN", "KZ") for p in mobile_numbers(region, 40)
    ]
    addresses = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                 for _ in range(3000)]  # fmt: skip
    addresses += [f"2001:db8:{i:x}::1" for i in range(500)]
    traffic = []
    for _ in range(REQUESTS):
        roll = rng.random()
        if roll < 0.55:
            phone = rng.choice(victims)
        elif roll < 0.70:
            phone = rng.choice(premium)
        elif roll < 0.85:
            phone = rng.choice(far_away)
        else:
            phone = rng.choice(victims[:5])  # hammering a few numbers
        traffic.append((phone, rng.choice(addresses)))
    return traffic


async def test_pumping_run_sends_no_more_than_the_budget(
    settings: Settings, job_ctx: dict[str, Any], db: asyncpg.Connection, twilio: TwilioStandIn
) -> None:
    cfg = msgspec.structs.replace(
        settings,
        otp_resend_after_s=30,
        otp_phone_max=3,
        otp_ip_max=10,
        otp_prefix_max=60,
        sms_hourly_budget=BUDGET,
    )
    traffic = attack_traffic(random.Random(7))
    redis = create_redis(cfg)
    pool = job_ctx["pool"]
    gate = asyncio.Semaphore(100)
    now = datetime.now(UTC)

    async def attempt(phone: str, ip: str) -> str:
        async with gate:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await service.request_otp(conn, redis, cfg, OtpRequest(phone=phone), ip, now)
            except DomainError as exc:
                return f"{exc.status} {exc.code}"
            return "202"

    try:
        outcomes = Counter(await asyncio.gather(*(attempt(p, ip) for p, ip in traffic)))
    finally:
        await redis.aclose()

    assert sum(outcomes.values()) == REQUESTS
    assert outcomes["202"] == BUDGET, outcomes  # the attack drains the budget, no further
    assert outcomes["429 rate_limited"] > 5000
    assert outcomes["422 phone_not_supported"] > 2000  # premium and far-away ranges
    assert set(outcomes) <= {"202", "429 rate_limited", "422 phone_not_supported"}, outcomes
    assert await db.fetchval("SELECT count(*) FROM otp_challenges") == BUDGET
    assert await db.fetchval("SELECT count(*) FROM sms_messages") == BUDGET
    per_phone = await db.fetchval(
        "SELECT max(n) FROM (SELECT count(*) AS n FROM sms_messages GROUP BY to_phone) x"
    )
    assert per_phone <= 3

    # and the worker then sends exactly those
    job_ctx["settings"] = cfg
    results = await run_sms_jobs(job_ctx)
    assert results.count("sent") == BUDGET
    assert len(twilio.messages) == BUDGET
    sent_to = {m["to"] for m in twilio.messages}
    assert all(phonenumbers.region_code_for_number(phonenumbers.parse(p)) in ALLOWED
               for p in sent_to)  # fmt: skip


async def test_concurrent_requests_through_the_api_hold_the_budget(
    settings: Settings, db: asyncpg.Connection
) -> None:
    cfg = msgspec.structs.replace(
        settings,
        otp_resend_after_s=0,
        otp_ip_max=10_000,
        otp_prefix_max=10_000,
        sms_hourly_budget=20,
    )
    phones = mobile_numbers("DE", 300)
    async with AsyncTestClient(create_app(cfg, run_migrations=False)) as client:

        async def post(phone: str) -> int:
            r = await client.post("/v1/auth/otp", json={"phone": phone})
            return r.status_code

        statuses = Counter(await asyncio.gather(*(post(p) for p in phones)))
    assert statuses == {202: 20, 429: 280}
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE job = 'send_sms'") == 20
