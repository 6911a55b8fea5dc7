"""Push events: signature2, timestamps, form (XML) and JSON bodies."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import msgspec
import pytest

from app.connectivity.dates import (
    format_platform_datetime,
    format_query_datetime,
    parse_optional_datetime,
    parse_platform_datetime,
)
from app.connectivity.push import (
    JASPER_NS,
    PushError,
    compute_signature,
    parse_form_event,
    parse_json_event,
    parse_xml_data,
    verify_event,
    verify_signature,
)
from tests.standins.control_center import ControlCenterStandIn, build_push, sign

SECRET = b"push-secret"
NOW = datetime(2016, 6, 29, 0, 30, 0, tzinfo=UTC)
TS = "2016-06-29 00:29:04.271+0000"
ICCID = "89445000000001000000"


def reference_signature(secret: bytes, timestamp: str) -> str:
    return base64.b64encode(hmac.new(secret, timestamp.encode(), hashlib.sha256).digest()).decode()


# -- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-06-29 00:29:04.271+0000", datetime(2016, 6, 29, 0, 29, 4, 271000, tzinfo=UTC)),
        ("2016-06-29T00:29:04.271Z", datetime(2016, 6, 29, 0, 29, 4, 271000, tzinfo=UTC)),
        ("2016-06-29T00:29:04+00:00", datetime(2016, 6, 29, 0, 29, 4, tzinfo=UTC)),
        ("2016-06-29T02:29:04+02:00", datetime(2016, 6, 29, 0, 29, 4, tzinfo=UTC)),
        ("2016-06-28 17:29:04.000-0700", datetime(2016, 6, 29, 0, 29, 4, tzinfo=UTC)),
        ("2016-06-29 00:29:04", datetime(2016, 6, 29, 0, 29, 4, tzinfo=UTC)),  # no offset: UTC
        ("  2016-06-29T00:29:04Z ", datetime(2016, 6, 29, 0, 29, 4, tzinfo=UTC)),
    ],
)
def test_parse_platform_datetime(text: str, expected: datetime) -> None:
    parsed = parse_platform_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["", "yesterday", "2016-13-01 00:00:00+0000", "9" * 100])
def test_parse_platform_datetime_refuses(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError
        parse_platform_datetime(text)


def test_optional_and_format_round_trip() -> None:
    assert parse_optional_datetime(None) is None
    assert parse_optional_datetime("  ") is None
    when = datetime(2016, 6, 29, 0, 29, 4, 271999, tzinfo=UTC)
    assert format_platform_datetime(when) == TS
    assert parse_platform_datetime(format_platform_datetime(when)) == when.replace(
        microsecond=271000
    )
    assert format_query_datetime(when) == "2016-06-29T00:29:04+00:00"
    with pytest.raises(ValueError, match="naive"):
        format_platform_datetime(datetime(2016, 1, 1))
    with pytest.raises(ValueError, match="not a timestamp"):
        parse_optional_datetime(12)


# -- signatures ------------------------------------------------------------------------------


def test_signature_matches_the_documented_formula() -> None:
    assert compute_signature(SECRET, TS) == reference_signature(SECRET, TS)
    assert sign(SECRET, TS) == reference_signature(SECRET, TS)  # the stand-in agrees


def test_good_signature() -> None:
    assert verify_signature(SECRET, TS, reference_signature(SECRET, TS), NOW)


def test_good_signature_rfc3339_timestamp() -> None:
    ts = "2016-06-29T00:29:04.271Z"
    assert verify_signature(SECRET, ts, reference_signature(SECRET, ts), NOW)


@pytest.mark.parametrize(
    ("secret", "timestamp", "signature"),
    [
        (b"other-secret", TS, reference_signature(SECRET, TS)),  # wrong key
        (SECRET, TS, reference_signature(SECRET, TS + " ")),  # signs something else
        (SECRET, TS, ""),  # missing
        (SECRET, "", reference_signature(SECRET, "")),  # missing timestamp
        (SECRET, TS, "not base64 at all"),
        (SECRET, TS, reference_signature(SECRET, TS)[:-4]),  # truncated
        (SECRET, TS, "é" * 44),  # non-ASCII must not raise
        (b"", TS, reference_signature(b"", TS)),  # an empty secret signs nothing
        (SECRET, "garbage", reference_signature(SECRET, "garbage")),  # not a date
    ],
)
def test_bad_signature(secret: bytes, timestamp: str, signature: str) -> None:
    assert not verify_signature(secret, timestamp, signature, NOW)


def test_signature_hex_instead_of_base64_is_refused() -> None:
    hexdigest = hmac.new(SECRET, TS.encode(), hashlib.sha256).hexdigest()
    assert not verify_signature(SECRET, TS, hexdigest, NOW)


@pytest.mark.parametrize(
    ("age_s", "ok"),
    [(0, True), (299, True), (300, True), (301, False), (3600, False), (-300, True), (-301, False)],
)
def test_timestamp_age(age_s: int, ok: bool) -> None:
    sent = NOW - timedelta(seconds=age_s)
    ts = format_platform_datetime(sent)
    assert verify_signature(SECRET, ts, reference_signature(SECRET, ts), NOW) is ok


def test_max_age_is_configurable() -> None:
    ts = format_platform_datetime(NOW - timedelta(seconds=100))
    sig = reference_signature(SECRET, ts)
    assert verify_signature(SECRET, ts, sig, NOW, max_age_s=120)
    assert not verify_signature(SECRET, ts, sig, NOW, max_age_s=60)


def test_plus_sent_as_space_is_tolerated() -> None:
    # A `+` in base64 that the sender forgot to percent-encode arrives as a space.
    ts = next(
        f"2016-06-29 00:29:{s:02d}.000+0000"
        for s in range(60)
        if "+" in reference_signature(SECRET, f"2016-06-29 00:29:{s:02d}.000+0000")
    )
    mangled = reference_signature(SECRET, ts).replace("+", " ")
    assert verify_signature(SECRET, ts, mangled, NOW)


def test_verify_event_reads_the_fields() -> None:
    fields = {"timestamp": TS, "signature2": reference_signature(SECRET, TS)}
    assert verify_event(fields, SECRET, NOW)
    assert not verify_event({"timestamp": TS}, SECRET, NOW)
    assert not verify_event({"timestamp": 1, "signature2": "x"}, SECRET, NOW)


# -- form (XML) ------------------------------------------------------------------------------


def sim_state_xml(iccid: str = ICCID, ns: str = JASPER_NS) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<SimStateChange xmlns="{ns}">'
        f"<iccid>{iccid}</iccid><previousState>Activated</previousState>"
        "<currentState>Deactivated</currentState>"
        f"<dateChanged>{TS}</dateChanged></SimStateChange>"
    )


def form(data: str, **overrides: str) -> dict[str, str]:
    base = {
        "eventId": "SIM_STATE_CHANGE-1234",
        "eventType": "SIM_STATE_CHANGE",
        "timestamp": TS,
        "signature2": reference_signature(SECRET, TS),
        "data": data,
    }
    base.update(overrides)
    return base


def test_parse_form_sim_state_change() -> None:
    event = parse_form_event(form(sim_state_xml()))
    assert event.event_id == "SIM_STATE_CHANGE-1234"
    assert event.event_type == "SIM_STATE_CHANGE"
    assert event.known
    assert event.timestamp == datetime(2016, 6, 29, 0, 29, 4, 271000, tzinfo=UTC)
    assert event.raw_timestamp == TS
    assert event.iccid == ICCID
    assert event.data_kind == "SimStateChange"
    assert event.data["currentState"] == "Deactivated"
    assert event.hint_sim_status() == "DEACTIVATED"
    assert event.hint_imei() is None


def test_parse_form_prefixed_namespace_and_nesting() -> None:
    xml = (
        f'<jws:ImeiChange xmlns:jws="{JASPER_NS}"><jws:device>'
        f"<jws:iccid> {ICCID} </jws:iccid><jws:oldImei>353627111000009</jws:oldImei>"
        "<jws:newImei>353627111999994</jws:newImei></jws:device>"
        "<jws:note>a &amp; b &#x41;</jws:note></jws:ImeiChange>"
    )
    event = parse_form_event(form(xml, eventType="IMEI_CHANGE"))
    assert event.iccid == ICCID
    assert event.data_kind == "ImeiChange"
    assert event.hint_imei() == "353627111999994"
    assert event.data["note"] == "a & b A"
    assert "device" not in event.data  # only leaves


def test_unknown_event_type_is_parsed_not_refused() -> None:
    event = parse_form_event(form(sim_state_xml(), eventType="NEW_FANCY_EVENT"))
    assert event.event_type == "NEW_FANCY_EVENT"
    assert not event.known


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("", "missing_data"),
        ("<a><b></a>", "malformed_xml"),
        ("not xml", "malformed_xml"),
        (
            f'<SimStateChange xmlns="{JASPER_NS}"><state>x</state></SimStateChange>',
            "missing_iccid",
        ),
        (sim_state_xml(iccid="../../etc"), "missing_iccid"),
        (
            '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a><iccid>&x;</iccid></a>',
            "forbidden_xml",
        ),
        (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            "<lolz>&lol2;</lolz>",
            "forbidden_xml",
        ),
        (
            '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            "<a><iccid>&xxe;</iccid></a>",
            "forbidden_xml",
        ),
        ('<!DOCTYPE a SYSTEM "http://example.invalid/a.dtd"><a/>', "forbidden_xml"),
        ("<a>" + "x" * (70 * 1024) + "</a>", "data_too_large"),
        ("<a>" * 40 + "</a>" * 40, "data_too_large"),
        ("<a>" + "<b/>" * 1000 + "</a>", "data_too_large"),
    ],
)
def test_bad_form_data(data: str, code: str) -> None:
    with pytest.raises(PushError) as info:
        parse_form_event(form(data))
    assert info.value.code == code


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"eventId": ""}, "bad_event_id"),
        ({"eventId": "a b"}, "bad_event_id"),
        ({"eventId": "x" * 200}, "bad_event_id"),
        ({"eventType": ""}, "bad_event_type"),
        ({"eventType": "<script>"}, "bad_event_type"),
        ({"timestamp": "soon"}, "bad_timestamp"),
    ],
)
def test_bad_form_envelope(overrides: dict[str, str], code: str) -> None:
    with pytest.raises(PushError) as info:
        parse_form_event(form(sim_state_xml(), **overrides))
    assert info.value.code == code


def test_missing_envelope_fields() -> None:
    fields = form(sim_state_xml())
    del fields["eventId"]
    with pytest.raises(PushError, match="eventId"):
        parse_form_event(fields)
    fields = form(sim_state_xml())
    del fields["timestamp"]
    with pytest.raises(PushError, match="timestamp"):
        parse_form_event(fields)


def test_xml_data_without_namespace_is_read() -> None:
    kind, fields = parse_xml_data(f"<Session><iccid>{ICCID}</iccid><ipAddress/></Session>")
    assert kind == "Session"
    assert fields == {"iccid": ICCID, "ipAddress": ""}


def test_form_data_holding_json_is_read() -> None:
    event = parse_form_event(form(msgspec.json.encode({"iccid": ICCID}).decode()))
    assert event.iccid == ICCID
    assert event.data_kind is None


# -- JSON ------------------------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"iccid": ICCID}
    for _ in range(depth):
        node = {"x": node}
    return node


def json_body(data: Any, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventId": "evt-1",
        "eventType": "SESSION_STOP",
        "timestamp": TS,
        "signature2": reference_signature(SECRET, TS),
        "data": data,
    }
    base.update(overrides)
    return base


def test_parse_json_event() -> None:
    data = {
        "iccid": ICCID,
        "dateSessionEnded": TS,
        "session": {"ipAddress": "10.0.0.1", "bytes": 12, "roaming": False, "none": None},
        "list": [{"imei": "353627111000009"}],
    }
    event = parse_json_event(json_body(data))
    assert (event.event_id, event.event_type, event.iccid) == ("evt-1", "SESSION_STOP", ICCID)
    assert event.data == {
        "iccid": ICCID,
        "dateSessionEnded": TS,
        "ipAddress": "10.0.0.1",
        "bytes": "12",
        "roaming": "false",
        "imei": "353627111000009",
    }
    assert event.hint_imei() == "353627111000009"


def test_parse_json_event_numeric_id_and_xml_data() -> None:
    event = parse_json_event(json_body(sim_state_xml(), eventId=98765))
    assert event.event_id == "98765"
    assert event.data_kind == "SimStateChange"


def test_parse_json_event_iccid_key_is_case_insensitive() -> None:
    assert parse_json_event(json_body({"ICCID": ICCID})).iccid == ICCID


def test_parse_json_event_integer_iccid() -> None:
    # An integer keeps every digit (ICCIDs start with 89: no leading zero to lose).
    assert parse_json_event(json_body({"iccid": int(ICCID)})).iccid == ICCID


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([], "malformed_event"),
        (json_body(None), "missing_data"),
        (json_body({}), "missing_iccid"),
        (json_body({"iccid": 8.9445e19}), "missing_iccid"),
        (json_body({"iccid": ICCID}, eventId=None), "bad_event_id"),
        (json_body({"iccid": ICCID}, eventId=True), "bad_event_id"),
        (json_body({"iccid": ICCID}, eventType=5), "bad_event_type"),
        (json_body({"iccid": ICCID}, timestamp=1467160144), "bad_timestamp"),
        (json_body("{not json"), "malformed_data"),
        (json_body(nested(20)), "data_too_large"),
    ],
)
def test_bad_json_event(body: Any, code: str) -> None:
    with pytest.raises(PushError) as info:
        parse_json_event(body)
    assert info.value.code == code


# -- the stand-in's push sender, end to end ----------------------------------------------------


class Receiver:
    """A minimal webhook endpoint that records what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        self.received.append((headers[b"content-type"].decode(), body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_stand_in_form_push_verifies_and_parses() -> None:
    clock_now = NOW.timestamp()
    standin = ControlCenterStandIn(push_secret=SECRET, clock=lambda: clock_now)
    iccid = standin.add_device()
    standin.set_status(iccid, "DEACTIVATED")
    receiver = Receiver()
    response = await standin.send_push(
        "http://app/webhooks/control-center",
        "SIM_STATE_CHANGE",
        iccid,
        event_id="e-1",
        transport=httpx.ASGITransport(app=receiver),
    )
    assert response.status_code == 200
    content_type, body = receiver.received[0]
    assert content_type == "application/x-www-form-urlencoded"
    fields = dict(parse_qsl(body.decode()))
    assert verify_event(fields, SECRET, NOW)
    assert not verify_event(fields, b"wrong", NOW)
    assert not verify_event(fields, SECRET, NOW + timedelta(minutes=6))
    event = parse_form_event(fields)
    assert (event.event_id, event.iccid, event.hint_sim_status()) == ("e-1", iccid, "DEACTIVATED")
    assert event.data["previousState"] == "ACTIVATED"
    assert JASPER_NS in fields["data"]


async def test_stand_in_json_push_imei_change() -> None:
    standin = ControlCenterStandIn(push_secret=SECRET, clock=lambda: NOW.timestamp())
    iccid = standin.add_device()
    new_imei = standin.change_imei(iccid)
    receiver = Receiver()
    await standin.send_push(
        "http://app/webhooks/control-center",
        "IMEI_CHANGE",
        iccid,
        variant="json",
        transport=httpx.ASGITransport(app=receiver),
    )
    content_type, body = receiver.received[0]
    assert content_type == "application/json"
    obj = msgspec.json.decode(body)
    assert verify_event(obj, SECRET, NOW)
    event = parse_json_event(obj)
    assert event.event_type == "IMEI_CHANGE"
    assert event.hint_imei() == new_imei


def test_build_push_variants() -> None:
    _, body = build_push("SESSION_STOP", ICCID, secret=SECRET, timestamp=TS, event_id="x")
    fields = dict(parse_qsl(body.decode()))
    assert fields["signature2"] == reference_signature(SECRET, TS)
    assert parse_form_event(fields).data_kind == "Session"
    with pytest.raises(ValueError, match="variant"):
        build_push("SESSION_STOP", ICCID, secret=SECRET, variant="soap")
