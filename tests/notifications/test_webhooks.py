"""Twilio's webhooks through the app: signatures (bad → 403, nothing changes), status
callbacks moving notifications forward, and the inbound keywords STOP/START/HELP/STATUS."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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
from tests.factories import make_driver, run_sms_jobs
from tests.notifications.helpers import add_sample, driver_with_session, queue_session_alert
from tests.standins.twilio import TwilioStandIn

PUBLIC = "https://voltway.example"
PHONE = "+447700900123"
OUR_NUMBER = "+15005550006"
STATUS = "/webhooks/twilio/status"
INBOUND = "/webhooks/twilio/inbound"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, public_base_url=PUBLIC)


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings, run_migrations=False)


def sign(settings: Settings, url: str, form: dict[str, str]) -> str:
    """The `X-Twilio-Signature` Twilio computes for `form` posted to `url`."""
    signature: str = RequestValidator(settings.twilio_auth_token).compute_signature(url, form)
    return signature


async def post_signed(
    client: AsyncTestClient[Litestar],
    settings: Settings,
    path: str,
    form: dict[str, str],
    *,
    query: str = "",
    signature: str | None = None,
) -> Any:
    """`form` posted to `path` as Twilio posts it: signed for the public URL, unless a
    `signature` is given."""
    path_and_query = path + (f"?{query}" if query else "")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature or sign(settings, PUBLIC + path_and_query, form),
    }
    return await client.post(path_and_query, content=urlencode(form), headers=headers)


def inbound(body: str, phone: str = PHONE) -> dict[str, str]:
    return {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": OUR_NUMBER,
        "Body": body,
        "NumMedia": "0",
    }


async def text_in(
    client: AsyncTestClient[Litestar], settings: Settings, body: str, phone: str = PHONE
) -> Any:
    """A signed inbound SMS with `body` from `phone`."""
    return await post_signed(client, settings, INBOUND, inbound(body, phone))


@dataclass
class Driver:
    """A driver (PHONE) with an open session, and the way their alerts go out."""

    db: asyncpg.Connection
    job_ctx: dict[str, Any]
    session: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session['driver']['access_token']}"}

    async def queue(self, kind: str) -> str | None:
        """An alert of `kind` for the session, in a transaction of its own."""
        async with self.db.transaction():
            return await queue_session_alert(self.db, self.session, kind)

    async def send(self) -> list[str]:
        """The send job of every queued SMS; their outcomes."""
        return await run_sms_jobs(self.job_ctx)

    async def notifications(self, client: AsyncTestClient[Litestar]) -> list[dict[str, Any]]:
        """`GET /v1/me/notifications`, newest first."""
        r = await client.get("/v1/me/notifications", headers=self.headers)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items


@pytest.fixture
async def driver(db: asyncpg.Connection, settings: Settings, job_ctx: dict[str, Any]) -> Driver:
    return Driver(db, job_ctx, await driver_with_session(db, settings, PHONE))


async def sent_alert(driver: Driver, twilio: TwilioStandIn) -> tuple[str, str]:
    """A `session_started` alert queued and sent: Twilio's SID for it and the query of the
    `StatusCallback` URL the request named."""
    await driver.queue("session_started")
    assert await driver.send() == ["sent"]
    [sent] = twilio.messages
    callback = sent["form"]["StatusCallback"]
    assert callback.startswith(f"{PUBLIC}{STATUS}?message_id=")
    return sent["sid"], callback.split("?", 1)[1]


async def test_status_callbacks_move_the_notification_forward(
    client: AsyncTestClient[Litestar], settings: Settings, driver: Driver, twilio: TwilioStandIn
) -> None:
    sid, query = await sent_alert(driver, twilio)

    async def status() -> str:
        value: str = (await driver.notifications(client))[0]["status"]
        return value

    assert await status() == "sent"
    form = {"MessageSid": sid, "MessageStatus": "delivered", "To": PHONE, "From": OUR_NUMBER}
    r = await post_signed(client, settings, STATUS, form, query=query)
    assert r.status_code == 204, r.text
    assert await status() == "delivered"
    # a late "sent" after "delivered" changes nothing
    late = {**form, "MessageStatus": "sent"}
    r = await post_signed(client, settings, STATUS, late, query=query)
    assert r.status_code == 204
    assert await status() == "delivered"


async def test_a_failed_status_with_21610_opts_the_number_out(
    client: AsyncTestClient[Litestar], settings: Settings, driver: Driver, twilio: TwilioStandIn
) -> None:
    sid, query = await sent_alert(driver, twilio)
    form = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "21610", "To": PHONE}
    r = await post_signed(client, settings, STATUS, form, query=query)
    assert r.status_code == 204
    assert await driver.db.fetchval("SELECT source FROM sms_opt_outs WHERE phone = $1", PHONE)
    # the next alert is suppressed before it is even queued
    assert await driver.queue("soc_80") is None
    assert len(twilio.requests) == 1


@pytest.mark.parametrize("path", [STATUS, INBOUND])
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
        signature = sign(settings, f"{PUBLIC}{path}", form)
        form = {**form, "From": "+447700900999"}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature:
        headers["X-Twilio-Signature"] = signature
    r = await client.post(path, content=urlencode(form), headers=headers)
    assert r.status_code == 403
    assert r.json()["code"] == "invalid_signature"
    assert await db.fetchval("SELECT count(*) FROM sms_opt_outs") == 0


async def test_a_signature_for_another_host_is_refused(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    """Signed for the URL Twilio would call elsewhere: the validator covers the full URL."""
    form = inbound("STOP")
    sig = sign(settings, f"https://evil.example{INBOUND}", form)
    r = await post_signed(client, settings, INBOUND, form, signature=sig)
    assert r.status_code == 403


async def test_stop_suppresses_queued_and_later_alerts_and_start_resumes(
    client: AsyncTestClient[Litestar], settings: Settings, driver: Driver, twilio: TwilioStandIn
) -> None:
    await driver.queue("session_started")  # queued, not sent yet
    r = await text_in(client, settings, "Stop")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/xml")
    assert r.text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Message>')
    assert "no more SMS alerts" in r.text
    await driver.queue("soc_80")  # after STOP
    assert await driver.send() == ["already_suppressed"]  # nothing left to send
    assert twilio.requests == []  # nothing reached Twilio
    assert [(i["kind"], i["status"]) for i in await driver.notifications(client)] == [
        ("soc_80", "suppressed"),
        ("session_started", "suppressed"),
    ]
    me = (await client.get("/v1/me", headers=driver.headers)).json()
    assert me["sms_opted_out"] is True

    r = await text_in(client, settings, "start")
    assert "alerts are on again" in r.text
    await driver.queue("ten_minutes_left")
    assert await driver.send() == ["sent"]
    assert len(twilio.messages) == 1


async def test_an_alert_queued_before_stop_is_suppressed_at_send_time(
    driver: Driver, twilio: TwilioStandIn
) -> None:
    """STOP recorded by Twilio's 21610 path or anywhere else: the send job checks again."""
    await driver.queue("session_started")
    await driver.db.execute("INSERT INTO sms_opt_outs (phone, source) VALUES ($1, 'test')", PHONE)
    assert await driver.send() == ["suppressed"]
    assert twilio.requests == []


async def test_sms_alerts_false_in_the_profile_suppresses(
    client: AsyncTestClient[Litestar], driver: Driver, twilio: TwilioStandIn
) -> None:
    await driver.queue("session_started")  # queued while alerts were on
    r = await client.patch("/v1/me", json={"sms_alerts": False}, headers=driver.headers)
    assert r.status_code == 200
    await driver.queue("soc_80")
    assert await driver.send() == ["suppressed"]
    assert twilio.requests == []
    assert {i["status"] for i in await driver.notifications(client)} == {"suppressed"}


async def test_help_explains(client: AsyncTestClient[Litestar], settings: Settings) -> None:
    r = await text_in(client, settings, "help")
    assert r.status_code == 200
    assert "Reply STATUS" in r.text


async def test_status_answers_with_the_live_session(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    session = await driver_with_session(db, settings, "+4915112345678")
    await add_sample(db, session, at=datetime.now(UTC), energy_wh=12_340, power_w=22_000, soc=64)
    r = await text_in(client, settings, "STATUS", "+4915112345678")
    assert r.status_code == 200
    assert "Laden an Alexanderplatz (12,3 kWh" in r.text
    assert "64 %" in r.text


async def test_status_without_a_session_says_so(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    await make_driver(db, settings, phone=PHONE)
    r = await text_in(client, settings, "status")
    assert "no charging session right now" in r.text
    r = await text_in(client, settings, "STATUS", "+447700900555")
    assert "no charging session right now" in r.text


async def test_other_texts_get_an_empty_twiml_answer(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    r = await text_in(client, settings, "thanks!")
    assert r.status_code == 200
    assert r.text.endswith("<Response></Response>")
