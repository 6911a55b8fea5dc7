"""Our Twilio requests against Twilio's own OpenAPI contract, served by Prism with
`--errors` (an invalid request becomes a 4xx instead of a mock answer).

The spec lives beside the repository, in `../shared/peers/twilio/` (INTEGRATIONS.md §4);
Prism is the npm package pinned in `package.json` (`make test` installs it; this module
runs `npm install` itself when it is missing)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from app.core.settings import ROOT, Settings
from app.notifications.service import queue_sms
from app.notifications.tasks import send_sms
from app.notifications.twilio import SmsRejected, TwilioSms
from tests.notifications.sms_fixtures import job_context

SPEC_NAME = "twilio_api_v2010.json"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2  # the spec's pattern: ^AC[0-9a-fA-F]{32}$
FROM = "+15005550006"
TO = "+4915112345678"


def find_spec() -> Path | None:
    """`TWILIO_OPENAPI_SPEC`, else `shared/peers/twilio/` beside the checkout or above it."""
    given = os.environ.get("TWILIO_OPENAPI_SPEC")
    if given:
        return Path(given) if Path(given).is_file() else None
    for folder in (ROOT, *ROOT.parents):
        candidate = folder / "shared" / "peers" / "twilio" / SPEC_NAME
        if candidate.is_file():
            return candidate
    return None


def prism_binary() -> Path:
    prism = ROOT / "node_modules" / ".bin" / "prism"
    if not prism.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("Prism is not installed and npm is missing: install Node.js and npm")
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"], cwd=ROOT, check=True, timeout=600
        )
    if not prism.exists():
        pytest.fail(f"{prism} is missing after npm install")
    return prism


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def prism_url() -> Iterator[str]:
    yield from _prism()


@pytest.fixture(scope="module")
def prism_dynamic_url() -> Iterator[str]:
    """Prism answering from the schema instead of the spec's examples: Twilio's example
    list page has relative URIs that break its own `format: uri`, which `--errors` reports
    as a 500 although our request was valid."""
    yield from _prism("--dynamic")


def _prism(*extra: str) -> Iterator[str]:
    spec = find_spec()
    if spec is None:
        pytest.skip(
            f"Twilio's OpenAPI spec ({SPEC_NAME}) is not beside the checkout "
            "(../shared/peers/twilio/) and TWILIO_OPENAPI_SPEC is unset"
        )
    prism = prism_binary()
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the process's life
    proc = subprocess.Popen(
        [
            str(prism),
            "mock",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--errors",
            *extra,
            str(spec),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"Prism exited ({proc.returncode}): {log.read()[-2000:]!r}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("Prism did not start listening within 90 s")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def no_sleep(_: float) -> None:
    return None


def prism_settings(settings: Settings, api_base: str, **extra: Any) -> Settings:
    """`settings` with Twilio at Prism (the spec's account SID, no retries) and `extra`."""
    return msgspec.structs.replace(
        settings,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token="auth-token",
        twilio_from=FROM,
        twilio_api_base=api_base,
        twilio_max_retries=0,
        **extra,
    )


async def test_a_message_request_matches_twilios_contract(prism_url: str) -> None:
    async with TwilioSms(
        ACCOUNT_SID, "auth-token", FROM, api_base=prism_url, max_retries=0, sleep=no_sleep
    ) as sms:
        sent = await sms.send(
            TO,
            "123456 is your Voltway code. It expires in 5 min. Never share it.",
            status_callback="https://voltway.example/webhooks/twilio/status",
            validity_period_s=300,
        )
    assert sent.sid.startswith("SM")
    assert sent.status


async def test_prism_refuses_a_request_twilio_would_refuse(prism_url: str) -> None:
    """Proves the check above is a real check: `--errors` turns a request that breaks the
    contract (StatusCallback must be a URI) into a 422, which we see as a refusal."""
    async with TwilioSms(
        ACCOUNT_SID, "auth-token", FROM, api_base=prism_url, max_retries=0, sleep=no_sleep
    ) as sms:
        with pytest.raises(SmsRejected) as info:
            await sms.send(TO, "hello", status_callback="not a url")
    assert info.value.status == 422


async def test_the_send_job_speaks_twilios_contract(
    prism_url: str, settings: Settings, db: Any
) -> None:
    """The whole job (message row → Twilio request → row marked sent) against Prism."""
    cfg = prism_settings(settings, prism_url)
    now = datetime.now(UTC)
    async with db.transaction():
        queued = await queue_sms(
            db,
            to=TO,
            body="654321 is your Voltway code.",
            redacted_body="****** is your Voltway code.",
            purpose="otp",
            expires_at=now + timedelta(minutes=5),
            now=now,
        )
    async with job_context(cfg) as ctx:
        assert await send_sms(ctx, queued.outbox_id, queued.message_id) == "sent"
    row = await db.fetchrow(
        "SELECT status, provider, provider_sid, body FROM sms_messages WHERE message_id = $1",
        uuid.UUID(queued.message_id),
    )
    assert row["status"] == "sent"
    assert row["provider"] == "twilio"
    assert row["provider_sid"].startswith("SM")
    assert row["body"] == "****** is your Voltway code."


async def test_an_alert_with_its_status_callback_and_the_lookup_after_a_crash_speak_twilios_contract(
    prism_dynamic_url: str, settings: Settings, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An alert (with `StatusCallback` under PUBLIC_BASE_URL) sent by the job, and the
    message lookup (`GET …/Messages.json?To=&From=`) a run makes when a dead worker's lease
    ran out: both requests as Twilio's spec wants them."""
    from app.core.clock import FixedClock

    cfg = prism_settings(settings, prism_dynamic_url, public_base_url="https://voltway.example")
    now = datetime.now(UTC)
    async with db.transaction():
        queued = await queue_sms(
            db, to=TO, body="Voltway: charging started at Hbf.", purpose="alert", now=now
        )
    # a worker claimed it and died: the next run is in doubt and asks Twilio first
    await db.execute(
        "UPDATE sms_messages SET status = 'sending', lease_until = $2 WHERE message_id = $1",
        uuid.UUID(queued.message_id),
        now - timedelta(seconds=1),
    )
    async with job_context(cfg, clock=FixedClock(now)) as ctx:
        # Prism's example messages are not ours: nothing found, so it is sent
        assert await send_sms(ctx, queued.outbox_id, queued.message_id) == "sent"
        assert "could not list messages" not in caplog.text  # the lookup was accepted
    assert (
        await db.fetchval(
            "SELECT status FROM sms_messages WHERE message_id = $1", uuid.UUID(queued.message_id)
        )
        == "sent"
    )
