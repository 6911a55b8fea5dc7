"""The Twilio client (official library, async) against the recording stand-in on a real
port: the request on the wire, retries on 429/5xx/network, 21610, timeouts."""

from __future__ import annotations

import base64
import socket

import pytest

from app.notifications.twilio import SmsOptedOut, SmsRejected, SmsUnavailable, TwilioSms
from tests.standins.twilio import FROM, TwilioStandIn

TO = "+4915112345678"


async def no_sleep(_: float) -> None:
    return None


def client_for(twilio: TwilioStandIn, **kw: object) -> TwilioSms:
    options: dict[str, object] = {"api_base": twilio.url, "sleep": no_sleep, "max_retries": 2}
    options.update(kw)
    return TwilioSms(twilio.account_sid, twilio.auth_token, FROM, **options)  # type: ignore[arg-type]


async def test_the_request_is_twilios_messages_create(twilio: TwilioStandIn) -> None:
    async with client_for(twilio) as sms:
        sent = await sms.send(TO, "123456 is your code", validity_period_s=300)
    assert sent.sid.startswith("SM")
    assert len(sent.sid) == 34
    assert sent.status == "queued"
    [req] = twilio.requests
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert req.headers["content-type"].startswith("application/x-www-form-urlencoded")
    user, _, password = (
        base64.b64decode(req.headers["authorization"].split()[1]).decode().partition(":")
    )
    assert (user, password) == (twilio.account_sid, twilio.auth_token)
    assert req.form == {
        "To": TO,
        "From": FROM,
        "Body": "123456 is your code",
        "ValidityPeriod": "300",
    }
    assert twilio.sent_to(TO)[0]["sid"] == sent.sid


async def test_retries_429_and_5xx_then_succeeds(twilio: TwilioStandIn) -> None:
    twilio.fail_next(1, status=429)
    twilio.fail_next(1, status=503)
    async with client_for(twilio, max_retries=2) as sms:
        sent = await sms.send(TO, "hello")
    assert [r.status for r in twilio.requests] == [429, 503, 201]
    assert len(twilio.messages) == 1
    assert twilio.messages[0]["sid"] == sent.sid


async def test_gives_up_after_the_retries(twilio: TwilioStandIn) -> None:
    twilio.fail_next(3, status=500)
    async with client_for(twilio, max_retries=2) as sms:
        with pytest.raises(SmsUnavailable) as info:
            await sms.send(TO, "hello")
    assert info.value.status == 500
    assert len(twilio.requests) == 3
    assert twilio.messages == []


async def test_backoff_grows(twilio: TwilioStandIn) -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    twilio.fail_next(3, status=429)
    async with client_for(twilio, max_retries=3, sleep=record, backoff_s=1.0) as sms:
        await sms.send(TO, "hello")
    assert len(waits) == 3
    assert 0.5 <= waits[0] <= 1.0
    assert 1.0 <= waits[1] <= 2.0
    assert 2.0 <= waits[2] <= 4.0


async def test_21610_is_opted_out_and_never_retried(twilio: TwilioStandIn) -> None:
    twilio.opted_out.add(TO)
    async with client_for(twilio, max_retries=3) as sms:
        with pytest.raises(SmsOptedOut) as info:
            await sms.send(TO, "hello")
    assert info.value.code == 21610
    assert len(twilio.requests) == 1


async def test_other_refusals_are_permanent(twilio: TwilioStandIn) -> None:
    async with client_for(twilio, max_retries=3) as sms:
        with pytest.raises(SmsRejected) as info:
            await sms.send("+1", "hello")  # not E.164: 21211
    assert info.value.code == 21211
    assert len(twilio.requests) == 1


async def test_wrong_credentials_are_refused(twilio: TwilioStandIn) -> None:
    sms = TwilioSms(twilio.account_sid, "wrong-token", FROM, api_base=twilio.url, sleep=no_sleep)
    async with sms:
        with pytest.raises(SmsRejected) as info:
            await sms.send(TO, "hello")
    assert info.value.status == 401


async def test_a_slow_twilio_times_out(twilio: TwilioStandIn) -> None:
    twilio.delay_s = 1.0
    async with client_for(twilio, timeout_s=0.2, max_retries=1) as sms:
        with pytest.raises(SmsUnavailable, match="unreachable"):
            await sms.send(TO, "hello")
    assert len(twilio.requests) == 2


async def test_an_unreachable_twilio_is_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sms = TwilioSms("AC" + "0" * 32, "t", FROM, api_base=f"http://127.0.0.1:{port}", sleep=no_sleep)
    async with sms:
        with pytest.raises(SmsUnavailable):
            await sms.send(TO, "hello")


async def test_a_messaging_service_can_be_the_sender(twilio: TwilioStandIn) -> None:
    service_sid = "MG" + "ab" * 16
    sms = TwilioSms(twilio.account_sid, twilio.auth_token, service_sid, api_base=twilio.url)
    async with sms:
        await sms.send(TO, "hello")
    [req] = twilio.requests
    assert req.form == {"To": TO, "MessagingServiceSid": service_sid, "Body": "hello"}
