"""Pure parts: codes, hashes, idTags, phone parsing; and the purge cron."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.core.clock import FixedClock
from app.core.settings import Settings
from app.identity import codes
from app.identity.phone import InvalidPhone, UnsupportedPhone, parse_phone
from app.identity.tasks import purge_expired_identity
from tests.factories import make_driver


def test_codes_are_six_digits_from_the_whole_range() -> None:
    drawn = [codes.new_code() for _ in range(5000)]
    assert all(re.fullmatch(r"[0-9]{6}", c) for c in drawn)
    assert len(set(drawn)) > 4900
    assert any(c.startswith("0") for c in drawn)  # leading zeros are kept


def test_code_hash_is_keyed_and_bound_to_the_challenge() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    h = codes.hash_code("secret-1", a, "123456")
    assert len(h) == 32
    assert codes.code_matches("secret-1", a, "123456", h)
    assert not codes.code_matches("secret-1", a, "123457", h)
    assert not codes.code_matches("secret-1", b, "123456", h)  # another challenge
    assert not codes.code_matches("secret-2", a, "123456", h)  # another server key


def test_refresh_tokens_and_id_tags() -> None:
    token = codes.new_refresh_token()
    assert len(token) >= 43
    assert codes.hash_refresh_token(token) != token.encode()
    tags = {codes.new_id_tag() for _ in range(1000)}
    assert len(tags) == 1000
    assert all(re.fullmatch(r"VW[0-9A-F]{18}", t) for t in tags)


def test_phone_parsing() -> None:
    phone = parse_phone("+4915112345678", ("DE",))
    assert (phone.e164, phone.region, phone.country_code) == ("+4915112345678", "DE", 49)
    assert parse_phone("+447400123456").region == "GB"  # no list: every region
    with pytest.raises(UnsupportedPhone):
        parse_phone("+447400123456", ("DE", "FR"))
    with pytest.raises(UnsupportedPhone):
        parse_phone("+4930123456", ("DE",))  # a Berlin landline
    with pytest.raises(InvalidPhone):
        parse_phone("+49151", ("DE",))


async def test_purge_forgets_what_expired_long_ago(
    db: asyncpg.Connection, settings: Settings, job_ctx: dict[str, Any]
) -> None:
    driver = await make_driver(db, settings)
    old = datetime.now(UTC) - timedelta(days=40)
    await db.execute(
        """INSERT INTO otp_challenges (challenge_id, phone, code_hash, created_at, expires_at,
                                       max_attempts)
           VALUES ($1, '+4915112345678', '\\x00', $2, $2, 5),
                  ($3, '+4915112345678', '\\x00', now(), now() + interval '5 min', 5)""",
        uuid.uuid4(),
        old,
        uuid.uuid4(),
    )
    await db.execute(
        """INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at)
           VALUES ('\\x01', $1::uuid, $2::timestamptz, $2::timestamptz + interval '30 days')""",
        driver["family_id"],
        old,
    )
    await db.execute("UPDATE login_families SET created_at = $1", old)
    job_ctx["clock"] = FixedClock(datetime.now(UTC))
    assert await purge_expired_identity(job_ctx) == {"challenges": 1, "tokens": 1, "families": 1}
    assert await db.fetchval("SELECT count(*) FROM otp_challenges") == 1
