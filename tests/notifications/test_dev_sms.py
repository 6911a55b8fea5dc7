"""`GET /dev/sms` exists only in demo mode without Twilio credentials (RUNNING.md)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from app.core.settings import Settings
from app.main import create_app
from app.openapi_export import export
from tests.factories import run_sms_jobs

PHONE = "+4915112345678"


def demo(settings: Settings, **changes: Any) -> Settings:
    base = {"app_demo": True, "twilio_account_sid": "", "twilio_auth_token": ""}
    return msgspec.structs.replace(settings, **{**base, **changes})


async def test_demo_without_twilio_lists_the_sinks_messages(
    settings: Settings, job_ctx: dict[str, Any]
) -> None:
    cfg = demo(settings)
    job_ctx["settings"] = cfg
    async with AsyncTestClient(create_app(cfg, run_migrations=False)) as client:
        r = await client.post("/v1/auth/otp", json={"phone": PHONE})
        assert r.status_code == 202
        assert await run_sms_jobs(job_ctx) == ["sent"]
        r = await client.get("/dev/sms")
        assert r.status_code == 200
        [item] = r.json()["items"]
        assert item["to_phone"] == PHONE
        assert item["purpose"] == "otp"
        assert item["body"].split()[0].isdigit()
        assert len(item["body"].split()[0]) == 6
        r = await client.get("/dev/sms", params={"to": "+33612345678"})
        assert r.json()["items"] == []


async def test_absent_outside_demo_mode(settings: Settings) -> None:
    cfg = demo(settings, app_demo=False)
    async with AsyncTestClient(create_app(cfg, run_migrations=False)) as client:
        assert (await client.get("/dev/sms")).status_code == 404


async def test_absent_when_twilio_is_configured(settings: Settings) -> None:
    cfg = msgspec.structs.replace(settings, app_demo=True)  # the stand-in's credentials
    async with AsyncTestClient(create_app(cfg, run_migrations=False)) as client:
        assert (await client.get("/dev/sms")).status_code == 404


def test_never_in_the_openapi_document() -> None:
    assert "/dev/sms" not in export()
