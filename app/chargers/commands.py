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

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("app.chargers")

COMMANDS: Final = frozenset(
    {"RemoteStartTransaction", "RemoteStopTransaction", "ReserveNow", "CancelReservation"}
)
DEFAULT_TIMEOUT_S: Final = 30.0


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
    """Sends commands to chargers wherever they are connected (Redis pub/sub) and awaits
    the answers on this process's own reply channel."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.redis: Redis = Redis.from_url(redis_url, decode_responses=False)
        self.namespace = namespace
        self.reply_channel = f"{namespace}:ocpp:reply:{uuid.uuid4().hex}"
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def _subscribe(self, pubsub: Any) -> None:
        await pubsub.subscribe(self.reply_channel)

    async def start(self) -> None:
        """Subscribe to the reply channel (done by the first :meth:`send` otherwise)."""
        async with self._starting:
            if self._listener is not None and not self._listener.done():
                return
            pubsub: Any = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(5):
                    await self._subscribe(pubsub)
            except BaseException:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                raise
            self._listener = asyncio.create_task(self._listen(pubsub))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(CommandError("Closed", "the command client closed"))
        await self.redis.aclose()

    async def _listen(self, pubsub: Any) -> None:
        try:
            async for message in pubsub.listen():
                try:
                    channel = message["channel"].decode()
                    body = json.loads(message["data"])
                except (ValueError, KeyError, AttributeError, TypeError):
                    continue
                if not isinstance(body, dict):
                    continue
                if channel == self.reply_channel:
                    answer = self._pending.get(str(body.get("id")))
                    if answer is not None and not answer.done():
                        answer.set_result(body)
                    continue
                self._on_command(channel, body)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _on_command(self, channel: str, body: dict[str, Any]) -> None:
        """A command for some charger (only subscribed to by the serving side)."""

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
                if self._listener is None or self._listener.done():
                    await self.start()
                await self.redis.publish(
                    command_channel(self.namespace, charge_point_id), json.dumps(message)
                )
                reply = await answer
        except TimeoutError:
            raise CommandError("Timeout", f"no answer from {charge_point_id}") from None
        except (OSError, RedisError) as exc:  # Redis unreachable
            raise CommandError("Unreachable", f"command routing unavailable: {exc!r}") from None
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
