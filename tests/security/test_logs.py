"""No secret in any log line or problem body: a whole journey against the real processes
(granian + the arq worker, DEBUG logs and the access log on, stdout/stderr captured to
files), with Twilio and the connectivity platform as stand-ins — then every line of every
log and every body the journey received is searched for the secrets it handled."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.auth import Role
from app.core.db import init_connection
from app.core.embedded import free_port
from app.core.settings import ROOT
from tests.conftest import TEST_JWT_SECRET
from tests.factories import make_staff, mobile_numbers, site, totp_now
from tests.servers import wait_ready
from tests.standins.control_center import build_push
from tests.standins.twilio import FROM, TwilioStandIn, serve

PUSH_SECRET = "push-secret-never-logged-7f3a9c"
STAFF_PASSWORD = "staff password never logged 41"
WRONG_PASSWORD = "a wrong password never logged 9"
# Fields of a JSON log line that are noise for a 6-digit search (times, ids, durations).
NOISE = {"timestamp", "request_id", "duration_ms", "elapsed_ms", "pid", "port"}


@asynccontextmanager
async def service(
    db_url: str, redis_url: str, env: dict[str, str], logs: Path
) -> AsyncIterator[str]:
    """granian (1 worker) and the arq worker, their stdout/stderr in `logs`/*.log."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    child_env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "APP_DEMO": "0",
        "JWT_SECRET": TEST_JWT_SECRET,
        "ACCESS_LOG": "1",
        "LOG_LEVEL": "DEBUG",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    api_log = (logs / "api.log").open("wb")
    worker_log = (logs / "worker.log").open("wb")
    api = await asyncio.create_subprocess_exec(
        str(bin_dir / "granian"),
        *("--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", "1", "app.main:create_app"),
        cwd=ROOT,
        env=child_env,
        stdout=api_log,
        stderr=api_log,
    )
    worker = await asyncio.create_subprocess_exec(
        str(bin_dir / "arq"),
        "workers.main.WorkerSettings",
        cwd=ROOT,
        env=child_env,
        stdout=worker_log,
        stderr=worker_log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base, lambda: api.returncode is None, within_s=30)
        yield base
    finally:
        for proc in (api, worker):
            proc.terminate()
        for proc in (api, worker):
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        api_log.close()
        worker_log.close()


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in NOISE for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    """(secret name, line) for each line of `text` that holds a secret. JSON lines are
    searched field by field without the noisy ones; a 6-digit code must stand alone."""
    found: list[str] = []
    for line in text.splitlines():
        try:
            parts = _strings(json.loads(line))
        except ValueError:
            parts = [line]
        for name, secret in secrets.items():
            pattern = (
                re.compile(rf"(?<![0-9A-Za-z.:]){re.escape(secret)}(?![0-9A-Za-z])")
                if secret.isdigit()
                else re.compile(re.escape(secret))
            )
            if any(pattern.search(p) for p in parts):
                found.append(f"{name}: {line[:300]}")
    return found


async def _wait_code(twilio: TwilioStandIn, phone: str, within_s: float = 20) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            return twilio.last_code(phone)
        except (LookupError, AssertionError, IndexError):
            await asyncio.sleep(0.1)
    raise AssertionError(f"no SMS code reached {phone}")


@pytest.mark.timeout(180)
async def test_a_journey_leaves_no_secret_in_logs_or_problems(
    db_url: str, redis_url: str, tmp_path: Path
) -> None:
    twilio = TwilioStandIn()
    answers: list[tuple[int, str]] = []
    secrets: dict[str, str] = {
        "staff password": STAFF_PASSWORD,
        "wrong staff password": WRONG_PASSWORD,
        "push secret": PUSH_SECRET,
        "twilio auth token": twilio.auth_token,
        "jwt secret": TEST_JWT_SECRET,
    }
    conn = await asyncpg.connect(db_url)
    await init_connection(conn)
    staff = await make_staff(
        conn, email="logs@example.com", password=STAFF_PASSWORD, roles=(Role.ADMIN,)
    )
    await conn.close()
    secrets["totp secret"] = staff["totp_secret"]
    phone = mobile_numbers("DE", 1, start=7700)[0]

    async def keep(r: httpx.Response) -> httpx.Response:
        answers.append((r.status_code, r.text))
        return r

    async with serve(twilio) as twilio_url:
        env = {
            "REDIS_NAMESPACE": f"lg{uuid.uuid4().hex[:8]}",
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM": FROM,
            "TWILIO_API_BASE": twilio_url,
            "OTP_RESEND_AFTER_S": "0",
            "CONTROL_CENTER_PUSH_SECRET": PUSH_SECRET,
        }
        async with (
            service(db_url, redis_url, env, tmp_path) as base,
            httpx.AsyncClient(base_url=base, timeout=20) as http,
        ):
            # Driver: SMS code login (one wrong code first), refresh, read, logout.
            r = await keep(await http.post("/v1/auth/otp", json={"phone": phone}))
            assert r.status_code == 202, r.text
            challenge = r.json()["challenge_id"]
            code = await _wait_code(twilio, phone)
            secrets["otp code"] = code
            wrong = f"{(int(code) + 1) % 1_000_000:06d}"
            r = await keep(
                await http.post("/v1/auth/token", json={"challenge_id": challenge, "code": wrong})
            )
            assert r.status_code == 401
            r = await keep(
                await http.post("/v1/auth/token", json={"challenge_id": challenge, "code": code})
            )
            assert r.status_code == 200, r.text
            tokens = r.json()
            secrets["access token"] = tokens["access_token"]
            secrets["refresh token"] = tokens["refresh_token"]
            r = await keep(
                await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            )
            assert r.status_code == 200, r.text
            fresh = r.json()
            secrets["rotated access token"] = fresh["access_token"]
            secrets["rotated refresh token"] = fresh["refresh_token"]
            # the spent refresh token again: refused (and the family revoked)
            r = await keep(
                await http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            )
            assert r.status_code == 401
            r = await keep(
                await http.get(
                    "/v1/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}
                )
            )
            assert r.status_code == 401  # the reuse above ended the login
            # Staff: a wrong password, then password + TOTP.
            login = {"email": "logs@example.com", "password": WRONG_PASSWORD, "totp_code": "000000"}
            r = await keep(await http.post("/admin/v1/auth/login", json=login))
            assert r.status_code == 401
            totp = totp_now(staff["totp_secret"])
            secrets["totp code"] = totp
            login = {"email": "logs@example.com", "password": STAFF_PASSWORD, "totp_code": totp}
            r = await keep(await http.post("/admin/v1/auth/login", json=login))
            assert r.status_code == 200, r.text
            staff_token = r.json()["access_token"]
            secrets["staff token"] = staff_token
            r = await keep(
                await http.post(
                    "/admin/v1/fleet/import",
                    json={"sites": [site("LOG-1")]},
                    headers={"Authorization": f"Bearer {staff_token}"},
                )
            )
            assert r.status_code == 200, r.text
            # A signed platform push, and a badly signed one.
            for secret, expected in ((PUSH_SECRET, 200), ("not-the-secret", 403)):
                content_type, body = build_push(
                    "SESSION_STOP", "8949000000000000077", secret=secret.encode()
                )
                signature = re.search(rb"signature2=([^&]+)", body)
                assert signature is not None
                if expected == 200:
                    secrets["push signature"] = signature.group(1).decode()
                r = await keep(
                    await http.post(
                        "/webhooks/control-center",
                        content=body,
                        headers={"Content-Type": content_type},
                    )
                )
                assert r.status_code == expected, r.text
    logs = "\n".join(
        p.read_text(errors="replace")
        for p in sorted(tmp_path.glob("*.log"))  # noqa: ASYNC240 - the processes are gone
    )
    assert "/v1/auth/token" in logs, "the access log is on"
    assert leaks(logs, {"probe": "/v1/auth/refresh"}), "the search sees the access log"
    found = leaks(logs, secrets)
    assert not found, "secrets in the logs:\n" + "\n".join(found)
    # Problems carry no secret at all; other answers none but the tokens they hand out.
    tokens = {k for k in secrets if "token" in k and k != "twilio auth token"}
    found = [
        f
        for status, body in answers
        for f in leaks(
            body,
            secrets if status >= 400 else {k: v for k, v in secrets.items() if k not in tokens},
        )
    ]
    assert not found, "secrets in response bodies:\n" + "\n".join(found)


def test_the_leak_search_finds_a_code_but_not_in_a_timestamp() -> None:
    code = "151817"
    assert leaks('{"event": "your code is 151817", "level": "info"}', {"c": code})
    assert leaks("plain text 151817.", {"c": code})
    assert not leaks('{"event": "x", "timestamp": "2026-12-01T09:12:16.151817Z"}', {"c": code})
    assert not leaks('{"event": "at 09:12:16.151817"}', {"c": code})
