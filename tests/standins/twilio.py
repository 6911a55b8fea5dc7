"""A recording stand-in for Twilio's Messages API, for tests that must read what was sent.

Follows Twilio's documented wire format (INTEGRATIONS.md §4; the official OpenAPI spec in
`../shared/peers/twilio/`), written independently of `app.notifications`:

- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP Basic auth
  `AccountSid:AuthToken` → **201** with a Message resource (`sid` = `SM` + 32 hex,
  `status: queued`, RFC 2822 dates);
- `GET` of the same path (`To`, `From`, `PageSize`) → the accepted messages, newest first;
- errors as Twilio sends them: `{code, message, more_info, status}`: 20003 (authentication),
  21604 (`To` missing), 21603 (`From`/`MessagingServiceSid` missing), 21602 (`Body` missing),
  21211 (invalid `To`), 21610 (recipient unsubscribed, i.e. replied STOP), 20429 (429).

Faults are injectable: `fail_next(n, status=…, code=…)`, `opted_out` numbers (21610) and
`delay_s` (slow answers, for timeouts). Every request is kept in `requests`, every
accepted message in `messages`; `last_code(to)` reads the latest 6-digit code sent.

It is a plain ASGI app; `serve(standin)` runs it on a real TCP port (aiohttp), since
Twilio's async client speaks HTTP through aiohttp. Stand-alone:
`python -m tests.standins.twilio --port 4030`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

import msgspec
from aiohttp import web

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "standin-auth-token"
FROM = "+15005550006"
_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC[0-9a-fA-F]{32})/Messages\.json$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_CODE = re.compile(r"\b([0-9]{6})\b")

ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    21211: (400, "Invalid 'To' Phone Number"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
}


class RecordedRequest(msgspec.Struct):
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    status: int = 0


class Fault(msgspec.Struct):
    status: int
    code: int


class TwilioStandIn:
    def __init__(self, *, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.requests: list[RecordedRequest] = []
        self.messages: list[dict[str, Any]] = []
        self.opted_out: set[str] = set()
        self.delay_s = 0.0
        self.url = ""  # set by whoever serves it
        self._faults: deque[Fault] = deque()

    # --- test controls ---------------------------------------------------------------

    def fail_next(self, n: int = 1, *, status: int = 500, code: int | None = None) -> None:
        """The next `n` message requests fail with `status` (and Twilio error `code`)."""
        default = {429: 20429, 500: 20500, 503: 20500}.get(status, 20500)
        for _ in range(n):
            self._faults.append(Fault(status=status, code=code or default))

    def sent_to(self, to: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == to]

    def last_code(self, to: str) -> str:
        for message in reversed(self.messages):
            if message["to"] == to:
                match = _CODE.search(message["body"])
                if match:
                    return match.group(1)
        raise LookupError(f"no code was sent to {to}")

    # --- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        recorded = RecordedRequest(scope["method"], scope["path"], headers, form)
        self.requests.append(recorded)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        query = {
            k: v[-1]
            for k, v in parse_qs(
                scope.get("query_string", b"").decode(), keep_blank_values=True
            ).items()
        }
        status, payload = self._handle(scope["method"], scope["path"], headers, form, query)
        recorded.status = status
        raw = msgspec.json.encode(payload)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(raw)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    def _handle(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        form: dict[str, str],
        query: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        match = _PATH.match(path)
        if match is None or method not in ("POST", "GET"):
            return _error(20404)
        if not self._authorised(headers.get("authorization", ""), match.group("sid")):
            return _error(20003)
        if method == "GET":
            return 200, self._list(match.group("sid"), query)
        if self._faults:
            fault = self._faults.popleft()
            return fault.status, _error_body(fault.code, fault.status)
        to = form.get("To", "")
        if not to:
            return _error(21604)
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return _error(21603)
        if not form.get("Body") and not form.get("MediaUrl"):
            return _error(21602)
        if not _E164.match(to):
            return _error(21211)
        if to in self.opted_out:
            return _error(21610)
        return 201, self._accept(match.group("sid"), form)

    def _list(self, account_sid: str, query: dict[str, str] | None) -> dict[str, Any]:
        """`GET …/Messages.json?To=&From=&PageSize=`: the accepted messages, newest first."""
        q = query or {}
        size = int(q.get("PageSize", "50") or 50)
        found = [
            {k: v for k, v in m.items() if k != "form"}
            for m in reversed(self.messages)
            if m["account_sid"] == account_sid
            and ("To" not in q or m["to"] == q["To"])
            and ("From" not in q or m["from"] == q["From"])
        ][:size]
        uri = f"/2010-04-01/Accounts/{account_sid}/Messages.json?PageSize={size}&Page=0"
        return {
            "messages": found,
            "end": max(0, len(found) - 1),
            "first_page_uri": uri,
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "start": 0,
            "uri": uri,
        }

    def _authorised(self, header: str, path_sid: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid == path_sid and password == self.auth_token

    def _accept(self, account_sid: str, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC), usegmt=False).replace("-0000", "+0000")
        uri = f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"
        message = {
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": form["To"],
            "uri": uri,
        }
        self.messages.append({**message, "form": dict(form)})
        return message


def _error_body(code: int, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": ERRORS.get(code, (status, "Error"))[1],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _error(code: int) -> tuple[int, dict[str, Any]]:
    status = ERRORS[code][0]
    return status, _error_body(code, status)


# --- serving an ASGI app on a real port ------------------------------------------------


def _aiohttp_adapter(app: Any) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": request.path,
            "raw_path": request.raw_path.encode(),
            "query_string": request.query_string.encode(),
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in request.headers.items()
            ],
            "client": (request.remote or "", 0),
        }
        sent = False
        response: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # no disconnects to report here
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                response["body"] += message.get("body", b"")

        await app(scope, receive, send)
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in response["headers"]
            if k.lower() != b"content-length"
        }
        return web.Response(status=response["status"], headers=headers, body=response["body"])

    return handle


@asynccontextmanager
async def serve(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app over HTTP on `host:port` (0 = a free port); yields the base URL."""
    web_app = web.Application()
    web_app.router.add_route("*", "/{tail:.*}", _aiohttp_adapter(app))
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        bound = runner.addresses[0][1]
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4030)
    args = parser.parse_args(argv)
    standin = TwilioStandIn()

    async def run() -> None:
        async with serve(standin, args.host, args.port) as url:
            print(f"Twilio stand-in on {url} (account {standin.account_sid})", flush=True)
            await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
