"""Push events from the connectivity platform: signature check and parsing, no I/O.

The platform POSTs `eventId`, `eventType`, `timestamp`, `signature2` and `data`, either
form-encoded (`data` is XML in the Jasper schema namespace) or as JSON (`data` is an
object). `signature2` is base64(HMAC-SHA256(secret, timestamp)).

Verify before parsing: the XML parser is the attack surface, and an unsigned request has
no business reaching it. Note that the signature covers only the timestamp, not the body:
a captured signature can be replayed with another body for as long as the timestamp is
fresh. So callers dedupe on `eventId` *and* refuse a (timestamp, signature2) pair already
used by another event id, and re-read the device from the REST API before acting on
anything but the ICCID (which is what INTEGRATIONS.md asks anyway).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Final, NoReturn
from xml.parsers import expat

import msgspec

from app.connectivity.dates import parse_platform_datetime

JASPER_NS: Final = "http://api.jasperwireless.com/ws/schema"
DEFAULT_MAX_AGE_S: Final = 300.0
MAX_DATA_BYTES: Final = 64 * 1024
_MAX_DEPTH: Final = 16
_MAX_ELEMENTS: Final = 512
_MAX_FIELDS: Final = 256

KNOWN_EVENT_TYPES: Final = frozenset(
    {
        "SESSION_START",
        "SESSION_STOP",
        "SIM_STATE_CHANGE",
        "IMEI_CHANGE",
        "CTD_SESSION_USAGE_EXCEEDED",
        "PAST24H_DATA_USAGE_EXCEEDED",
    }
)
USAGE_EVENT_TYPES: Final = frozenset({"CTD_SESSION_USAGE_EXCEEDED", "PAST24H_DATA_USAGE_EXCEEDED"})

_EVENT_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_ICCID = re.compile(r"^[0-9A-Za-z]{6,32}$")


class PushError(ValueError):
    """A push request that cannot be understood (after its signature was accepted)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PushEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    event_type: str
    timestamp: datetime
    """When the platform sent it (aware)."""
    iccid: str
    data: dict[str, str]
    """Leaf fields of `data` by (local) name, first occurrence wins, values as text."""
    data_kind: str | None = None
    """Root element of XML data (e.g. `SimStateChange`); None for JSON objects."""
    raw_timestamp: str = ""
    """The timestamp exactly as sent (what `signature2` signs)."""

    @property
    def known(self) -> bool:
        """One of the event types we act on; others are stored and acknowledged."""
        return self.event_type in KNOWN_EVENT_TYPES

    def get(self, *names: str) -> str | None:
        """The first non-blank value among `names` (case-insensitive)."""
        lowered = {k.lower(): v for k, v in self.data.items()}
        for name in names:
            value = lowered.get(name.lower())
            if value:
                return value
        return None

    def hint_imei(self) -> str | None:
        """The new IMEI if the event names one; a hint only, re-read the device."""
        return self.get("newImei", "currentImei", "imei")

    def hint_sim_status(self) -> str | None:
        """The new SIM status (`ACTIVATED`, ...) if the event names one; a hint only."""
        raw = self.get("currentState", "newState", "simState", "status", "state")
        if raw is None:
            return None
        return re.sub(r"[\s\-]+", "_", raw.strip()).upper()


def compute_signature(secret: bytes, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, timestamp))."""
    digest = hmac.new(secret, timestamp.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(
    secret: bytes,
    timestamp: str,
    signature2: str,
    now: datetime,
    max_age_s: float = DEFAULT_MAX_AGE_S,
) -> bool:
    """True when `signature2` signs `timestamp` with `secret` and the timestamp is within
    `max_age_s` of `now` (either side: a clock ahead by more than that is refused too)."""
    if not secret or not timestamp or not signature2:
        return False
    try:
        sent_at = parse_platform_datetime(timestamp)
    except ValueError:
        return False
    if abs((now - sent_at).total_seconds()) > max_age_s:
        return False
    expected = compute_signature(secret, timestamp).encode("ascii")
    # base64 has no spaces: a space is a `+` that a sender forgot to percent-encode.
    given = signature2.strip().replace(" ", "+").encode("utf-8", "replace")
    return hmac.compare_digest(expected, given)


def verify_event(
    fields: Mapping[str, object],
    secret: bytes,
    now: datetime,
    max_age_s: float = DEFAULT_MAX_AGE_S,
) -> bool:
    """`verify_signature` on the `timestamp` and `signature2` of a form or JSON body."""
    timestamp = fields.get("timestamp")
    signature2 = fields.get("signature2")
    if not isinstance(timestamp, str) or not isinstance(signature2, str):
        return False
    return verify_signature(secret, timestamp, signature2, now, max_age_s)


def parse_form_event(form: Mapping[str, str]) -> PushEvent:
    """A form-encoded push; `data` is XML in the Jasper namespace."""
    data = form.get("data")
    if not isinstance(data, str) or not data.strip():
        raise PushError("missing_data", "data is missing")
    kind, fields = _parse_data_text(data)
    return _build(form.get("eventId"), form.get("eventType"), form.get("timestamp"), fields, kind)


def parse_json_event(obj: object) -> PushEvent:
    """A JSON push; `data` is an object (an XML or JSON string is accepted too)."""
    if not isinstance(obj, Mapping):
        raise PushError("malformed_event", "the body is not an object")
    data = obj.get("data")
    kind: str | None = None
    if isinstance(data, Mapping):
        fields = _flatten_json(data)
    elif isinstance(data, str) and data.strip():
        kind, fields = _parse_data_text(data)
    else:
        raise PushError("missing_data", "data is missing")
    event_id = obj.get("eventId")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        event_id = str(event_id)
    return _build(event_id, obj.get("eventType"), obj.get("timestamp"), fields, kind)


def parse_xml_data(text: str, max_bytes: int = MAX_DATA_BYTES) -> tuple[str, dict[str, str]]:
    """(root element local name, leaf fields) of an XML document.

    No DTD is allowed, so no entity can be declared or expanded (billion laughs, external
    entities); depth, element count and size are bounded. defusedxml is not installed; this
    applies the same refusals with the standard library's expat.
    """
    raw = text.encode("utf-8")
    if len(raw) > max_bytes:
        raise PushError("data_too_large", "data is too large")
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def forbid(*_args: object) -> NoReturn:
        raise PushError("forbidden_xml", "DTDs and entities are not accepted")

    parser.StartDoctypeDeclHandler = forbid
    parser.EntityDeclHandler = forbid
    parser.UnparsedEntityDeclHandler = forbid
    parser.ExternalEntityRefHandler = forbid
    parser.NotationDeclHandler = forbid

    root: list[str] = []
    stack: list[tuple[str, list[str], list[bool]]] = []
    fields: dict[str, str] = {}
    count = 0

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if count > _MAX_ELEMENTS or len(stack) >= _MAX_DEPTH:
            raise PushError("data_too_large", "data is too deep or has too many elements")
        local = name.rsplit(" ", 1)[-1]
        if not root:
            root.append(local)
        if stack:
            stack[-1][2][0] = True
        stack.append((local, [], [False]))

    def end(_name: str) -> None:
        local, parts, has_child = stack.pop()
        if not has_child[0] and local not in fields and len(fields) < _MAX_FIELDS:
            fields[local] = "".join(parts).strip()

    def chars(data: str) -> None:
        if stack:
            stack[-1][1].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as exc:
        raise PushError("malformed_xml", f"data is not well-formed XML: {exc}") from None
    if not root:
        raise PushError("malformed_xml", "data has no element")
    return root[0], fields


def _parse_data_text(text: str) -> tuple[str | None, dict[str, str]]:
    stripped = text.lstrip()
    if stripped.startswith("{"):
        if len(text.encode("utf-8")) > MAX_DATA_BYTES:
            raise PushError("data_too_large", "data is too large")
        try:
            decoded = msgspec.json.decode(stripped)
        except msgspec.DecodeError:
            raise PushError("malformed_data", "data is not valid JSON") from None
        if not isinstance(decoded, dict):
            raise PushError("malformed_data", "data is not an object")
        return None, _flatten_json(decoded)
    return parse_xml_data(text)


def _flatten_json(data: Mapping[object, object]) -> dict[str, str]:
    fields: dict[str, str] = {}

    def walk(node: object, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise PushError("data_too_large", "data is too deep")
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(value, Mapping | list):
                    walk(value, depth + 1)
                elif value is not None and str(key) not in fields:
                    if len(fields) >= _MAX_FIELDS:
                        raise PushError("data_too_large", "data has too many fields")
                    fields[str(key)] = _scalar_text(value)
        elif isinstance(node, list):
            for item in node:
                walk(item, depth + 1)

    walk(data, 0)
    return fields


def _scalar_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _build(
    event_id: object,
    event_type: object,
    timestamp: object,
    fields: dict[str, str],
    kind: str | None,
) -> PushEvent:
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id.strip()):
        _fail("bad_event_id", "eventId is missing or malformed")
    if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type.strip()):
        _fail("bad_event_type", "eventType is missing or malformed")
    if not isinstance(timestamp, str):
        _fail("bad_timestamp", "timestamp is missing")
    try:
        sent_at = parse_platform_datetime(timestamp)
    except ValueError:
        _fail("bad_timestamp", "timestamp is not a date")
    iccid = next((v for k, v in fields.items() if k.lower() == "iccid"), None)
    if iccid is None or not _ICCID.fullmatch(iccid.strip()):
        _fail("missing_iccid", "data does not name a valid iccid")
    return PushEvent(
        event_id=event_id.strip(),
        event_type=event_type.strip().upper(),
        timestamp=sent_at,
        iccid=iccid.strip(),
        data=fields,
        data_kind=kind,
        raw_timestamp=timestamp,
    )


def _fail(code: str, message: str) -> NoReturn:
    raise PushError(code, message)
