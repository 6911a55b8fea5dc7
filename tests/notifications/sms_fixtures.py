"""Fixtures shared by tests/identity, tests/notifications and tests/reservations: the
recording Twilio stand-in on a real port, settings pointing at it, and an arq-like job
context."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from app.core.db import create_pool
from app.core.settings import Settings
from app.notifications.tasks import close_sender
from tests.standins.twilio import FROM, TwilioStandIn, serve


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStandIn]:
    standin = TwilioStandIn()
    async with serve(standin) as url:
        standin.url = url
        yield standin


def with_twilio(settings: Settings, twilio: TwilioStandIn) -> Settings:
    """`settings` with Twilio pointed at the recording stand-in."""
    return msgspec.structs.replace(
        settings,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from=FROM,
        twilio_api_base=twilio.url,
        twilio_timeout_s=5.0,
        twilio_max_retries=1,
    )


@pytest.fixture
def settings(settings: Settings, twilio: TwilioStandIn) -> Settings:
    """The suite's settings with Twilio pointed at the recording stand-in (and no resend
    cool-down, which tests/identity/test_limits.py turns back on)."""
    return msgspec.structs.replace(with_twilio(settings, twilio), otp_resend_after_s=0)


@contextlib.asynccontextmanager
async def job_context(settings: Settings, **extra: Any) -> AsyncIterator[dict[str, Any]]:
    """What arq hands a job (pool, settings, job_try and `extra`), built by hand; the SMS
    sender and the pool are closed afterwards."""
    pool = await create_pool(settings)
    ctx: dict[str, Any] = {"pool": pool, "settings": settings, "job_try": 1, **extra}
    try:
        yield ctx
    finally:
        await close_sender(ctx)
        await pool.close()


@pytest.fixture
async def job_ctx(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    async with job_context(settings) as ctx:
        yield ctx
