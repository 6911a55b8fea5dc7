"""Abuse limits and input hygiene for every HTTP request, in one place.

`RequestLimitsMiddleware` (pure ASGI, before anything reads the body) refuses, as RFC 9457
problems and before any handler runs:
- a body larger than the route's limit → 413 `payload_too_large`: at once from
  `Content-Length`, or as soon as the streamed bytes pass it (never buffered first). The
  limit is `settings.request_max_body_bytes` unless the handler's `opt["max_body_bytes"]`
  names another (an int, or the name of a Settings field such as `fleet_import_max_bytes`);
- a query string longer than `request_max_query_bytes` or with more than
  `request_max_query_params` parameters → 422 `validation_failed`;
- a JSON, form or text body that is not UTF-8 → 422;
- a NUL character anywhere in the path, the query string or the body (raw, `%00` in a query
  or form body, the `\\u0000` escape in JSON) → 422. PostgreSQL text cannot hold U+0000, so
  such a value could only ever end as a database error; it is refused at the door instead,
  for every route and every field at once.

`LimitedRequest` is the app's `request_class`: its `json()` (Litestar's JSON body path for
`data:` parameters) answers 422 for a body that is not UTF-8, not JSON, nested deeper than
`MAX_JSON_DEPTH`, or whose JSON types do not match the handler's declared `data` type
(msgspec strict mode, so `"sms_alerts": 0` is not a boolean) instead of the 500 a raw
`UnicodeDecodeError`/`RecursionError` becomes.
"""

from __future__ import annotations

import codecs
from typing import Any

import msgspec
from litestar import Request
from litestar.types import Empty

from app.core.errors import (
    PROBLEM_JSON,
    TYPE_BASE,
    DomainError,
    FieldError,
    Problem,
    ValidationFailed,
    field_from_message,
)
from app.core.settings import Settings

ASGIApp = Any
Message = dict[str, Any]
Receive = Any
Scope = dict[str, Any]
Send = Any

MAX_JSON_DEPTH = 32
_NUL_ESCAPE = b"\\u0000"


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "The body is too large"


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}", errors=[FieldError(field=field, message=message)]
    )


def body_limit(scope: Scope, settings: Settings) -> int:
    """The body limit of the route this request was routed to."""
    handler = scope.get("route_handler")
    wanted = getattr(handler, "opt", {}).get("max_body_bytes") if handler is not None else None
    if isinstance(wanted, int):
        return wanted
    if isinstance(wanted, str):
        value = getattr(settings, wanted)
        assert isinstance(value, int), wanted
        return value
    return settings.request_max_body_bytes


def json_escapes_nul(data: bytes, start: int = 0) -> bool:
    r"""True when `data` holds a JSON `\u0000` escape that really is one (an odd number of
    backslashes before the `u`: `\\u0000` is a backslash followed by the text `u0000`)."""
    at = data.find(_NUL_ESCAPE, start)
    while at >= 0:
        run = 0
        i = at
        while i > 0 and data[i - 1] == 0x5C:  # backslashes before the escape's own one
            run += 1
            i -= 1
        if run % 2 == 0:
            return True
        at = data.find(_NUL_ESCAPE, at + 1)
    return False


class _BodyScanner:
    """Counts streamed body bytes against the limit and looks for NUL in its chunks (with
    a tail carried over so an escape split between chunks is still seen)."""

    __slots__ = ("form", "json", "limit", "seen", "tail", "utf8")

    def __init__(self, limit: int, content_type: bytes) -> None:
        self.limit = limit
        self.seen = 0
        self.tail = b""
        self.form = content_type.startswith(b"application/x-www-form-urlencoded")
        self.json = content_type == b"" or b"json" in content_type
        text = self.json or self.form or content_type.startswith(b"text/")
        self.utf8 = codecs.getincrementaldecoder("utf-8")() if text else None

    def feed(self, chunk: bytes, *, final: bool) -> None:
        self.seen += len(chunk)
        if self.seen > self.limit:
            raise PayloadTooLarge(f"at most {self.limit} bytes")
        if b"\x00" in chunk:
            raise _invalid("body", "NUL characters are not accepted")
        if self.utf8 is not None:  # JSON, forms and CSV are UTF-8 text (RFC 8259 §8.1)
            try:
                self.utf8.decode(chunk, final)
            except UnicodeDecodeError:
                raise _invalid("body", "the body is not valid UTF-8") from None
        window = self.tail + chunk
        if self.form and b"%00" in window:
            raise _invalid("body", "NUL characters are not accepted")
        if self.json and json_escapes_nul(window):
            raise _invalid("body", "NUL characters (\\u0000) are not accepted")
        self.tail = window[-64:]


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class RequestLimitsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and _is_auto_options(scope):
            await _answer_options(scope, send)
            return
        settings: Settings = scope["app"].state.settings
        limit = body_limit(scope, settings)
        try:
            check_request(scope, settings, limit)
        except DomainError as exc:  # answered here, so the access log and metrics see it
            await _send_problem(scope, send, exc)
            return
        content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        scanner = _BodyScanner(limit, content_type)

        async def limited_receive() -> Message:
            message: Message = await receive()
            if message["type"] == "http.request":
                scanner.feed(message.get("body", b""), final=not message.get("more_body"))
            return message

        await self.app(scope, limited_receive, send)


def check_request(scope: Scope, settings: Settings, limit: int) -> None:
    """What can be refused before the body is read: NUL in the path, the query string's
    size and NULs, a declared body size over the limit."""
    if "\x00" in scope["path"]:
        raise _invalid("path", "NUL characters are not accepted")
    query: bytes = scope.get("query_string", b"")
    if query:
        check_query(query, settings)
    length = _header(scope, b"content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"at most {limit} bytes")


async def _send_problem(scope: Scope, send: Send, exc: DomainError) -> None:
    body = msgspec.json.encode(
        Problem(
            type=TYPE_BASE + exc.code,
            title=exc.title,
            status=exc.status,
            code=exc.code,
            detail=exc.detail,
            instance=scope["path"].replace("\x00", "\ufffd"),
            errors=exc.errors,
        )
    )
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _is_auto_options(scope: Scope) -> bool:
    handler = scope.get("route_handler")
    return getattr(getattr(handler, "fn", None), "__name__", "") == "options_handler"


_ALLOW_CACHE: dict[int, dict[str, str]] = {}


async def _answer_options(scope: Scope, send: Send) -> None:
    """OPTIONS without CORS: 204 with `Allow` = every method of the path. (Litestar's own
    answer lists only the methods of the first controller that registered the path, and
    runs that controller's guards first.)"""
    app = scope["app"]
    allow = _ALLOW_CACHE.get(id(app))
    if allow is None:
        methods: dict[str, set[str]] = {}
        for route in app.routes:
            methods.setdefault(route.path_format, set()).update(getattr(route, "methods", ()))
        allow = {path: ", ".join(sorted(m | {"OPTIONS"})) for path, m in methods.items()}
        _ALLOW_CACHE[id(app)] = allow
    value = allow.get(scope.get("path_template", ""), "OPTIONS")
    await send(
        {"type": "http.response.start", "status": 204, "headers": [(b"allow", value.encode())]}
    )
    await send({"type": "http.response.body", "body": b""})


def check_query(query: bytes, settings: Settings) -> None:
    if len(query) > settings.request_max_query_bytes:
        raise _invalid("query", f"at most {settings.request_max_query_bytes} bytes")
    if query.count(b"&") + 1 > settings.request_max_query_params:
        raise _invalid("query", f"at most {settings.request_max_query_params} parameters")
    if b"%00" in query or b"\x00" in query:
        raise _invalid("query", "NUL characters are not accepted")


def json_depth(value: Any) -> int:
    """Nesting depth of decoded JSON (a scalar is 0, `[]` is 1), without recursion."""
    depth = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            depth = max(depth, level + 1)
            stack.extend((v, level + 1) for v in node.values())
        elif isinstance(node, list):
            depth = max(depth, level + 1)
            stack.extend((v, level + 1) for v in node)
    return depth


def decode_json_body(body: bytes, data_type: Any = None) -> Any:
    """A request body as plain JSON values, or `ValidationFailed` (422). With `data_type`
    the body must also match it in msgspec's strict mode (JSON types as declared)."""
    if not body:
        return None
    try:
        value = msgspec.json.decode(body)
    except RecursionError:
        raise _invalid("body", f"JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _invalid("body", f"not valid UTF-8 JSON: {exc}") from None
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and json_depth(value) > (
        MAX_JSON_DEPTH
    ):
        raise _invalid("body", f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
    if data_type is not None:
        try:
            msgspec.json.decode(body, type=data_type, strict=True)
        except msgspec.ValidationError as exc:
            message = str(exc)
            field = field_from_message(message)
            raise ValidationFailed(
                f"{field}: {message}",
                errors=[FieldError(field=field, message=message.split(" - at ")[0])],
            ) from None
        except (TypeError, ValueError):  # a type msgspec cannot decode into: lax path only
            pass
    return value


def _declared_data_type(request: Request[Any, Any, Any]) -> Any:
    handler = request.scope.get("route_handler")
    field = getattr(handler, "parsed_data_field", None)
    annotation = getattr(field, "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    return None


class LimitedRequest(Request[Any, Any, Any]):
    """The app's request class: JSON bodies decoded by `decode_json_body`."""

    async def json(self) -> Any:
        if self._json is Empty:
            cached = self._connection_state.json
            if cached is not Empty:
                self._json = cached
            else:
                body = await self.body()
                self._json = self._connection_state.json = decode_json_body(
                    body, _declared_data_type(self)
                )
        return self._json
