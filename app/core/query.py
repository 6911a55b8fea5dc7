"""Query strings parsed straight into a msgspec Struct, for hot routes.

Litestar's per-parameter extraction costs more than the whole of a nearby search, so such
routes take the raw query string instead: `parse_query(request, Params)` decodes it (the
first value of each name wins, empty values count as absent, unknown names are ignored)
and converts it with msgspec in lax mode ("12.5" → float, "true"/"1" → bool, enums by
value), honouring the Struct's `Meta` bounds. Failures raise the same 422
`validation_failed` problem as Litestar's own validation. Document the parameters with
`app.core.openapi.query_operation(Params)`.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import parse_qsl

import msgspec
from litestar import Request

from app.core.errors import FieldError, ValidationFailed

T = TypeVar("T", bound=msgspec.Struct)


def query_dict(raw: bytes) -> dict[str, str]:
    if not raw:
        return {}
    out: dict[str, str] = {}
    if b"%" in raw or b"+" in raw:
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True, encoding="utf-8")
    else:
        pairs = [
            (k, v)
            for k, _, v in (p.partition("=") for p in raw.decode("utf-8", "replace").split("&"))
        ]
    for k, v in pairs:
        if v and k not in out:
            out[k] = v
    return out


def parse_query(request: Request[Any, Any, Any], params: type[T]) -> T:
    try:
        return msgspec.convert(query_dict(request.scope["query_string"]), params, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = message.rsplit(" - at `$.", 1)[-1].rstrip("`") if " - at `$." in message else ""
        if not field and "required field `" in message:
            field = message.split("required field `", 1)[1].split("`", 1)[0]
        raise ValidationFailed(
            f"{field or 'query'}: {message}",
            errors=[FieldError(field=field or "query", message=message.split(" - at ")[0])],
        ) from None


class JSONBody:
    """A pre-encoded JSON 200 response as a bare ASGI app: a handler annotated to return
    it skips Litestar's Response/ASGIResponse machinery (header encoding, ~10 µs), which
    the hottest route does not need. Document the body with `responses={200: …}`."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(self.body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.body})
