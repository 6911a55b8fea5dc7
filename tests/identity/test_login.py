"""SMS-code login: request a code, exchange it; wrong codes, expiry, reuse, bad numbers."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import phonenumbers
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from app.core.settings import Settings
from app.identity import service
from app.identity.schemas import TokenRequest
from tests.conftest import TEST_JWT_SECRET
from tests.factories import auth, login_driver, make_driver, run_sms_jobs
from tests.standins.twilio import TwilioStandIn

PHONE = "+4915112345678"


async def request_code(client: AsyncTestClient[Litestar], phone: str = PHONE) -> str:
    r = await client.post("/v1/auth/otp", json={"phone": phone})
    assert r.status_code == 202, r.text
    challenge_id: str = r.json()["challenge_id"]
    return challenge_id


async def exchange(client: AsyncTestClient[Litestar], challenge_id: str, code: str) -> Any:
    return await client.post("/v1/auth/token", json={"challenge_id": challenge_id, "code": code})


def other(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_happy_path_creates_the_driver_on_first_login(
    client: AsyncTestClient[Litestar],
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
    db: asyncpg.Connection,
) -> None:
    r = await client.post("/v1/auth/otp", json={"phone": PHONE})
    assert r.status_code == 202
    body = r.json()
    assert set(body) == {"challenge_id", "expires_in_s", "resend_after_s"}
    assert body["expires_in_s"] == 300
    assert body["resend_after_s"] == 0
    assert await run_sms_jobs(job_ctx) == ["sent"]
    [sms] = twilio.sent_to(PHONE)
    code = twilio.last_code(PHONE)
    assert len(code) == 6
    assert code.isdigit()
    assert "expires in 5 min" in sms["body"]
    assert await db.fetchval("SELECT count(*) FROM drivers") == 0

    r = await exchange(client, body["challenge_id"], code)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in_s"] == 900
    assert tokens["refresh_expires_in_s"] == 30 * 24 * 3600
    driver = tokens["driver"]
    assert driver["phone"] == PHONE
    assert driver["vehicle"] is None
    assert driver["sms_alerts"] is True
    assert len(driver["id_tag"]) == 20
    assert driver["id_tag"].startswith("VW")
    claims = jwt.decode(tokens["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["typ"] == "driver"
    assert claims["sub"] == driver["driver_id"]
    assert claims["exp"] - claims["iat"] == 900

    r = await client.get("/v1/me", headers=auth(tokens["access_token"]))
    assert r.status_code == 200
    assert r.json() == driver

    # a second login is the same driver, with the same idTag
    again = await login_driver(client, job_ctx, twilio, PHONE)
    assert again["driver"]["driver_id"] == driver["driver_id"]
    assert again["driver"]["id_tag"] == driver["id_tag"]
    assert await db.fetchval("SELECT count(*) FROM drivers") == 1


async def test_code_is_stored_hashed_and_its_sms_redacted(
    client: AsyncTestClient[Litestar],
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
    db: asyncpg.Connection,
) -> None:
    challenge_id = await request_code(client)
    await run_sms_jobs(job_ctx)
    code = twilio.last_code(PHONE)
    row = await db.fetchrow(
        "SELECT code_hash FROM otp_challenges WHERE challenge_id = $1", uuid.UUID(challenge_id)
    )
    assert len(row["code_hash"]) == 32
    assert code.encode() not in row["code_hash"]
    dump = await db.fetchval(
        "SELECT string_agg(body, '|') FROM sms_messages WHERE to_phone = $1", PHONE
    )
    assert code not in dump


async def test_the_answer_is_the_same_for_known_and_unknown_numbers(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    known, unknown = "+4915112340001", "+4915112340002"
    await make_driver(db, settings, phone=known)
    a = await client.post("/v1/auth/otp", json={"phone": known})
    b = await client.post("/v1/auth/otp", json={"phone": unknown})
    assert a.status_code == b.status_code == 202
    strip = {"challenge_id", "date", "x-request-id", "content-length"}
    assert {k: v for k, v in a.json().items() if k not in strip} == {
        k: v for k, v in b.json().items() if k not in strip
    }
    assert {k for k in a.headers if k not in strip} == {k for k in b.headers if k not in strip}


async def test_wrong_code_five_times_locks_the_challenge(
    client: AsyncTestClient[Litestar], job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    challenge_id = await request_code(client)
    await run_sms_jobs(job_ctx)
    code = twilio.last_code(PHONE)
    for i in range(4):
        r = await exchange(client, challenge_id, other(code))
        assert (r.status_code, r.json()["code"]) == (401, "invalid_code"), i
    r = await exchange(client, challenge_id, other(code))
    assert r.status_code == 401
    assert r.json()["code"] == "challenge_locked"
    r = await exchange(client, challenge_id, code)  # the right code, too late
    assert r.status_code == 401
    assert r.json()["code"] == "challenge_locked"


async def test_concurrent_guesses_cannot_exceed_the_attempts(
    client: AsyncTestClient[Litestar],
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
    db: asyncpg.Connection,
) -> None:
    challenge_id = await request_code(client)
    await run_sms_jobs(job_ctx)
    code = twilio.last_code(PHONE)
    guesses = [f"{(int(code) + i) % 1_000_000:06d}" for i in range(1, 31)]
    results = await asyncio.gather(*(exchange(client, challenge_id, g) for g in guesses))
    assert all(r.status_code == 401 for r in results)
    attempts = await db.fetchval(
        "SELECT attempts FROM otp_challenges WHERE challenge_id = $1", uuid.UUID(challenge_id)
    )
    assert attempts == 5
    assert (await exchange(client, challenge_id, code)).json()["code"] == "challenge_locked"


async def test_a_code_works_once(
    client: AsyncTestClient[Litestar], job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    challenge_id = await request_code(client)
    await run_sms_jobs(job_ctx)
    code = twilio.last_code(PHONE)
    assert (await exchange(client, challenge_id, code)).status_code == 200
    r = await exchange(client, challenge_id, code)
    assert r.status_code == 401
    assert r.json()["code"] == "challenge_used"


async def test_concurrent_use_of_one_code_logs_in_once(
    client: AsyncTestClient[Litestar], job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    challenge_id = await request_code(client)
    await run_sms_jobs(job_ctx)
    code = twilio.last_code(PHONE)
    results = await asyncio.gather(*(exchange(client, challenge_id, code) for _ in range(10)))
    assert sorted(r.status_code for r in results) == [200] + [401] * 9


async def test_an_expired_code_is_refused(
    client: AsyncTestClient[Litestar],
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
    settings: Settings,
) -> None:
    challenge_id = await request_code(client)
    await run_sms_jobs(job_ctx)
    code = twilio.last_code(PHONE)
    body = TokenRequest(challenge_id=uuid.UUID(challenge_id), code=code)
    later = datetime.now(UTC) + timedelta(seconds=301)  # the injected clock, 5 min on
    with pytest.raises(service.ChallengeExpired):
        await service.exchange_code(job_ctx["pool"], settings, body, later)
    # still valid a moment before
    sooner = datetime.now(UTC) + timedelta(seconds=290)
    tokens = await service.exchange_code(job_ctx["pool"], settings, body, sooner)
    assert tokens.driver.phone == PHONE


async def test_unknown_challenge_is_a_wrong_code(client: AsyncTestClient[Litestar]) -> None:
    r = await exchange(client, str(uuid.uuid4()), "123456")
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_code"


@pytest.mark.parametrize(
    "phone",
    [
        "",
        "4915112345678",  # no +
        "+",
        "+49",
        "+49 151 12345678",  # spaces
        "+49-151-12345678",
        "+0049151123456",
        "+4915112345678901234",  # longer than E.164 allows
        "+99912345678",  # no such country code
        "+49123",  # too short for Germany
        "phone",
        "+4915112345678\n",
        "０１５１",
    ],
)
async def test_malformed_numbers_are_422(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, phone: str
) -> None:
    r = await client.post("/v1/auth/otp", json={"phone": phone})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed"
    assert problem["errors"][0]["field"] == "phone"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"phone": 4915112345678}, {"phone": None}, {"phone": PHONE, "extra": 1}, []],
)
async def test_malformed_bodies_are_422(client: AsyncTestClient[Litestar], body: Any) -> None:
    r = await client.post("/v1/auth/otp", json=body)
    assert r.status_code == 422
    assert r.json()["code"] == "validation_failed"


def _example(region: str, kind: int) -> str:
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None, region
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


@pytest.mark.parametrize(
    "phone",
    [
        _example("DE", PhoneNumberType.PREMIUM_RATE),
        _example("GB", PhoneNumberType.PREMIUM_RATE),
        _example("DE", PhoneNumberType.FIXED_LINE),
        _example("FR", PhoneNumberType.TOLL_FREE),
        _example("US", PhoneNumberType.FIXED_LINE_OR_MOBILE),  # a country not allowed
        _example("CU", PhoneNumberType.MOBILE),  # a country not allowed
    ],
)
async def test_numbers_we_do_not_text_are_refused(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, phone: str
) -> None:
    r = await client.post("/v1/auth/otp", json={"phone": phone})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "phone_not_supported"
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


async def test_the_code_is_never_logged(
    client: AsyncTestClient[Litestar],
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    challenge_id = await request_code(client)
    await run_sms_jobs(job_ctx)
    code = twilio.last_code(PHONE)
    await exchange(client, challenge_id, other(code))
    assert (await exchange(client, challenge_id, code)).status_code == 200
    captured = capsys.readouterr()
    assert code not in caplog.text
    assert code not in captured.out
    assert code not in captured.err
