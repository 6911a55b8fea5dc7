"""Commands to chargers (CS→CP CALLs) from any process: API workers and arq jobs.

Only the process holding a charger's WebSocket can talk to it. A command is published on
Redis (`<ns>:ocpp:cmd:<charge_point_id>`); the holder (:class:`app.chargers.central.
CommandRouter`, in every API process) sends the CALL and publishes the answer on the
asking process's own reply channel. :class:`CommandClient` is the asking side and needs
nothing but Redis, so a worker job can use it::

    result = await commands_from(ctx).remote_start("CP-1", id_tag="D1", connector_id=1)
    if result.status == "Accepted": ...

Every command has a timeout; a charger that does not answer in time (or that nobody
holds) raises :class:`CommandError` with code ``Timeout``; a CallError from the charger
raises it with the OCPP error code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

import asyncpg
import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.listen import Listener

log = logging.getLogger("app.chargers")

COMMANDS: Final = frozenset(
    {"RemoteStartTransaction", "RemoteStopTransaction", "ReserveNow", "CancelReservation"}
)
DEFAULT_TIMEOUT_S: Final = 30.0
# PostgreSQL NOTIFY channel that carries commands and answers while Redis cannot (one per
# database, so namespaces sharing a database are told apart inside the payload).
PG_CHANNEL: Final = "vw_ocpp_commands"
REDIS_CONNECT_TIMEOUT_S: Final = 2.0
REDIS_PUBLISH_TIMEOUT_S: Final = 1.0


class CommandError(Exception):
    """A command to a charger failed: not answered in time, or answered with a CallError."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description


class RemoteStartResult(msgspec.Struct, frozen=True):
    status: Literal["Accepted", "Rejected"]


class RemoteStopResult(msgspec.Struct, frozen=True):
    status: Literal["Accepted", "Rejected"]


class ReserveNowResult(msgspec.Struct, frozen=True):
    status: Literal["Accepted", "Faulted", "Occupied", "Rejected", "Unavailable"]


class CancelReservationResult(msgspec.Struct, frozen=True):
    status: Literal["Accepted", "Rejected"]


_R = TypeVar("_R", bound=msgspec.Struct)


def command_channel(namespace: str, charge_point_id: str) -> str:
    return f"{namespace}:ocpp:cmd:{charge_point_id}"


def command_pattern(namespace: str) -> str:
    return f"{namespace}:ocpp:cmd:*"


def _ocpp_time(at: datetime) -> str:
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class CommandClient:
    """Sends commands to chargers wherever they are connected and awaits the answers on
    this process's own reply channel.

    Transport: Redis pub/sub. With `pool` (and `database_url` for the LISTEN), PostgreSQL
    NOTIFY on `PG_CHANNEL` carries the command and its answer whenever Redis cannot (it
    refuses, times out, or nobody is subscribed there), so commands keep reaching chargers
    through a Redis outage; a command is sent on one transport only, and the holder ignores
    a request id it has run already. The Redis subscription is kept up by a loop that
    resubscribes with back-off after Redis returns."""

    def __init__(
        self,
        redis_url: str,
        namespace: str,
        *,
        pool: asyncpg.Pool | None = None,
        database_url: str | None = None,
    ) -> None:
        # No socket_timeout: the pub/sub read blocks on it; each publish has its own.
        self.redis: Redis = Redis.from_url(
            redis_url, decode_responses=False, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S
        )
        self.namespace = namespace
        self.reply_channel = f"{namespace}:ocpp:reply:{uuid.uuid4().hex}"
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._first_attempt: asyncio.Future[None] | None = None
        self._starting = asyncio.Lock()
        self._pool = pool if database_url else None
        self._pg: Listener | None = (
            Listener(database_url, PG_CHANNEL, self._on_pg_notify, lambda: None)
            if pool is not None and database_url
            else None
        )
        self._pg_started = False

    # ------------------------------------------------------------------ lifecycle

    async def _subscribe(self, pubsub: Any) -> None:
        await pubsub.subscribe(self.reply_channel)

    async def start(self) -> None:
        """Start listening (done by the first :meth:`send` otherwise) and wait for the
        first Redis subscription; its failure is raised (OSError / RedisError), and the
        loop keeps trying in the background."""
        async with self._starting:
            if self._pg is not None and not self._pg_started:
                self._pg_started = True
                self._pg.start()
            if self._listener is None or self._listener.done():
                self._first_attempt = asyncio.get_running_loop().create_future()
                self._listener = asyncio.create_task(self._listen_forever())
            first = self._first_attempt
        if first is not None and not self._subscribed.is_set():
            await asyncio.shield(first)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._pg is not None:
            await self._pg.stop()
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(CommandError("Closed", "the command client closed"))
        await self.redis.aclose()

    async def _listen_forever(self) -> None:
        delay = 0.2
        while True:
            pubsub: Any = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(5):
                    await self._subscribe(pubsub)
                self._subscribed.set()
                self._settle_first(None)
                delay = 0.2
                async for message in pubsub.listen():
                    try:
                        channel = message["channel"].decode()
                        body = json.loads(message["data"])
                    except (ValueError, KeyError, AttributeError, TypeError):
                        continue
                    if isinstance(body, dict):
                        self._on_message(channel, body, via="redis")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: resubscribe when it is back
                if self._subscribed.is_set():
                    log.warning("OCPP command subscription lost (%r); resubscribing", exc)
                self._settle_first(exc)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _settle_first(self, exc: BaseException | None) -> None:
        first = self._first_attempt
        if first is not None and not first.done():
            if exc is None:
                first.set_result(None)
            else:
                first.set_exception(exc)
                first.exception()  # retrieved: nobody may be waiting for it

    def _on_message(self, channel: str, body: dict[str, Any], *, via: str) -> None:
        if channel == self.reply_channel:
            answer = self._pending.get(str(body.get("id")))
            if answer is not None and not answer.done():
                answer.set_result(body)
            return
        self._on_command(channel, body, via)

    def _on_pg_notify(self, payload: str) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            return
        if isinstance(body, dict) and body.pop("ns", None) == self.namespace:
            channel = body.pop("channel", None)
            if isinstance(channel, str):
                self._on_message(channel, body, via="pg")

    def _on_command(self, channel: str, body: dict[str, Any], via: str) -> None:
        """A command for some charger (only subscribed to by the serving side)."""

    def _deliver_locally(self, charge_point_id: str, message: dict[str, Any]) -> bool:
        """Run the command in this process when it holds the charger (serving side)."""
        return False

    async def _publish(self, channel: str, message: dict[str, Any], *, via: str = "") -> None:
        """Publish on Redis (unless `via == "pg"`), else on PostgreSQL NOTIFY; raises
        CommandError("Unreachable") when no transport takes it."""
        payload = json.dumps(message)
        failure = "Redis not tried"
        if via != "pg":
            try:
                if not self._subscribed.is_set():
                    await self.start()
                async with asyncio.timeout(REDIS_PUBLISH_TIMEOUT_S):
                    receivers = await self.redis.publish(channel, payload)
                if receivers or self._pool is None:
                    return
                failure = "nobody subscribed on Redis"
            except (OSError, RedisError) as exc:  # refused, reset, or timed out
                failure = repr(exc)
        if self._pool is None or self._pg is None or not self._pg.ready.is_set():
            raise CommandError("Unreachable", f"command routing unavailable: {failure}")
        envelope = json.dumps({"ns": self.namespace, "channel": channel, **message})
        try:
            async with asyncio.timeout(REDIS_PUBLISH_TIMEOUT_S * 2):
                await self._pool.execute("SELECT pg_notify($1, $2)", PG_CHANNEL, envelope)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise CommandError(
                "Unreachable", f"command routing unavailable: {failure}; PostgreSQL: {exc!r}"
            ) from None

    # ------------------------------------------------------------------- sending

    async def send(
        self,
        charge_point_id: str,
        action: str,
        payload: dict[str, Any],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send `action` (camelCase payload) to the charger wherever it is connected and
        return its CallResult payload (camelCase); CommandError on timeout or CallError."""
        if action not in COMMANDS:
            raise ValueError(f"not a routed command: {action}")
        request_id = uuid.uuid4().hex
        message = {
            "id": request_id,
            "action": action,
            "payload": payload,
            "reply_to": self.reply_channel,
            "timeout_s": timeout_s,
        }
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        try:
            # The holder gives the charger `timeout_s`; the extra half second is the trip.
            async with asyncio.timeout(timeout_s + 0.5):
                if not self._deliver_locally(charge_point_id, message):
                    await self._publish(command_channel(self.namespace, charge_point_id), message)
                reply = await answer
        except TimeoutError:
            raise CommandError("Timeout", f"no answer from {charge_point_id}") from None
        finally:
            self._pending.pop(request_id, None)
        if not reply.get("ok"):
            raise CommandError(str(reply.get("code")), str(reply.get("description", "")))
        result: dict[str, Any] = reply.get("result") or {}
        return result

    async def _typed(
        self,
        charge_point_id: str,
        action: str,
        payload: dict[str, Any],
        timeout_s: float,
        result_type: type[_R],
    ) -> _R:
        result = await self.send(charge_point_id, action, payload, timeout_s=timeout_s)
        try:
            return msgspec.convert(result, result_type)
        except msgspec.ValidationError as exc:
            raise CommandError("InvalidResult", f"{action}: {exc}") from None

    async def remote_start(
        self,
        charge_point_id: str,
        *,
        id_tag: str,
        connector_id: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> RemoteStartResult:
        payload: dict[str, Any] = {"idTag": id_tag}
        if connector_id is not None:
            payload["connectorId"] = connector_id
        return await self._typed(
            charge_point_id, "RemoteStartTransaction", payload, timeout_s, RemoteStartResult
        )

    async def remote_stop(
        self, charge_point_id: str, *, transaction_id: int, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> RemoteStopResult:
        return await self._typed(
            charge_point_id,
            "RemoteStopTransaction",
            {"transactionId": transaction_id},
            timeout_s,
            RemoteStopResult,
        )

    async def reserve_now(
        self,
        charge_point_id: str,
        *,
        connector_id: int,
        expiry: datetime,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> ReserveNowResult:
        payload: dict[str, Any] = {
            "connectorId": connector_id,
            "expiryDate": _ocpp_time(expiry),
            "idTag": id_tag,
            "reservationId": reservation_id,
        }
        if parent_id_tag is not None:
            payload["parentIdTag"] = parent_id_tag
        return await self._typed(
            charge_point_id, "ReserveNow", payload, timeout_s, ReserveNowResult
        )

    async def cancel_reservation(
        self, charge_point_id: str, *, reservation_id: int, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> CancelReservationResult:
        return await self._typed(
            charge_point_id,
            "CancelReservation",
            {"reservationId": reservation_id},
            timeout_s,
            CancelReservationResult,
        )


def commands_from(ctx: dict[str, Any]) -> CommandClient:
    """The worker's client (``ctx["ocpp_commands"]``, set up by workers.main.startup)."""
    client: CommandClient = ctx["ocpp_commands"]
    return client
