"""`Idempotency-Key` for every mutating call: the first response is stored and replayed.

Pure ASGI middleware over a PostgreSQL table, so it holds across API worker processes.

The first response is stored **in the request's own transaction**. The middleware opens a
transaction for the key, takes the key's advisory lock in it (`pg_try_advisory_xact_lock`),
claims the row, and hands that connection to the handler's `db` dependency (which runs in
a savepoint of it, `app/core/db.py`); when the response is complete it writes the response
into the row and commits once, then sends it. So the handler's effects, the claim and the
stored response commit together or not at all:
- a crash (process killed, connection lost) before the commit leaves nothing: no effect,
  no claim, and the retry runs the request afresh;
- after the commit, the response is there to replay. No key can be left "in progress".
The alternative — committing the handler first and storing the response after, with an
in-progress claim that expires — cannot be made correct: a crash between the two commits
would lose the response of an effect that happened, and once the claim expired the retry
would run the effect a second time.

Concurrent requests with the same key do not hold a connection while they wait: they
find the advisory lock taken, and poll (backing off, up to `idempotency_wait_s`) until the
first one committed (→ replay) or gave up (→ they claim the key themselves); past the wait
→ 409 `idempotency_in_progress`. At most half the pool is held by keyed runs per process
(their handlers may need a connection more); past that a request polls the same way, and
answers 503 after the wait. The same key with another request (method, path, query or
body) → 422 `idempotency_key_reused`. A 5xx answer rolls everything back, so the key is
free for a retry. Keys expire after `idempotency_ttl_s` (purged by `purge_idempotency_keys`).

The scope of a key is the caller's credentials (a hash of the Authorization header), so two
clients never see each other's responses. The body is buffered to hash it, at most
`MAX_BODY_BYTES` (or the route's own `opt["max_body_bytes"]`, e.g. the fleet import's) →
413 `payload_too_large`. A handler that works on connections of its own (the pool) is
outside this guarantee.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import asyncpg
import msgspec

from app.core.db import SHARED_CONNECTION, end_abandoned
from app.core.errors import TYPE_BASE, FieldError, Problem
from app.core.settings import Settings
from app.core.sql import execute, fetch_one, fetch_val

# Raw ASGI types are dicts here; Litestar's TypedDict unions add nothing but casts.
ASGIApp = Any
Message = dict[str, Any]
Receive = Any
Scope = dict[str, Any]
Send = Any

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXCLUDED_PREFIXES = ("/webhooks/", "/ocpp/")
MAX_KEY_LEN = 255
MAX_BODY_BYTES = 1024 * 1024
log = logging.getLogger("app.idempotency")


class StoredResponse(msgspec.Struct, frozen=True):
    request_hash: str
    status_code: int | None
    headers: list[tuple[str, str]] | None
    body: bytes | None


class _BodyTooLarge(Exception):
    pass


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


def body_limit(scope: Scope, settings: Settings) -> int:
    """What this middleware buffers for the route: its `opt["max_body_bytes"]` (an int or
    the name of a Settings field) when it declares one, else MAX_BODY_BYTES."""
    handler = scope.get("route_handler")
    wanted = getattr(handler, "opt", {}).get("max_body_bytes") if handler is not None else None
    if isinstance(wanted, str):
        wanted = getattr(settings, wanted, None)
    return wanted if isinstance(wanted, int) else MAX_BODY_BYTES


# A keyed request holds a pooled connection for its whole run, and its handler may take
# another one (services that run on the pool). Were every connection held by keyed
# requests, their handlers would wait for each other for ever; so at most half the pool
# is held this way per process. A request that finds the bound reached polls like one
# whose key is busy (holding nothing), and past the wait answers 503.
def _runs(state: Any, pool: asyncpg.Pool) -> asyncio.Semaphore:
    gate: asyncio.Semaphore | None = state.get("idempotency_runs")
    if gate is None:
        gate = state.idempotency_runs = asyncio.Semaphore(max(1, pool.get_max_size() // 2))
    return gate


def lock_key(key_scope: str, key: str) -> int:
    """A signed 64-bit advisory lock id for one (scope, key)."""
    digest = hashlib.sha256(f"idempotency\0{key_scope}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


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

        state = scope["app"].state
        pool: asyncpg.Pool = state.pool
        settings: Settings = state.settings
        limit = body_limit(scope, settings)
        try:
            body = await _read_body(receive, limit)
        except _BodyTooLarge:
            await _send_raw(
                send,
                *_problem(
                    413,
                    "payload_too_large",
                    "The body is too large",
                    f"at most {limit} bytes with an Idempotency-Key",
                ),
            )
            return
        principal = hashlib.sha256(auth.encode()).hexdigest()[:32] if auth else "anonymous"
        key_scope = f"{principal}:{scope['method']}:{path}"
        request_hash = hashlib.sha256(
            b"\0".join(
                [scope["method"].encode(), path.encode(), scope.get("query_string", b""), body]
            )
        ).hexdigest()
        runs = _runs(state, pool)
        call = _Call(self.app, scope, receive, send, pool, settings, runs, key_scope, key, body)

        deadline = time.monotonic() + settings.idempotency_wait_s
        delay = 0.02
        while True:
            stored = await call.run_or_find(request_hash)
            if stored is None:  # this request ran and answered
                return
            if stored is _BUSY:
                if time.monotonic() > deadline:
                    status, headers, problem = _problem(
                        503,
                        "service_unavailable",
                        "Try again shortly",
                        "too many requests with an Idempotency-Key are running; retry",
                    )
                    await _send_raw(send, status, [*headers, (b"retry-after", b"1")], problem)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.2)
                continue
            if stored.request_hash != request_hash:
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
            if stored.status_code is not None:
                headers = [
                    (k.encode("latin-1"), v.encode("latin-1")) for k, v in stored.headers or []
                ]
                headers.append((b"idempotent-replayed", b"true"))
                await _send_raw(send, stored.status_code, headers, stored.body or b"")
                return
            if time.monotonic() > deadline:  # another request holds the key
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


# This process holds as many keyed runs as it may (see `_runs`): poll, like a busy key.
_BUSY = StoredResponse(request_hash="", status_code=None, headers=None, body=None)


class _KeyTransaction:
    """The key's transaction (asyncpg's own object refuses a second rollback)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.tx = conn.transaction()
        self.done = False

    async def commit(self) -> None:
        self.done = True
        await self.tx.commit()

    async def rollback(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            await self.tx.rollback()
        except (asyncpg.InterfaceError, asyncpg.PostgresError, OSError) as exc:
            log.warning("could not roll back an idempotent request: %r", exc)


class _Call:
    """One request under a key: claims it and runs the app in one transaction."""

    def __init__(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        pool: asyncpg.Pool,
        settings: Settings,
        runs: asyncio.Semaphore,
        key_scope: str,
        key: str,
        body: bytes,
    ) -> None:
        self.app, self.scope, self.receive, self.send = app, scope, receive, send
        self.pool, self.settings, self.runs = pool, settings, runs
        self.key_scope, self.key, self.body = key_scope, key, body

    async def run_or_find(self, request_hash: str) -> StoredResponse | None:
        """Run the request if the key is free (None: it answered), else what is stored
        (`status_code` None while another request holds the key)."""
        in_progress = StoredResponse(
            request_hash=request_hash, status_code=None, headers=None, body=None
        )
        async with self.pool.acquire() as conn:
            tx = _KeyTransaction(conn)
            await tx.tx.start()
            try:
                if not await fetch_val(
                    conn, "idempotency.try_lock", lock_key(self.key_scope, self.key)
                ):
                    return in_progress
                if self.runs.locked():
                    return _BUSY
                await self.runs.acquire()  # free: taken at once, with no await in between
                try:
                    claimed = await fetch_val(
                        conn,
                        "idempotency.claim",
                        self.key_scope,
                        self.key,
                        request_hash,
                        float(self.settings.idempotency_ttl_s),
                    )
                    if not claimed:
                        stored = await fetch_one(
                            conn, "idempotency.stored", StoredResponse, self.key_scope, self.key
                        )
                        return stored or in_progress
                    await self._run(conn, tx)
                    return None
                finally:
                    self.runs.release()
            finally:
                await tx.rollback()  # a no-op once committed or rolled back

    async def _run(self, conn: asyncpg.Connection, tx: _KeyTransaction) -> None:
        """Run the app on `conn`'s transaction; commit it with the response, then send."""
        start: Message | None = None
        chunks: list[bytes] = []
        pending: bytes | None = self.body

        async def replay_receive() -> Message:
            nonlocal pending
            if pending is not None:
                chunk, pending = pending, None
                return {"type": "http.request", "body": chunk, "more_body": False}
            message: Message = await self.receive()
            return message

        async def capture_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await self.send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await self._finish(conn, tx, start, b"".join(chunks))

        state = self.scope.setdefault("state", {})
        state[SHARED_CONNECTION] = conn
        try:
            await self.app(self.scope, replay_receive, capture_send)
        finally:
            state.pop(SHARED_CONNECTION, None)

    async def _finish(
        self, conn: asyncpg.Connection, tx: _KeyTransaction, start: Message, body: bytes
    ) -> None:
        status: int = start["status"]
        await end_abandoned(self.scope)  # a savepoint whose cleanup never ran
        if status >= 500:  # nothing is kept: the key is free for a retry
            await tx.rollback()
        else:
            headers = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-length", b"x-request-id", b"date")
            ]
            try:
                await execute(
                    conn,
                    "idempotency.store_response",
                    self.key_scope,
                    self.key,
                    status,
                    headers,
                    body,
                )
                await tx.commit()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("could not commit the idempotent request: %r", exc)
                await tx.rollback()
                await _send_raw(
                    self.send,
                    *_problem(
                        503,
                        "service_unavailable",
                        "Try again shortly",
                        "the request could not be committed; nothing was kept",
                    ),
                )
                return
        await self.send(start)
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Cron: forget keys older than `idempotency_ttl_s`; returns how many."""
    settings: Settings = ctx["settings"]
    return await execute(
        ctx["pool"], "idempotency.purge_expired", float(settings.idempotency_ttl_s)
    )


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
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
