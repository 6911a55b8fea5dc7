"""`Idempotency-Key` for every mutating call: the first response is stored and replayed.

Pure ASGI middleware over a PostgreSQL table, so it holds across API worker processes:
- the first request with a key claims it (INSERT … ON CONFLICT DO NOTHING) and runs;
- concurrent requests with the same key wait for that response, then replay it;
- the same key with a different request (method, path, query or body) → 422;
- a 5xx answer releases the key so the client may retry.
The scope of a key is the caller's credentials (a hash of the Authorization header), so
two clients never see each other's responses.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import asyncpg
import msgspec

from app.core.errors import TYPE_BASE, FieldError, Problem
from app.core.settings import Settings

# Raw ASGI types are dicts here; Litestar's TypedDict unions add nothing but casts.
ASGIApp = Any
Message = dict[str, Any]
Receive = Any
Scope = dict[str, Any]
Send = Any


MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXCLUDED_PREFIXES = ("/webhooks/", "/ocpp/")
MAX_KEY_LEN = 255


def _problem(status: int, code: str, title: str, detail: str) -> tuple[int, list[Any], bytes]:
    body = msgspec.json.encode(
        Problem(
            type=TYPE_BASE + code,
            title=title,
            status=status,
            code=code,
            detail=detail,
            errors=[FieldError(field="Idempotency-Key", message=detail)] if status == 422 else None,
        )
    )
    return status, [(b"content-type", b"application/problem+json")], body


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        key = auth = ""
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                key = value.decode("latin-1").strip()
            elif name == b"authorization":
                auth = value.decode("latin-1")
        if not key or path.startswith(EXCLUDED_PREFIXES):
            await self.app(scope, receive, send)
            return
        if len(key) > MAX_KEY_LEN:
            await _send_raw(
                send,
                *_problem(
                    422,
                    "validation_failed",
                    "The request is not valid",
                    "Idempotency-Key is longer than 255 characters",
                ),
            )
            return

        body = await _read_body(receive)
        state = scope["app"].state
        pool: asyncpg.Pool = state.pool
        settings: Settings = state.settings
        principal = hashlib.sha256(auth.encode()).hexdigest()[:32] if auth else "anonymous"
        key_scope = f"{principal}:{scope['method']}:{path}"
        request_hash = hashlib.sha256(
            b"\0".join(
                [scope["method"].encode(), path.encode(), scope.get("query_string", b""), body]
            )
        ).hexdigest()

        claimed = await pool.fetchval(
            """INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
               ON CONFLICT (scope, key) DO UPDATE
                  SET request_hash = EXCLUDED.request_hash, created_at = now(),
                      status_code = NULL, headers = NULL, body = NULL, completed_at = NULL
                  WHERE idempotency_keys.created_at < now() - make_interval(secs => $4)
               RETURNING true""",
            key_scope,
            key,
            request_hash,
            float(settings.idempotency_ttl_s),
        )
        if not claimed:
            await self._replay(pool, settings, key_scope, key, request_hash, send)
            return

        captured: dict[str, Any] = {"status": 500, "headers": [], "body": bytearray()}

        pending: bytes | None = body

        async def replay_receive() -> Message:
            nonlocal pending
            if pending is not None:
                chunk, pending = pending, None
                return {"type": "http.request", "body": chunk, "more_body": False}
            message: Message = await receive()
            return message

        async def capture_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, replay_receive, capture_send)
        except BaseException:
            await pool.execute(
                "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2", key_scope, key
            )
            raise
        if captured["status"] >= 500:
            await pool.execute(
                "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2", key_scope, key
            )
            return
        headers = [
            [k.decode("latin-1"), v.decode("latin-1")]
            for k, v in captured["headers"]
            if k.lower() not in (b"content-length", b"x-request-id", b"date")
        ]
        await pool.execute(
            """UPDATE idempotency_keys SET status_code = $3, headers = $4, body = $5,
                      completed_at = now() WHERE scope = $1 AND key = $2""",
            key_scope,
            key,
            captured["status"],
            headers,
            bytes(captured["body"]),
        )

    async def _replay(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        key_scope: str,
        key: str,
        request_hash: str,
        send: Send,
    ) -> None:
        deadline = time.monotonic() + settings.idempotency_wait_s
        delay = 0.02
        while True:
            row = await pool.fetchrow(
                """SELECT request_hash, status_code, headers, body FROM idempotency_keys
                   WHERE scope = $1 AND key = $2""",
                key_scope,
                key,
            )
            if row is None:  # the first attempt failed with a 5xx and released the key
                await _send_raw(
                    send,
                    *_problem(
                        409,
                        "idempotency_retry",
                        "Retry the request",
                        "the first request with this key failed; retry",
                    ),
                )
                return
            if row["request_hash"] != request_hash:
                await _send_raw(
                    send,
                    *_problem(
                        422,
                        "idempotency_key_reused",
                        "Idempotency-Key reused",
                        "this Idempotency-Key was used with a different request",
                    ),
                )
                return
            if row["status_code"] is not None:
                headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in row["headers"]]
                headers.append((b"idempotent-replayed", b"true"))
                await _send_raw(send, row["status_code"], headers, row["body"])
                return
            if time.monotonic() > deadline:
                await _send_raw(
                    send,
                    *_problem(
                        409,
                        "idempotency_in_progress",
                        "Request in progress",
                        "a request with this key is still running",
                    ),
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.2)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_raw(send: Send, status: int, headers: list[Any], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
