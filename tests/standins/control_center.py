"""A stand-in for Cisco IoT Control Center: REST API with paging, and a push sender.

Follows the documented formats (INTEGRATIONS.md §2; developer.cisco.com/docs/control-center):

- `GET /rws/api/v1/devices?modifiedSince=&status=&pageSize=&pageNumber=` →
  `{devices: [{iccid, status, ratePlan, communicationPlan}], pageNumber, lastPage}`, oldest
  change first, `pageNumber` from 1, `pageSize` ≤ 50 (raise `max_page_size` for benches);
- `GET /rws/api/v1/devices/{iccid}`, `/sessionInfo`, `/ctdUsages`;
- HTTP Basic `username:apiKey`, errors as `{errorMessage, errorCode}`; dates in the
  platform's style `2016-06-29 00:29:04.271+0000`.

Only `10000001` (invalid credentials, 401) is a documented error code; the other codes here
are placeholders. Faults are injectable: `fail_next(n, status)` and `down`. A small control
API under `/_standin/` lets another process (demo, bench) change devices, inject faults and
send pushes. Run it alone with
`python -m tests.standins.control_center --port 4020 --devices 100000`.

`make run`'s demo mode runs it as the platform of the demo fleet (`--sims FILE` with the
demo chargers' SIMs, `--push-url`): every `--dropout-every` seconds a few SIMs are
deactivated (a signed SIM_STATE_CHANGE push) and activated again `--dropout-for` later.

Everything is written from the documentation, independently of `app.connectivity`, so the
client is tested against the contract rather than against itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import hashlib
import hmac
import itertools
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode
from xml.sax.saxutils import escape

import httpx
import msgspec

API_PREFIX = "/rws/api/v1"
JASPER_NS = "http://api.jasperwireless.com/ws/schema"
DOCUMENTED_MAX_PAGE_SIZE = 50

ERR_CREDENTIALS = "10000001"  # documented: "Invalid credentials."
ERR_BAD_REQUEST = "10000024"  # placeholder
ERR_NOT_FOUND = "10000011"  # placeholder
ERR_RATE_LIMIT = "10000035"  # placeholder
ERR_UNAVAILABLE = "10000030"  # placeholder

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def luhn_digit(digits: str) -> str:
    """The Luhn check digit for `digits` (ICCIDs and IMEIs end with one)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def make_iccid(n: int) -> str:
    body = f"894450{n:013d}"
    return body + luhn_digit(body)


def make_imei(n: int) -> str:
    body = f"35362711{n % 1_000_000:06d}"
    return body + luhn_digit(body)


def platform_date(ts: float | None) -> str | None:
    """`2016-06-29 00:29:04.271+0000` from an epoch timestamp."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


def sign(secret: bytes, timestamp: str) -> str:
    """signature2 = base64(HMAC-SHA256(secret, timestamp))."""
    return base64.b64encode(hmac.new(secret, timestamp.encode(), hashlib.sha256).digest()).decode()


class SimRecord(msgspec.Struct, kw_only=True):
    iccid: str
    imsi: str
    msisdn: str
    imei: str | None
    status: str = "ACTIVATED"
    rate_plan: str = "EV-Charger-1GB"
    communication_plan: str = "EV-Charger-Data"
    account_id: str = "100020620"
    date_added: float = 0.0
    date_activated: float | None = None
    modified: float = 0.0
    seq: int = 0
    previous_status: str | None = None
    previous_imei: str | None = None
    session_started: float | None = None
    session_ended: float | None = None
    ip_address: str | None = None
    ctd_data_usage: int = 0
    ctd_sms_usage: int = 0
    ctd_session_count: int = 0
    overage_limit_reached: bool = False
    summary: bytes | None = None

    def key(self) -> tuple[float, int, str]:
        return (self.modified, self.seq, self.iccid)


class Fault(msgspec.Struct, kw_only=True):
    status: int
    retry_after: str | None = None


class ControlCenterStandIn:
    """ASGI app and in-memory SIM store."""

    def __init__(
        self,
        *,
        username: str = "voltway",
        api_key: str = "test-api-key",
        max_page_size: int = DOCUMENTED_MAX_PAGE_SIZE,
        push_secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.username = username
        self.api_key = api_key
        self.max_page_size = max_page_size
        self.push_secret = push_secret
        self.clock = clock
        self.devices: dict[str, SimRecord] = {}
        self._order: list[tuple[float, int, str]] = []
        self._seq = itertools.count(1)
        self._serial = itertools.count(1)
        self._last_modified = 0.0
        self._faults: deque[Fault] = deque()
        self.down = False
        self.latency_s = 0.0
        self.request_count = 0
        self.requests: deque[str] = deque(maxlen=10_000)
        self.pushes_sent = 0
        self.on_startup: list[Callable[[], Awaitable[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._auth = "Basic " + base64.b64encode(f"{username}:{api_key}".encode()).decode()

    # -- store -----------------------------------------------------------------------------

    def _now(self) -> float:
        # Modification times never go backwards, so appending keeps `_order` sorted.
        self._last_modified = max(self._last_modified, self.clock())
        return self._last_modified

    def _touch(self, rec: SimRecord) -> None:
        if rec.seq:
            i = bisect.bisect_left(self._order, rec.key())
            if i < len(self._order) and self._order[i] == rec.key():
                del self._order[i]
        rec.modified = self._now()
        rec.seq = next(self._seq)
        rec.summary = None
        self._order.append(rec.key())

    def add_device(
        self,
        iccid: str | None = None,
        *,
        imei: str | None = None,
        status: str = "ACTIVATED",
        session_open: bool = True,
    ) -> str:
        n = next(self._serial)
        now = self.clock()
        rec = SimRecord(
            iccid=iccid or make_iccid(n),
            imsi=f"23450{n:010d}",
            msisdn=f"4477{n % 100_000_000:08d}",
            imei=imei if imei is not None else make_imei(n),
            status=status,
            date_added=now,
            date_activated=now if status == "ACTIVATED" else None,
            session_started=now if session_open else None,
            ip_address=f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}" if session_open else None,
            ctd_session_count=1 if session_open else 0,
        )
        if rec.iccid in self.devices:
            raise ValueError(f"{rec.iccid} exists")
        self.devices[rec.iccid] = rec
        self._touch(rec)
        return rec.iccid

    def add_devices(self, n: int, *, status: str = "ACTIVATED") -> list[str]:
        return [self.add_device(status=status) for _ in range(n)]

    def get(self, iccid: str) -> SimRecord:
        return self.devices[iccid]

    def set_status(self, iccid: str, status: str) -> None:
        rec = self.devices[iccid]
        rec.previous_status, rec.status = rec.status, status
        if status == "ACTIVATED" and rec.date_activated is None:
            rec.date_activated = self.clock()
        self._touch(rec)

    def change_imei(self, iccid: str, imei: str | None = None) -> str:
        """The SIM now sits in another device; returns the new IMEI."""
        rec = self.devices[iccid]
        new = imei or make_imei(next(self._serial) + 500_000)
        rec.previous_imei, rec.imei = rec.imei, new
        self._touch(rec)
        return new

    def set_rate_plan(self, iccid: str, rate_plan: str) -> None:
        rec = self.devices[iccid]
        rec.rate_plan = rate_plan
        self._touch(rec)

    def start_session(self, iccid: str) -> None:
        # Sessions are not device edits: they do not move the device in `modifiedSince`.
        rec = self.devices[iccid]
        rec.session_started, rec.session_ended = self.clock(), None
        rec.ip_address = rec.ip_address or "10.200.0.1"
        rec.ctd_session_count += 1

    def end_session(self, iccid: str, at: float | None = None) -> None:
        rec = self.devices[iccid]
        if rec.session_started is None:
            rec.session_started = at if at is not None else self.clock()
        rec.session_ended = at if at is not None else self.clock()

    def set_usage(
        self, iccid: str, *, data_bytes: int | None = None, overage: bool | None = None
    ) -> None:
        rec = self.devices[iccid]
        if data_bytes is not None:
            rec.ctd_data_usage = data_bytes
        if overage is not None:
            rec.overage_limit_reached = overage

    # -- faults ----------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 429, *, retry_after: str | None = None) -> None:
        """The next `n` API requests answer `status` (with Retry-After if given)."""
        self._faults.extend(Fault(status=status, retry_after=retry_after) for _ in range(n))

    def clear_faults(self) -> None:
        self._faults.clear()
        self.down = False

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    for start in self.on_startup:
                        task = asyncio.ensure_future(start())
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    for task in list(self._tasks):
                        task.cancel()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path.startswith("/_standin/"):
            body = await _read_body(receive)
            status, payload = await self._control(method, path, body)
            await _send_json(send, status, payload)
            return
        if not path.startswith(API_PREFIX + "/"):
            await _send_json(send, 404, _err("Not found", ERR_NOT_FOUND))
            return
        self.request_count += 1
        qs = scope.get("query_string", b"").decode("latin-1")
        self.requests.append(f"{method} {path}?{qs}" if qs else f"{method} {path}")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.down:
            await _send_json(send, 503, _err("Service unavailable", ERR_UNAVAILABLE))
            return
        if self._faults:
            fault = self._faults.popleft()
            extra = [(b"retry-after", fault.retry_after.encode())] if fault.retry_after else []
            code = ERR_RATE_LIMIT if fault.status == 429 else ERR_UNAVAILABLE
            await _send_json(send, fault.status, _err("Injected fault", code), extra)
            return
        if not hmac.compare_digest(headers.get("authorization", ""), self._auth):
            await _send_json(send, 401, _err("Invalid credentials.", ERR_CREDENTIALS))
            return
        if method != "GET":
            await _send_json(send, 405, _err("Method not allowed", ERR_BAD_REQUEST))
            return
        status, raw = self._api(path[len(API_PREFIX) :], query)
        await _send_raw(send, status, raw)

    def _api(self, path: str, query: Mapping[str, list[str]]) -> tuple[int, bytes]:
        parts = [p for p in path.split("/") if p]
        if parts == ["devices"]:
            return self._search(query)
        if len(parts) in (2, 3) and parts[0] == "devices":
            rec = self.devices.get(parts[1])
            if rec is None:
                return 404, _enc(_err("Resource not found - ICCID", ERR_NOT_FOUND))
            if len(parts) == 2:
                return 200, _enc(self._device_json(rec))
            if parts[2] == "sessionInfo":
                return 200, _enc(self._session_json(rec))
            if parts[2] == "ctdUsages":
                return 200, _enc(self._ctd_json(rec))
        return 404, _enc(_err("Not found", ERR_NOT_FOUND))

    def _search(self, query: Mapping[str, list[str]]) -> tuple[int, bytes]:
        try:
            since_raw = query["modifiedSince"][0]
            since = datetime.fromisoformat(since_raw)
        except (KeyError, IndexError, ValueError):
            return 400, _enc(_err("modifiedSince is required (ISO 8601)", ERR_BAD_REQUEST))
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        try:
            size = int(query.get("pageSize", ["50"])[0])
            number = int(query.get("pageNumber", ["1"])[0])
        except ValueError:
            return 400, _enc(_err("pageSize and pageNumber are integers", ERR_BAD_REQUEST))
        if not 1 <= size <= self.max_page_size:
            return 400, _enc(_err(f"pageSize must be 1..{self.max_page_size}", ERR_BAD_REQUEST))
        if number < 1:
            return 400, _enc(_err("pageNumber starts at 1", ERR_BAD_REQUEST))
        status_filter = query.get("status", [None])[0]
        start = bisect.bisect_left(self._order, (since.timestamp(),))
        if status_filter is None:
            window = self._order[start + (number - 1) * size : start + number * size]
            last = start + number * size >= len(self._order)
            recs: Iterable[SimRecord] = (self.devices[k[2]] for k in window)
        else:
            matching = [
                self.devices[k[2]]
                for k in self._order[start:]
                if self.devices[k[2]].status == status_filter
            ]
            recs = matching[(number - 1) * size : number * size]
            last = number * size >= len(matching)
        items = []
        for rec in recs:
            if rec.summary is None:
                rec.summary = _enc(
                    {
                        "iccid": rec.iccid,
                        "status": rec.status,
                        "ratePlan": rec.rate_plan,
                        "communicationPlan": rec.communication_plan,
                    }
                )
            items.append(rec.summary)
        body = (
            b'{"devices":['
            + b",".join(items)
            + b'],"pageNumber":'
            + str(number).encode()
            + b',"lastPage":'
            + (b"true" if last else b"false")
            + b"}"
        )
        return 200, body

    def _device_json(self, rec: SimRecord) -> dict[str, Any]:
        return {
            "iccid": rec.iccid,
            "imsi": rec.imsi,
            "msisdn": rec.msisdn,
            "imei": rec.imei,
            "status": rec.status,
            "ratePlan": rec.rate_plan,
            "communicationPlan": rec.communication_plan,
            "customer": None,
            "endConsumerId": None,
            "dateActivated": platform_date(rec.date_activated),
            "dateUpdated": platform_date(rec.modified),
            "dateShipped": platform_date(rec.date_added),
            "accountId": rec.account_id,
            "fixedIPAddress": None,
            "fixedIpv6Address": None,
            "operatorCustom1": "",
            "accountCustom1": "",
            "simNotes": None,
            "deviceID": None,
            "modemID": None,
            "globalSimType": "",
        }

    def _session_json(self, rec: SimRecord) -> dict[str, Any]:
        return {
            "iccid": rec.iccid,
            "ipAddress": rec.ip_address,
            "dateSessionStarted": platform_date(rec.session_started),
            "dateSessionEnded": platform_date(rec.session_ended),
        }

    def _ctd_json(self, rec: SimRecord) -> dict[str, Any]:
        return {
            "iccid": rec.iccid,
            "imsi": rec.imsi,
            "msisdn": rec.msisdn,
            "imei": rec.imei,
            "status": rec.status,
            "ratePlan": rec.rate_plan,
            "communicationPlan": rec.communication_plan,
            "ctdDataUsage": rec.ctd_data_usage,
            "ctdSMSUsage": rec.ctd_sms_usage,
            "ctdVoiceUsage": 0,
            "ctdSessionCount": rec.ctd_session_count,
            "overageLimitReached": rec.overage_limit_reached,
            "overageLimitOverride": "DEFAULT",
        }

    # -- control API (demo, bench) ------------------------------------------------------------

    async def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        try:
            args: dict[str, Any] = msgspec.json.decode(body) if body else {}
        except msgspec.DecodeError:
            return 400, {"error": "body is not JSON"}
        parts = [p for p in path.split("/") if p][1:]
        try:
            if method == "GET" and parts == ["stats"]:
                return 200, {
                    "devices": len(self.devices),
                    "requests": self.request_count,
                    "pushes_sent": self.pushes_sent,
                    "down": self.down,
                    "pending_faults": len(self._faults),
                }
            if method == "POST" and parts == ["devices"]:
                return 200, {"iccids": self.add_devices(int(args.get("count", 1)))}
            if method == "POST" and len(parts) == 2 and parts[0] == "devices":
                return 200, self._control_device(parts[1], args)
            if method == "POST" and parts == ["faults"]:
                if "down" in args:
                    self.down = bool(args["down"])
                if "count" in args:
                    self.fail_next(
                        int(args["count"]),
                        int(args.get("status", 429)),
                        retry_after=args.get("retry_after"),
                    )
                if args.get("clear"):
                    self.clear_faults()
                return 200, {"down": self.down, "pending_faults": len(self._faults)}
            if method == "POST" and parts == ["push"]:
                secret = args.get("secret")
                response = await self.send_push(
                    str(args["url"]),
                    str(args["event_type"]),
                    str(args["iccid"]),
                    secret=secret.encode() if isinstance(secret, str) else None,
                    variant=str(args.get("variant", "form")),
                )
                return 200, {"status": response.status_code}
        except KeyError as exc:
            return 404, {"error": f"unknown {exc}"}
        except (TypeError, ValueError, httpx.HTTPError) as exc:
            return 400, {"error": str(exc)}
        return 404, {"error": "no such control route"}

    def _control_device(self, iccid: str, args: Mapping[str, Any]) -> dict[str, Any]:
        rec = self.devices[iccid]
        if "status" in args:
            self.set_status(iccid, str(args["status"]))
        if "imei" in args:
            self.change_imei(iccid, args["imei"] or None)
        if args.get("session") == "start":
            self.start_session(iccid)
        elif args.get("session") == "end":
            self.end_session(iccid)
        if "data_bytes" in args or "overage" in args:
            self.set_usage(iccid, data_bytes=args.get("data_bytes"), overage=args.get("overage"))
        return self._device_json(rec)

    # -- push ------------------------------------------------------------------------------

    def push_fields(self, event_type: str, iccid: str) -> dict[str, str]:
        """Data fields for an event about `iccid`, from the store when it knows the SIM."""
        rec = self.devices.get(iccid)
        fields: dict[str, str] = {"iccid": iccid}
        if rec is None:
            return fields
        now = platform_date(self.clock()) or ""
        if event_type == "SIM_STATE_CHANGE":
            fields |= {
                "previousState": rec.previous_status or "",
                "currentState": rec.status,
                "dateChanged": now,
            }
        elif event_type == "IMEI_CHANGE":
            fields |= {
                "previousImei": rec.previous_imei or "",
                "newImei": rec.imei or "",
                "dateChanged": now,
            }
        elif event_type in ("SESSION_START", "SESSION_STOP"):
            fields |= {
                "ipAddress": rec.ip_address or "",
                "dateSessionStarted": platform_date(rec.session_started) or "",
                "dateSessionEnded": platform_date(rec.session_ended) or "",
            }
        elif event_type in ("CTD_SESSION_USAGE_EXCEEDED", "PAST24H_DATA_USAGE_EXCEEDED"):
            fields |= {"dataUsage": str(rec.ctd_data_usage), "ratePlan": rec.rate_plan}
        return fields

    async def send_push(
        self,
        url: str,
        event_type: str,
        iccid: str,
        *,
        secret: bytes | None = None,
        variant: str = "form",
        event_id: str | None = None,
        timestamp: str | None = None,
        fields: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> httpx.Response:
        """Deliver one push event to `url`, signed like the platform does."""
        key = secret if secret is not None else self.push_secret
        if key is None:
            raise ValueError("no push secret")
        data = self.push_fields(event_type, iccid)
        if fields:
            data |= dict(fields)
        response = await send_push(
            url,
            event_type,
            iccid,
            secret=key,
            variant=variant,
            event_id=event_id,
            timestamp=timestamp or platform_date(self.clock()),
            fields=data,
            transport=transport,
        )
        self.pushes_sent += 1
        return response


_XML_ROOTS = {
    "SIM_STATE_CHANGE": "SimStateChange",
    "IMEI_CHANGE": "ImeiChange",
    "SESSION_START": "Session",
    "SESSION_STOP": "Session",
    "CTD_SESSION_USAGE_EXCEEDED": "DataUsage",
    "PAST24H_DATA_USAGE_EXCEEDED": "DataUsage",
}


def push_data_xml(event_type: str, fields: Mapping[str, str]) -> str:
    root = _XML_ROOTS.get(event_type, "Event")
    inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{JASPER_NS}">{inner}</{root}>'


def build_push(
    event_type: str,
    iccid: str,
    *,
    secret: bytes,
    variant: str = "form",
    event_id: str | None = None,
    timestamp: str | None = None,
    fields: Mapping[str, str] | None = None,
) -> tuple[str, bytes]:
    """(content type, body) of a signed push event."""
    ts = timestamp or platform_date(time.time()) or ""
    data = {"iccid": iccid, **(fields or {})}
    envelope: dict[str, Any] = {
        "eventId": event_id or f"{event_type}-{uuid.uuid4().hex}",
        "eventType": event_type,
        "timestamp": ts,
        "signature2": sign(secret, ts),
    }
    if variant == "form":
        envelope["data"] = push_data_xml(event_type, data)
        return "application/x-www-form-urlencoded", urlencode(envelope).encode()
    if variant == "json":
        envelope["data"] = data
        return "application/json", msgspec.json.encode(envelope)
    raise ValueError(f"unknown variant {variant!r}")


async def send_push(
    url: str,
    event_type: str,
    iccid: str,
    *,
    secret: bytes,
    variant: str = "form",
    event_id: str | None = None,
    timestamp: str | None = None,
    fields: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.Response:
    """POST one signed push event to `url` (no store needed)."""
    content_type, body = build_push(
        event_type,
        iccid,
        secret=secret,
        variant=variant,
        event_id=event_id,
        timestamp=timestamp,
        fields=fields,
    )
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:
        return await client.post(url, content=body, headers={"Content-Type": content_type})


class Dropouts:
    """Demo drop-outs: every `every_s` a few SIMs go DEACTIVATED (the platform pushes a
    SIM_STATE_CHANGE) and come back ACTIVATED `down_s` later. The SIM store changes too,
    so the service's sweep sees the same thing."""

    def __init__(
        self,
        cc: ControlCenterStandIn,
        push_url: str,
        names: Mapping[str, str],
        *,
        every_s: float = 60.0,
        count: int = 3,
        down_s: float = 30.0,
        seed: int | None = None,
    ) -> None:
        self.cc, self.push_url, self.names = cc, push_url, dict(names)
        self.every_s, self.count, self.down_s = every_s, count, down_s
        self.rng = random.Random(seed)

    async def _push(self, iccid: str, status: str) -> None:
        self.cc.set_status(iccid, status)
        try:
            r = await self.cc.send_push(self.push_url, "SIM_STATE_CHANGE", iccid)
            outcome = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            outcome = f"not delivered ({exc!r})"
        name = self.names.get(iccid, iccid)
        print(f"platform: {name} SIM {status} (push {outcome})", flush=True)

    async def run(self) -> None:
        pool = sorted(self.names)
        while True:
            await asyncio.sleep(self.every_s)
            picks = self.rng.sample(pool, min(self.count, len(pool)))
            for iccid in picks:
                await self._push(iccid, "DEACTIVATED")
            await asyncio.sleep(self.down_s)
            for iccid in picks:
                await self._push(iccid, "ACTIVATED")


def _err(message: str, code: str) -> dict[str, str]:
    return {"errorMessage": message, "errorCode": code}


def _enc(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


async def _read_body(receive: Receive, limit: int = 1 << 20) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ValueError("body too large")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_raw(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(
    send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send_raw(send, status, _enc(payload), extra)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Control Center stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4020)
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--username", default=os.environ.get("CONTROL_CENTER_USERNAME", "voltway"))
    parser.add_argument(
        "--api-key", default=os.environ.get("CONTROL_CENTER_API_KEY", "test-api-key")
    )
    parser.add_argument("--push-secret", default=os.environ.get("CONTROL_CENTER_PUSH_SECRET", ""))
    parser.add_argument(
        "--max-page-size",
        type=int,
        default=DOCUMENTED_MAX_PAGE_SIZE,
        help="largest pageSize accepted (the real platform: 50)",
    )
    parser.add_argument(
        "--sims", help="JSON file [{iccid, charge_point_id}]: devices with these ICCIDs"
    )
    parser.add_argument("--push-url", default="", help="where pushes go (demo drop-outs)")
    parser.add_argument("--dropout-every", type=float, default=0.0, help="seconds; 0 = off")
    parser.add_argument("--dropout-count", type=int, default=3)
    parser.add_argument("--dropout-for", type=float, default=30.0, help="seconds down")
    args = parser.parse_args(argv)

    import uvicorn  # only for the stand-alone process

    app = ControlCenterStandIn(
        username=args.username,
        api_key=args.api_key,
        max_page_size=args.max_page_size,
        push_secret=args.push_secret.encode() or None,
    )
    started = time.perf_counter()
    app.add_devices(args.devices)
    names: dict[str, str] = {}
    if args.sims:
        with open(args.sims, "rb") as f:
            for sim in msgspec.json.decode(f.read()):
                app.add_device(sim["iccid"])
                names[sim["iccid"]] = sim.get("charge_point_id") or sim["iccid"]
    if args.dropout_every > 0 and args.push_url and names and app.push_secret:
        dropouts = Dropouts(
            app,
            args.push_url,
            names,
            every_s=args.dropout_every,
            count=args.dropout_count,
            down_s=args.dropout_for,
        )
        app.on_startup.append(dropouts.run)
    print(
        f"control center stand-in on http://{args.host}:{args.port}{API_PREFIX} "
        f"({len(app.devices)} devices in {time.perf_counter() - started:.1f}s, "
        f"max pageSize {args.max_page_size})",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
