"""Twilio's webhooks through the app: signatures (bad → 403, nothing changes), status
callbacks moving notifications forward, and the inbound keywords STOP/START/HELP/STATUS."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from twilio.request_validator import RequestValidator

from app.core.settings import Settings
from app.main import create_app
from app.notifications.alerts import queue_alert
from tests.factories import make_driver, run_sms_jobs
from tests.notifications.helpers import add_sample, make_charging_session
from tests.standins.twilio import TwilioStandIn

PUBLIC = "https://voltway.example"
PHONE = "+447700900123"
OUR_NUMBER = "+15005550006"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, public_base_url=PUBLIC)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings, run_migrations=False)


async def post_signed(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    path: str,
    form: dict[str, str],
    *,
    query: str = "",
    signature: str | None = None,
) -> Any:
    url = f"{PUBLIC}{path}" + (f"?{query}" if query else "")
    sig = signature or RequestValidator(settings.twilio_auth_token).compute_signature(url, form)
    return await client.post(
        path + (f"?{query}" if query else ""),
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig},
    )


def inbound(body: str, phone: str = PHONE) -> dict[str, str]:
    return {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": OUR_NUMBER,
        "Body": body,
        "NumMedia": "0",
    }


async def alert_for(
    db: asyncpg.Connection, settings: Settings, phone: str = PHONE
) -> dict[str, Any]:
    driver = await make_driver(db, settings, phone=phone)
    session = await make_charging_session(db, driver_id=driver["driver_id"])
    return {"driver": driver, "session": session}


async def queue(db: asyncpg.Connection, arranged: dict[str, Any], kind: str) -> str | None:
    async with db.transaction():
        return await queue_alert(
            db,
            kind=kind,
            driver_id=arranged["driver"]["driver_id"],
            now=datetime.now(UTC),
            session_id=arranged["session"]["session_id"],
        )


async def test_status_callbacks_move_the_notification_forward(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
) -> None:
    job_ctx["settings"] = settings
    arranged = await alert_for(db, settings)
    await queue(db, arranged, "session_started")
    assert await run_sms_jobs(job_ctx) == ["sent"]
    [sent] = twilio.messages
    callback = sent["form"]["StatusCallback"]
    assert callback.startswith(f"{PUBLIC}/webhooks/twilio/status?message_id=")
    query = callback.split("?", 1)[1]
    sid = sent["sid"]

    async def status() -> str:
        r = await client.get("/v1/me/notifications", headers=bearer(arranged))
        assert r.status_code == 200, r.text
        value: str = r.json()["items"][0]["status"]
        return value

    assert await status() == "sent"
    form = {"MessageSid": sid, "MessageStatus": "delivered", "To": PHONE, "From": OUR_NUMBER}
    r = await post_signed(client, settings, "/webhooks/twilio/status", form, query=query)
    assert r.status_code == 204, r.text
    assert await status() == "delivered"
    # a late "sent" after "delivered" changes nothing
    late = {**form, "MessageStatus": "sent"}
    r = await post_signed(client, settings, "/webhooks/twilio/status", late, query=query)
    assert r.status_code == 204
    assert await status() == "delivered"


async def test_a_failed_status_with_21610_opts_the_number_out(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
) -> None:
    job_ctx["settings"] = settings
    arranged = await alert_for(db, settings)
    await queue(db, arranged, "session_started")
    await run_sms_jobs(job_ctx)
    [sent] = twilio.messages
    query = sent["form"]["StatusCallback"].split("?", 1)[1]
    form = {
        "MessageSid": sent["sid"],
        "MessageStatus": "undelivered",
        "ErrorCode": "21610",
        "To": PHONE,
    }
    r = await post_signed(client, settings, "/webhooks/twilio/status", form, query=query)
    assert r.status_code == 204
    assert await db.fetchval("SELECT source FROM sms_opt_outs WHERE phone = $1", PHONE)
    # the next alert is suppressed before it is even queued
    assert await queue(db, arranged, "soc_80") is None
    assert len(twilio.requests) == 1


@pytest.mark.parametrize("path", ["/webhooks/twilio/status", "/webhooks/twilio/inbound"])
@pytest.mark.parametrize("signature", ["", "bm90IGEgc2lnbmF0dXJl", "tampered"])
async def test_bad_signatures_are_refused_and_change_nothing(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    path: str,
    signature: str,
) -> None:
    await make_driver(db, settings, phone=PHONE)
    form = inbound("STOP")
    if signature == "tampered":  # signed, then the body changed
        good = RequestValidator(settings.twilio_auth_token).compute_signature(
            f"{PUBLIC}{path}", form
        )
        form = {**form, "From": "+447700900999"}
        signature = good
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature:
        headers["X-Twilio-Signature"] = signature
    r = await client.post(path, content=urlencode(form), headers=headers)
    assert r.status_code == 403
    assert r.json()["code"] == "invalid_signature"
    assert await db.fetchval("SELECT count(*) FROM sms_opt_outs") == 0


async def test_a_signature_for_another_host_is_refused(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    """Signed for the URL Twilio would call elsewhere: the validator covers the full URL."""
    form = inbound("STOP")
    sig = RequestValidator(settings.twilio_auth_token).compute_signature(
        "https://evil.example/webhooks/twilio/inbound", form
    )
    r = await post_signed(client, settings, "/webhooks/twilio/inbound", form, signature=sig)
    assert r.status_code == 403


async def test_stop_suppresses_queued_and_later_alerts_and_start_resumes(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
) -> None:
    arranged = await alert_for(db, settings)
    await queue(db, arranged, "session_started")  # queued, not sent yet
    r = await post_signed(client, settings, "/webhooks/twilio/inbound", inbound("Stop"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/xml")
    assert r.text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Message>')
    assert "no more SMS alerts" in r.text
    await queue(db, arranged, "soc_80")  # after STOP
    assert await run_sms_jobs(job_ctx) == ["already_suppressed"]  # nothing left to send
    assert twilio.requests == []  # nothing reached Twilio
    items = (await client.get("/v1/me/notifications", headers=bearer(arranged))).json()["items"]
    assert [(i["kind"], i["status"]) for i in items] == [
        ("soc_80", "suppressed"),
        ("session_started", "suppressed"),
    ]
    me = (await client.get("/v1/me", headers=bearer(arranged))).json()
    assert me["sms_opted_out"] is True

    r = await post_signed(client, settings, "/webhooks/twilio/inbound", inbound("start"))
    assert "alerts are on again" in r.text
    await queue(db, arranged, "ten_minutes_left")
    assert await run_sms_jobs(job_ctx) == ["sent"]
    assert len(twilio.messages) == 1


async def test_an_alert_queued_before_stop_is_suppressed_at_send_time(
    db: asyncpg.Connection, settings: Settings, job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    """STOP recorded by Twilio's 21610 path or anywhere else: the send job checks again."""
    arranged = await alert_for(db, settings)
    await queue(db, arranged, "session_started")
    await db.execute("INSERT INTO sms_opt_outs (phone, source) VALUES ($1, 'test')", PHONE)
    assert await run_sms_jobs(job_ctx) == ["suppressed"]
    assert twilio.requests == []


async def test_sms_alerts_false_in_the_profile_suppresses(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
) -> None:
    arranged = await alert_for(db, settings)
    await queue(db, arranged, "session_started")  # queued while alerts were on
    r = await client.patch("/v1/me", json={"sms_alerts": False}, headers=bearer(arranged))
    assert r.status_code == 200
    await queue(db, arranged, "soc_80")
    assert await run_sms_jobs(job_ctx) == ["suppressed"]
    assert twilio.requests == []
    items = (await client.get("/v1/me/notifications", headers=bearer(arranged))).json()["items"]
    assert {i["status"] for i in items} == {"suppressed"}


async def test_help_explains(client: AsyncTestClient[Litestar], settings: Settings) -> None:
    r = await post_signed(client, settings, "/webhooks/twilio/inbound", inbound("help"))
    assert r.status_code == 200
    assert "Reply STATUS" in r.text


async def test_status_answers_with_the_live_session(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    arranged = await alert_for(db, settings, phone="+4915112345678")
    await add_sample(
        db, arranged["session"], at=datetime.now(UTC), energy_wh=12_340, power_w=22_000, soc=64
    )
    r = await post_signed(
        client, settings, "/webhooks/twilio/inbound", inbound("STATUS", "+4915112345678")
    )
    assert r.status_code == 200
    assert "Laden an Alexanderplatz (12,3 kWh" in r.text
    assert "64 %" in r.text


async def test_status_without_a_session_says_so(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    await make_driver(db, settings, phone=PHONE)
    r = await post_signed(client, settings, "/webhooks/twilio/inbound", inbound("status"))
    assert "no charging session right now" in r.text
    r = await post_signed(
        client, settings, "/webhooks/twilio/inbound", inbound("STATUS", "+447700900555")
    )
    assert "no charging session right now" in r.text


async def test_other_texts_get_an_empty_twiml_answer(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    r = await post_signed(client, settings, "/webhooks/twilio/inbound", inbound("thanks!"))
    assert r.status_code == 200
    assert r.text.endswith("<Response></Response>")


def bearer(arranged: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {arranged['driver']['access_token']}"}
