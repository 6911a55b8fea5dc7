"""Staff login: argon2 password + RFC 6238 TOTP (±1 step, no replay), throttled."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from datetime import UTC, datetime, timedelta

import asyncpg
import pyotp
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.settings import ROOT, Settings
from tests.factories import auth, make_staff, totp_now


async def _login(client: AsyncTestClient[Litestar], email: str, password: str, code: str) -> object:
    return await client.post(
        "/admin/v1/auth/login", json={"email": email, "password": password, "totp_code": code}
    )


async def test_cli_created_user_logs_in_and_reads(
    client: AsyncTestClient[Litestar], db_url: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "admin",
        "create-user",
        "--email",
        "ops@example.com",
        "--password",
        "a long passphrase",
        "--role",
        "operator",
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": db_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    uri = re.search(r"otpauth://totp/\S+", out.decode())
    assert uri, out.decode()
    totp = pyotp.parse_uri(uri.group(0))
    assert isinstance(totp, pyotp.TOTP)
    r = await client.post(
        "/admin/v1/auth/login",
        json={"email": "OPS@example.com", "password": "a long passphrase", "totp_code": totp.now()},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["roles"] == ["operator"]
    assert body["token_type"] == "Bearer"
    r = await client.get("/admin/v1/audit-log", headers=auth(body["access_token"]))
    assert r.status_code == 200
    assert r.json()["items"][0]["action"] == "staff.create"


async def test_cli_accepts_a_given_totp_secret(db_url: str) -> None:
    secret = pyotp.random_base32()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "admin",
        "create-user",
        "--email",
        "p@example.com",
        "--password",
        "another passphrase",
        "--role",
        "pricing_admin",
        "--totp-secret",
        secret,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": db_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert f"secret={secret}" in out.decode()


async def test_wrong_password_wrong_code_and_unknown_email_look_the_same(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    staff = await make_staff(db)
    code = totp_now(staff["totp_secret"])
    wrong_code = f"{(int(code) + 1) % 1_000_000:06d}"
    answers = [
        await _login(client, staff["email"], "wrong password", code),
        await _login(client, staff["email"], staff["password"], wrong_code),
        await _login(client, "nobody@example.com", staff["password"], code),
    ]
    for r in answers:
        assert r.status_code == 401  # type: ignore[attr-defined]
        assert r.json()["code"] == "invalid_credentials"  # type: ignore[attr-defined]
    assert len({r.json()["detail"] for r in answers}) == 1  # type: ignore[attr-defined]


async def test_adjacent_step_accepted_older_rejected(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    staff = await make_staff(db)
    now = datetime.now(UTC)
    previous = totp_now(staff["totp_secret"], at=now - timedelta(seconds=30))
    too_old = totp_now(staff["totp_secret"], at=now - timedelta(seconds=95))
    if too_old in (previous, totp_now(staff["totp_secret"])):  # pragma: no cover - 1e-6 luck
        return
    r = await _login(client, staff["email"], staff["password"], too_old)
    assert r.status_code == 401  # type: ignore[attr-defined]
    r = await _login(client, staff["email"], staff["password"], previous)
    assert r.status_code == 200  # type: ignore[attr-defined]


async def test_replayed_code_is_rejected(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    staff = await make_staff(db)
    code = totp_now(staff["totp_secret"])
    first = await _login(client, staff["email"], staff["password"], code)
    second = await _login(client, staff["email"], staff["password"], code)
    assert first.status_code == 200  # type: ignore[attr-defined]
    assert second.status_code == 401  # type: ignore[attr-defined]


async def test_failed_logins_lock_the_account_with_retry_after(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    staff = await make_staff(db)
    for _ in range(settings.login_max_failures):
        r = await _login(client, staff["email"], "bad password", "000000")
        assert r.status_code == 401  # type: ignore[attr-defined]
    # now even the right credentials are refused until the lock expires
    r = await _login(client, staff["email"], staff["password"], totp_now(staff["totp_secret"]))
    assert r.status_code == 429  # type: ignore[attr-defined]
    assert r.json()["code"] == "rate_limited"  # type: ignore[attr-defined]
    assert int(r.headers["retry-after"]) > 0  # type: ignore[attr-defined]


async def test_failures_from_one_address_are_throttled(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    for i in range(settings.login_ip_max_failures):
        r = await _login(client, f"nobody{i}@example.com", "x", "000000")
        assert r.status_code == 401  # type: ignore[attr-defined]
    r = await _login(client, "someone@example.com", "x", "000000")
    assert r.status_code == 429  # type: ignore[attr-defined]
    assert "retry-after" in r.headers  # type: ignore[attr-defined]
