"""The central-system side of one OCPP 1.6J connection, and the per-process hub of them.

The ``ocpp`` library (central-system role) routes, schema-validates and answers CALLs;
it needs an object with ``recv()``/``send()``, here :class:`SocketAdapter` around the
Litestar WebSocket. Frames the library would drop silently (not JSON, not an OCPP
message, oversized) are answered with a CallError here first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

import asyncpg
import ocpp.messages
import ocpp.v16.call
from litestar.connection import WebSocket
from litestar.exceptions import WebSocketDisconnect
from ocpp.charge_point import camel_to_snake_case, remove_nones, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.routing import on as _ocpp_on
from ocpp.v16 import ChargePoint, call_result
from prometheus_client import Counter

from app.chargers import fastpath, service, validation
from app.chargers.commands import CommandClient, CommandError, command_pattern
from app.chargers.service import ChargerIdentity
from app.chargers.writer import OcppWriter
from app.core.ratelimit import TokenBuckets

# Validation stays on (INTEGRATIONS.md §1). In the event loop's thread: the library's
# default hands every message to a thread pool (a thread hop per message); and with the
# OCPP 1.6 schemas compiled to plain checks (app/chargers/validation.py).
ocpp.messages.ASYNC_VALIDATION = False
validation.install()
fastpath.install()  # cached signatures and key conversions inside the library

OCPP_LOGGER: Final = logging.getLogger("app.chargers.ocpp")
if OCPP_LOGGER.level == logging.NOTSET:
    OCPP_LOGGER.setLevel(logging.WARNING)
logging.getLogger("ocpp").setLevel(logging.WARNING)
log = logging.getLogger("app.chargers")

MESSAGES = Counter(
    "ocpp_messages_total", "OCPP CALLs from chargers handled (answered), by action", ["action"]
)
REPLACED = Counter(
    "ocpp_connections_replaced_total",
    "Authenticated OCPP connections closed because the same charger connected again",
)

_F = TypeVar("_F", bound=Callable[..., Any])


def _on(action: str) -> Callable[[_F], _F]:
    """Typed wrapper of ``ocpp.routing.on`` (the library ships no type hints)."""
    return cast(Callable[[_F], _F], _ocpp_on(action))


def ocpp_timestamp(at: datetime) -> str:
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class SocketClosed(Exception):
    """The charger's WebSocket is gone."""


class SocketAdapter:
    """What the ocpp library needs from a connection: ``recv()`` and ``send()``."""

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self.socket = socket

    async def recv(self) -> str | bytes:
        try:
            event = await self.socket.receive()
        except WebSocketDisconnect as exc:
            raise SocketClosed(str(exc)) from None
        if event["type"] != "websocket.receive":
            raise SocketClosed(event["type"])
        text = event.get("text")
        if text is not None:
            return text
        return event.get("bytes") or b""

    async def send(self, message: str) -> None:
        try:
            await self.socket.send_text(message)
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:
            raise SocketClosed(str(exc)) from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(Exception):
            await self.socket.close(code=code, reason=reason)


def _call_error(unique_id: str, code: str, description: str) -> str:
    return json.dumps([4, unique_id, code, description, {}])


class CentralSystemCharger(ChargePoint):  # type: ignore[misc]
    """One connected, authenticated charger as the central system sees it."""

    def __init__(
        self,
        charger: ChargerIdentity,
        adapter: SocketAdapter,
        *,
        pool: asyncpg.Pool,
        writer: OcppWriter,
        heartbeat_interval_s: int,
        max_frame_bytes: int,
        response_timeout_s: float = 30,
    ) -> None:
        super().__init__(
            charger.charge_point_id,
            adapter,
            response_timeout=response_timeout_s,
            logger=OCPP_LOGGER,
        )
        self.charger = charger
        self.adapter = adapter
        self.pool = pool
        self.writer = writer
        self.heartbeat_interval_s = heartbeat_interval_s
        self.max_frame_bytes = max_frame_bytes
        self.connection_id = uuid.uuid4()

    # ----------------------------------------------------------------- framing

    async def route_message(self, raw_msg: str | bytes) -> None:
        """Answer what the library would drop without a word, then let it route the rest."""
        if len(raw_msg) > self.max_frame_bytes:
            unique_id = "-1"
            with contextlib.suppress(Exception):
                head = json.loads(raw_msg)
                if isinstance(head, list) and len(head) > 1 and isinstance(head[1], str):
                    unique_id = head[1]
            await self._send(_call_error(unique_id, "ProtocolError", "frame larger than the limit"))
            return
        try:
            msg = json.loads(raw_msg)
        except ValueError:
            await self._send(_call_error("-1", "FormationViolation", "frame is not JSON"))
            return
        if not isinstance(msg, list) or not msg:
            await self._send(_call_error("-1", "FormationViolation", "frame is not a JSON array"))
            return
        unique_id = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else "-1"
        kind = msg[0]
        if kind == 2:
            if len(msg) != 4 or not isinstance(msg[1], str) or not isinstance(msg[2], str):
                await self._send(
                    _call_error(unique_id, "ProtocolError", "CALL is [2, id, action, payload]")
                )
                return
            if not isinstance(msg[3], dict):
                await self._send(
                    _call_error(unique_id, "FormationViolation", "payload is not an object")
                )
                return
        elif kind in (3, 4):
            if len(msg) < 3 or not isinstance(msg[1], str):
                return  # a malformed answer: nobody to answer to
        else:
            await self._send(_call_error(unique_id, "ProtocolError", "unknown message type"))
            return
        await super().route_message(raw_msg)
        if kind == 2:  # (unknown actions are one label: no cardinality from outside)
            MESSAGES.labels(msg[2] if msg[2] in self.route_map else "other").inc()

    # ---------------------------------------------------------------- handlers

    @_on("BootNotification")
    async def on_boot_notification(self, **payload: Any) -> Any:
        now = datetime.now(UTC)
        await service.boot(self.pool, self.charger, payload, now)
        return call_result.BootNotification(
            current_time=ocpp_timestamp(now),
            interval=self.heartbeat_interval_s,
            status="Accepted",
        )

    @_on("Heartbeat")
    async def on_heartbeat(self, **_: Any) -> Any:
        now = datetime.now(UTC)
        await service.heartbeat(self.pool, self.charger, now)
        return call_result.Heartbeat(current_time=ocpp_timestamp(now))

    @_on("StatusNotification")
    async def on_status_notification(
        self, connector_id: int, status: str, timestamp: str | None = None, **_: Any
    ) -> Any:
        at = service.parse_timestamp(timestamp) or datetime.now(UTC)
        await self.writer.status(self.charger, connector_id, status, at)
        return call_result.StatusNotification()

    @_on("Authorize")
    async def on_authorize(self, id_tag: str, **_: Any) -> Any:
        status = await service.authorize(self.pool, self.charger, id_tag)
        return call_result.Authorize(id_tag_info={"status": status})

    @_on("StartTransaction")
    async def on_start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None = None,
        **_: Any,
    ) -> Any:
        started_at = service.parse_timestamp(timestamp) or datetime.now(UTC)
        transaction_id, status = await service.start_transaction(
            self.pool,
            self.charger,
            connector_no=connector_id,
            id_tag=id_tag,
            meter_start=meter_start,
            started_at=started_at,
            reservation_id=reservation_id,
        )
        return call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info={"status": status}
        )

    @_on("StopTransaction")
    async def on_stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        timestamp: str,
        id_tag: str | None = None,
        reason: str | None = None,
        transaction_data: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> Any:
        stopped_at = service.parse_timestamp(timestamp) or datetime.now(UTC)
        status = await service.stop_transaction(
            self.pool,
            self.charger,
            transaction_id=transaction_id,
            meter_stop=meter_stop,
            stopped_at=stopped_at,
            reason=reason,
            transaction_data=transaction_data,
        )
        if id_tag is None:
            return call_result.StopTransaction()
        return call_result.StopTransaction(id_tag_info={"status": status or "Accepted"})

    @_on("MeterValues")
    async def on_meter_values(
        self,
        connector_id: int,
        meter_value: list[dict[str, Any]],
        transaction_id: int | None = None,
        **_: Any,
    ) -> Any:
        await self.writer.meter_values(
            self.charger,
            connector_no=connector_id,
            transaction_id=transaction_id,
            meter_value=meter_value,
        )
        return call_result.MeterValues()

    @_on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return call_result.DataTransfer(status="UnknownVendorId")

    @_on("FirmwareStatusNotification")
    def on_firmware_status(self, **_: Any) -> Any:
        return call_result.FirmwareStatusNotification()

    @_on("DiagnosticsStatusNotification")
    def on_diagnostics_status(self, **_: Any) -> Any:
        return call_result.DiagnosticsStatusNotification()


class AuthThrottle:
    """Failed OCPP logins, throttled per charger id and per source address (in this
    process): after `burst` failures a key is refused for a while, right password or not."""

    def __init__(self, *, per_id_burst: float = 5, per_ip_burst: float = 30) -> None:
        self._by_id = TokenBuckets(1 / 30, per_id_burst)
        self._by_ip = TokenBuckets(1 / 2, per_ip_burst)
        self._blocked: dict[str, float] = {}

    def blocked_for(self, charge_point_id: str, address: str) -> float:
        now = time.monotonic()
        until = max(
            self._blocked.get(f"id:{charge_point_id}", 0.0), self._blocked.get(f"ip:{address}", 0.0)
        )
        return max(0.0, until - now)

    def failed(self, charge_point_id: str, address: str) -> None:
        now = time.monotonic()
        for key, buckets in (
            (f"id:{charge_point_id}", self._by_id),
            (f"ip:{address}", self._by_ip),
        ):
            wait = buckets.take(key, now)
            if wait > 0:
                if len(self._blocked) > 100_000:
                    self._blocked.clear()
                self._blocked[key] = now + wait


class OcppHub:
    """The chargers connected to this process, and their offline timers."""

    def __init__(self, pool: asyncpg.Pool, *, grace_s: float) -> None:
        self.pool = pool
        self.writer = OcppWriter(pool)
        self.grace_s = grace_s
        self.connections: dict[str, CentralSystemCharger] = {}
        self._serving: dict[CentralSystemCharger, asyncio.Task[Any]] = {}  # socket handlers
        self._timers: set[asyncio.Task[None]] = set()
        self._closing = False
        self.replaced = 0
        self.auth_throttle = AuthThrottle()

    async def attach(self, cp: CentralSystemCharger) -> None:
        """This connection now holds the charger; an older one (here) is closed."""
        old = self.connections.get(cp.id)
        self.connections[cp.id] = cp
        task = asyncio.current_task()
        if task is not None:
            self._serving[cp] = task
        await service.connected(self.pool, cp.charger, cp.connection_id)
        if old is not None and old is not cp:
            self.replaced += 1
            REPLACED.inc()
            log.warning("a new connection of %s replaces the previous one", cp.id)
            await old.adapter.close(1000, "replaced by a newer connection")

    async def detach(self, cp: CentralSystemCharger) -> None:
        """The socket closed: after the grace period the charger counts as offline,
        unless a newer connection holds it by then."""
        if self.connections.get(cp.id) is cp:
            del self.connections[cp.id]
        self._serving.pop(cp, None)
        if self._closing:
            return
        try:
            current = await service.disconnected(self.pool, cp.charger, cp.connection_id)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("could not record the disconnect of %s: %r", cp.id, exc)
            return
        if current:
            task = asyncio.create_task(self._offline_after_grace(cp))
            self._timers.add(task)
            task.add_done_callback(self._timers.discard)

    async def _offline_after_grace(self, cp: CentralSystemCharger) -> None:
        await asyncio.sleep(self.grace_s)
        try:
            if await service.went_offline(self.pool, cp.charger, cp.connection_id):
                log.info("%s offline: socket down for %.0fs", cp.id, self.grace_s)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("could not mark %s offline: %r", cp.id, exc)

    @property
    def draining(self) -> bool:
        return self._closing

    def drain(self) -> None:
        """End every charger's connection now and refuse new ones (routes.ocpp_socket):
        what `app/run.py` asks of each API worker (SIGUSR1) before it stops the server,
        because granian's teardown with WebSockets still open panics ("Cannot drop pointer
        into Python heap", multi-threaded runtime) or hangs (single-threaded), granian
        #799/#884. No offline timers start: the chargers are gone because we are."""
        if self._closing:
            return
        self._closing = True
        for task in list(self._timers):
            task.cancel()
        # A close sent while the handler waits in receive() does not get out (granian):
        # end the handlers instead; the server closes each socket as its handler returns.
        for handler in list(self._serving.values()):
            handler.cancel()

    async def _close_sockets(self) -> None:
        sockets = [
            cp.adapter.close(1001, "server shutting down") for cp in self.connections.values()
        ]
        await asyncio.gather(*sockets)

    async def close(self) -> None:
        self._closing = True
        for task in list(self._timers):
            task.cancel()
        await self._close_sockets()
        await self.writer.close()


# ----------------------------------------------------------------- command routing


async def call_charger(
    cp: CentralSystemCharger, action: str, payload: dict[str, Any], timeout_s: float
) -> dict[str, Any]:
    """Send one CS→CP CALL on this process's socket; the CallResult payload (camelCase)."""
    payload_type = getattr(ocpp.v16.call, action)
    request = payload_type(**camel_to_snake_case(payload))
    try:
        async with asyncio.timeout(timeout_s):
            result = await cp.call(request, suppress=False)
    except TimeoutError:
        raise CommandError("Timeout", f"{cp.id} did not answer {action}") from None
    except OCPPError as exc:
        raise CommandError(exc.code, str(exc.description)) from None
    out: dict[str, Any] = snake_to_camel_case(remove_nones(dataclasses.asdict(result)))
    return out


class CommandRouter(CommandClient):
    """The serving side in every API process: besides asking (:class:`CommandClient`), it
    listens on `<ns>:ocpp:cmd:*` (and on PostgreSQL NOTIFY when given a pool) and runs the
    commands for chargers this process holds, answering the asker on the transport the
    command came by. Others' chargers are ignored (their holder answers; when nobody
    holds the charger the asker times out). A command for a charger this process holds
    is run here at once, without any transport."""

    def __init__(
        self,
        hub: OcppHub,
        redis_url: str,
        namespace: str,
        *,
        pool: asyncpg.Pool | None = None,
        database_url: str | None = None,
    ) -> None:
        super().__init__(redis_url, namespace, pool=pool, database_url=database_url)
        self.hub = hub
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen: dict[str, None] = {}  # recent request ids (a late duplicate runs once)

    async def _subscribe(self, pubsub: Any) -> None:
        await pubsub.psubscribe(command_pattern(self.namespace))
        await super()._subscribe(pubsub)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await super().close()

    def _on_command(self, channel: str, body: dict[str, Any], via: str) -> None:
        cp = self.hub.connections.get(channel.rsplit(":", 1)[-1])
        if cp is None:
            return
        self._spawn(cp, body, via)

    def _deliver_locally(self, charge_point_id: str, message: dict[str, Any]) -> bool:
        cp = self.hub.connections.get(charge_point_id)
        if cp is None:
            return False
        self._spawn(cp, message, "local")
        return True

    def _spawn(self, cp: CentralSystemCharger, body: dict[str, Any], via: str) -> None:
        request_id = str(body.get("id"))
        if request_id in self._seen:
            return
        self._seen[request_id] = None
        if len(self._seen) > 4096:
            del self._seen[next(iter(self._seen))]
        task = asyncio.create_task(self._run(cp, body, via))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, cp: CentralSystemCharger, body: dict[str, Any], via: str) -> None:
        reply: dict[str, Any] = {"id": body.get("id")}
        try:
            result = await call_charger(
                cp, str(body["action"]), dict(body["payload"]), float(body["timeout_s"])
            )
            reply |= {"ok": True, "result": result}
        except CommandError as exc:
            reply |= {"ok": False, "code": exc.code, "description": exc.description}
        except Exception as exc:  # a bad payload must not kill the listener
            reply |= {"ok": False, "code": "InternalError", "description": repr(exc)}
        reply_to = str(body["reply_to"])
        if via == "local" or reply_to == self.reply_channel:
            self._on_message(self.reply_channel, reply, via="local")
            return
        with contextlib.suppress(Exception):
            await self._publish(reply_to, reply, via=via)
