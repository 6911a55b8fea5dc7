"""A simulated charger's connection: WebSocket, the ocpp ChargePoint, boot and reconnect.

:class:`Link` runs the connection loop of one :class:`~app.sim.charge_point.SimCharger`
(connect with HTTP Basic auth and subprotocol ``ocpp1.6``, boot, report statuses, deliver
the outbox and heartbeat, reconnect with jittered back-off). :class:`SimChargePoint` is the
``ocpp`` library's ChargePoint of one connection: our outgoing CALLs and their answers, and
incoming CALLs routed to :mod:`app.sim.commands`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from ocpp.exceptions import FormatViolationError, GenericError, OCPPError
from ocpp.messages import Call, CallError, CallResult, validate_payload
from ocpp.routing import after as _ocpp_after
from ocpp.routing import on as _ocpp_on
from ocpp.v16 import ChargePoint, call_result
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.sim import commands
from app.sim.messages import Outgoing
from app.sim.state import SimError, SimOfflineError, Wakeup, append_bounded

if TYPE_CHECKING:
    from app.sim.charge_point import SimCharger

__all__ = ["OCPP_LOGGER", "OCPP_SUBPROTOCOL", "CallStats", "Link", "Session", "SimChargePoint"]

OCPP_SUBPROTOCOL: Final = Subprotocol("ocpp1.6")

# The ocpp library logs every frame at INFO; the simulator's copy of that stream is
# quiet unless someone asks for it (``logging.getLogger("app.sim.ocpp").setLevel(...)``).
OCPP_LOGGER: Final = logging.getLogger("app.sim.ocpp")
if OCPP_LOGGER.level == logging.NOTSET:
    OCPP_LOGGER.setLevel(logging.WARNING)
log = logging.getLogger("app.sim")

_F = TypeVar("_F", bound=Callable[..., Any])


def _on(action: str) -> Callable[[_F], _F]:
    """Typed wrapper of ``ocpp.routing.on`` (the library ships no type hints)."""
    return cast(Callable[[_F], _F], _ocpp_on(action))


def _after(action: str) -> Callable[[_F], _F]:
    return cast(Callable[[_F], _F], _ocpp_after(action))


class CallStats:
    """Counters of our outgoing CALLs; one instance may be shared by a whole fleet."""

    __slots__ = (
        "call_errors",
        "call_results",
        "calls_offline",
        "calls_sent",
        "connect_failures",
        "connections",
        "keep_latencies",
        "latencies",
        "timeouts",
    )

    def __init__(self, *, keep_latencies: bool = False) -> None:
        self.calls_sent = 0
        self.call_results = 0  # CallResult received
        self.call_errors = 0  # CallError received
        self.timeouts = 0
        self.calls_offline = 0  # connection lost while waiting
        self.connections = 0
        self.connect_failures = 0
        self.keep_latencies = keep_latencies  # the fleet reporter drains them every second
        self.latencies: list[float] = []  # seconds, since the last take_latencies()

    def take_latencies(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken

    def snapshot(self) -> dict[str, int]:
        return {
            "calls_sent": self.calls_sent,
            "call_results": self.call_results,
            "call_errors": self.call_errors,
            "timeouts": self.timeouts,
            "calls_offline": self.calls_offline,
            "connections": self.connections,
            "connect_failures": self.connect_failures,
        }


@dataclass(slots=True, eq=False)
class Session:
    """One WebSocket connection and its ChargePoint; ``booted`` once statuses were sent."""

    cp: SimChargePoint
    ws: ClientConnection
    booted: bool = False
    lost: bool = False


class SimChargePoint(ChargePoint):  # type: ignore[misc]
    """The ``ocpp`` ChargePoint of one connection; state lives in its :class:`SimCharger`.

    Incoming CALLs go through the library (routing, schema validation, CallErrors).
    Handlers answer from state synchronously (the library reads the next frame only after
    a handler returns) and leave follow-up CALLs to ``@after`` hooks that spawn tasks.

    Outgoing CALLs use :meth:`send_call` instead of the library's ``call()``: the payload
    is already camelCase JSON (no ``dataclasses.asdict`` + key rewriting, a third of the
    simulator's CPU at bench rates), the answer is matched to its CALL by unique id (the
    library hands any late answer to the next caller), and a lost connection fails the
    waiting CALL at once instead of after the response timeout.
    """

    def __init__(self, owner: SimCharger, connection: ClientConnection) -> None:
        super().__init__(
            owner.charge_point_id,
            connection,
            response_timeout=owner.options.response_timeout_s,
            logger=OCPP_LOGGER,
        )
        self._owner = owner
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def send_call(
        self, action: str, payload: dict[str, Any], *, validate: bool, timeout_s: float
    ) -> dict[str, Any]:
        """Send a CALL and return the CallResult payload (camelCase).

        CallError → the matching OCPPError; no answer in time → TimeoutError; one CALL at
        a time per connection, as OCPP 1.6 asks of a charger.
        """
        message = Call(str(uuid.uuid4()), action, payload)
        if validate:
            await validate_payload(message, self._ocpp_version)
        async with self._call_lock:
            answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._waiting[message.unique_id] = answer
            try:
                await self._send(message.to_json())
                async with asyncio.timeout(timeout_s):
                    result = await answer
            except TimeoutError:
                raise TimeoutError(f"no answer to {action} within {timeout_s}s") from None
            finally:
                del self._waiting[message.unique_id]
        if validate:
            await validate_payload(
                CallResult(message.unique_id, result, action), self._ocpp_version
            )
        return result

    def fail_waiting(self, reason: str) -> None:
        """The connection is gone: every CALL waiting for an answer fails at once."""
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(SimOfflineError(reason))

    async def route_message(self, raw_msg: str | bytes) -> None:
        try:
            msg = json.loads(raw_msg)
        except ValueError:
            msg = None
        if isinstance(msg, list) and len(msg) >= 3 and msg[0] in (3, 4):
            self._answer(msg)
            return
        owner = self._owner
        if (
            (owner._ignore_all or owner._ignored_actions)
            and isinstance(msg, list)
            and len(msg) >= 3
            and msg[0] == 2
            and (owner._ignore_all or msg[2] in owner._ignored_actions)
        ):
            append_bounded(owner.ignored_calls, (str(msg[2]), msg[3] if len(msg) > 3 else None))
            return
        await super().route_message(raw_msg)

    def _answer(self, msg: list[Any]) -> None:
        answer = self._waiting.get(str(msg[1]))
        if answer is None or answer.done():
            self.logger.warning("%s: answer to no waiting CALL: %.200s", self.id, msg)
            return
        if msg[0] == 3:
            if isinstance(msg[2], dict):
                answer.set_result(msg[2])
            else:
                answer.set_exception(FormatViolationError(description="payload not an object"))
            return
        code = str(msg[2])
        description = str(msg[3]) if len(msg) > 3 else ""
        details = msg[4] if len(msg) > 4 and isinstance(msg[4], dict) else {}
        try:
            exc = CallError(msg[1], code, description, details).to_exception()
        except Exception:  # an error code OCPP does not define
            exc = GenericError(description=f"{code}: {description}", details=details)
        answer.set_exception(exc)

    # ---------------------------------------------------- CS → charger (app.sim.commands)

    @_on("RemoteStartTransaction")
    def on_remote_start_transaction(
        self, id_tag: str, connector_id: int | None = None, call_unique_id: str = "", **_: Any
    ) -> Any:
        status = commands.on_remote_start(self._owner, id_tag, connector_id, call_unique_id)
        return call_result.RemoteStartTransaction(status=status)

    @_after("RemoteStartTransaction")
    def after_remote_start_transaction(self, call_unique_id: str = "", **_: Any) -> None:
        commands.after_remote_start(self._owner, call_unique_id)

    @_on("RemoteStopTransaction")
    def on_remote_stop_transaction(self, transaction_id: int, **_: Any) -> Any:
        status = commands.on_remote_stop(self._owner, transaction_id)
        return call_result.RemoteStopTransaction(status=status)

    @_after("RemoteStopTransaction")
    def after_remote_stop_transaction(self, transaction_id: int, **_: Any) -> None:
        commands.after_remote_stop(self._owner, transaction_id)

    @_on("ReserveNow")
    def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
        **_: Any,
    ) -> Any:
        status = commands.on_reserve_now(
            self._owner, connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        return call_result.ReserveNow(status=status)

    @_after("ReserveNow")
    def after_reserve_now(self, connector_id: int, reservation_id: int, **_: Any) -> None:
        commands.after_reservation_change(self._owner, connector_id, reservation_id)

    @_on("CancelReservation")
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        status = commands.on_cancel_reservation(self._owner, reservation_id)
        return call_result.CancelReservation(status=status)

    @_after("CancelReservation")
    def after_cancel_reservation(self, reservation_id: int, **_: Any) -> None:
        commands.after_cancel_reservation(self._owner, reservation_id)

    @_on("ChangeAvailability")
    def on_change_availability(self, connector_id: int, type: str, **_: Any) -> Any:
        status = commands.on_change_availability(self._owner, connector_id, type)
        return call_result.ChangeAvailability(status=status)

    @_after("ChangeAvailability")
    def after_change_availability(self, connector_id: int, **_: Any) -> None:
        commands.after_change_availability(self._owner, connector_id)

    @_on("TriggerMessage")
    def on_trigger_message(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> Any:
        status = commands.on_trigger_message(self._owner, requested_message, connector_id)
        return call_result.TriggerMessage(status=status)

    @_after("TriggerMessage")
    def after_trigger_message(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> None:
        commands.after_trigger_message(self._owner, requested_message, connector_id)

    @_on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        known, unknown = commands.get_configuration(self._owner, key)
        return call_result.GetConfiguration(
            configuration_key=known or None, unknown_key=unknown or None
        )

    @_on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        status = commands.on_change_configuration(self._owner, key, value)
        return call_result.ChangeConfiguration(status=status)

    @_on("Reset")
    def on_reset(self, type: str, **_: Any) -> Any:
        self._owner._record("Reset", {"type": type})
        return call_result.Reset(status="Accepted")

    @_after("Reset")
    def after_reset(self, type: str, **_: Any) -> None:
        self._owner._spawn(commands.reset(self._owner, type))

    @_on("UnlockConnector")
    def on_unlock_connector(self, connector_id: int, **_: Any) -> Any:
        self._owner._record("UnlockConnector", {"connector_id": connector_id})
        ok = connector_id in self._owner.connectors
        return call_result.UnlockConnector(status="Unlocked" if ok else "NotSupported")

    @_on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> Any:
        self._owner._record("DataTransfer", {"vendor_id": vendor_id, **kwargs})
        return call_result.DataTransfer(status="UnknownVendorId")


class Link:
    """The connection loop of one charger: connect, boot, serve, back off, reconnect."""

    __slots__ = (
        "_auth_header",
        "_ch",
        "_gate",
        "_rng",
        "_runner",
        "allow_connect",
        "kick",
        "session",
        "url",
    )

    def __init__(
        self,
        charger: SimCharger,
        url: str,
        password: str | None,
        *,
        gate: asyncio.Semaphore | None,
        rng: random.Random,
    ) -> None:
        self._ch = charger
        self.url = url
        self._gate = gate
        self._rng = rng  # jitter, not security
        self._auth_header = (
            None
            if password is None
            else "Basic "
            + base64.b64encode(f"{charger.charge_point_id}:{password}".encode()).decode()
        )
        self.session: Session | None = None
        self.allow_connect = Wakeup(True)
        self.kick = Wakeup()  # cut a back-off short
        self._runner: asyncio.Task[None] | None = None

    @property
    def online(self) -> bool:
        """Booted on the current connection (statuses sent)."""
        return self.session is not None and self.session.booted

    @property
    def running(self) -> bool:
        return self._runner is not None

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"sim:{self._ch.charge_point_id}")

    async def stop(self) -> None:
        """Close the socket cleanly and end the loop (the charger is closing)."""
        self.allow_connect.set()
        self.kick.set()
        session = self.session
        if session is not None:
            with contextlib.suppress(Exception):
                await session.ws.close()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.wait([self._runner])
            self._runner = None

    def abort(self, *, reconnect: bool) -> None:
        """Cut the socket without a close frame; stay offline unless ``reconnect``."""
        if not reconnect:
            self.allow_connect.clear()
        session = self.session
        if session is not None:
            session.ws.transport.abort()

    async def call(self, message: Outgoing, session: Session | None = None) -> dict[str, Any]:
        """One CALL on the current connection; CallError → OCPPError, no answer in time →
        TimeoutError, connection gone → SimOfflineError. Returns the camelCase payload."""
        ch = self._ch
        if session is None:
            session = self.session
            if session is None or not session.booted:
                raise SimOfflineError(f"{ch.charge_point_id} is offline")
        stats = ch.stats
        stats.calls_sent += 1
        started = time.perf_counter()
        action, payload = message
        try:
            result = await session.cp.send_call(
                action,
                payload,
                validate=ch.options.validate_messages,
                timeout_s=ch.options.response_timeout_s,
            )
        except SimOfflineError:
            stats.calls_offline += 1
            raise
        except ConnectionClosed as exc:
            stats.calls_offline += 1
            raise SimOfflineError(f"{ch.charge_point_id} lost its connection") from exc
        except OCPPError:
            stats.call_errors += 1
            raise
        except TimeoutError:
            stats.timeouts += 1
            raise
        stats.call_results += 1
        if stats.keep_latencies:
            stats.latencies.append(time.perf_counter() - started)
        return result

    async def _run(self) -> None:
        ch = self._ch
        failures = 0
        while not ch.closing:
            await self.allow_connect.wait()
            if ch.closing:
                break
            try:
                ws = await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ch.last_error = exc
                ch.stats.connect_failures += 1
                failures += 1
                log.debug("%s: connect failed: %r", ch.charge_point_id, exc)
                await self._backoff(failures)
                continue
            ch.connection_count += 1
            ch.stats.connections += 1
            booted = await self._serve(ws)
            failures = 1 if booted else failures + 1
            if not ch.closing:
                await self._backoff(failures)

    async def _open(self) -> ClientConnection:
        options = self._ch.options
        gate = self._gate
        if gate is not None:
            await gate.acquire()
        try:
            headers = {} if self._auth_header is None else {"Authorization": self._auth_header}
            extra: dict[str, Any] = (
                {} if options.ssl_context is None else {"ssl": options.ssl_context}
            )
            ws = await ws_connect(
                self.url,
                subprotocols=[OCPP_SUBPROTOCOL],
                additional_headers=headers,
                compression=None,  # permessage-deflate costs ~100 KB per socket
                proxy=None,
                open_timeout=options.open_timeout_s,
                ping_interval=options.ping_interval_s,
                ping_timeout=options.ping_interval_s,
                close_timeout=2,
                max_size=options.max_frame_bytes,
                **extra,
            )
        finally:
            if gate is not None:
                gate.release()
        if ws.subprotocol != OCPP_SUBPROTOCOL:
            await ws.close(code=1002, reason="ocpp1.6 subprotocol required")
            raise SimError(f"server selected subprotocol {ws.subprotocol!r}, not ocpp1.6")
        return ws

    async def _backoff(self, failures: int) -> None:
        options = self._ch.options
        delay = min(options.reconnect_max_s, options.reconnect_min_s * 2 ** max(failures - 1, 0))
        delay *= 0.5 + self._rng.random() / 2  # jitter: a fleet must not reconnect in step
        self.kick.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.kick.wait()

    async def _serve(self, ws: ClientConnection) -> bool:
        """Run one connection until it drops; True if it got as far as booted."""
        ch = self._ch
        session = Session(SimChargePoint(ch, ws), ws)
        self.session = session
        worker = asyncio.create_task(self._session_worker(session))
        worker.add_done_callback(lambda task: self._on_worker_done(session, task))
        try:
            await session.cp.start()
        except ConnectionClosed as exc:
            ch.last_error = exc
        except Exception as exc:
            ch.last_error = exc
            log.warning("%s: reader failed: %r", ch.charge_point_id, exc)
        finally:
            session.lost = True
            self.session = None
            ch.online = False
            worker.cancel()
            session.cp.fail_waiting(f"{ch.charge_point_id} lost its connection")
            ws.transport.abort()
            ch._notify()
            await asyncio.wait([worker])
        return session.booted

    def _on_worker_done(self, session: Session, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not session.lost:
            log.warning("%s: session worker failed: %r", self._ch.charge_point_id, exc)
            self._ch.last_error = exc
            session.ws.transport.abort()

    async def _session_worker(self, session: Session) -> None:
        """Boot, report statuses, then deliver the outbox and heartbeat until cancelled."""
        ch = self._ch
        if ch.options.boot_on_reconnect or ch.registration_status != "Accepted":
            interval = await self._boot(session)
        else:
            interval = ch.heartbeat_interval or 0.0
        ch.heartbeat_interval = (
            ch.heartbeat_override if ch.heartbeat_override is not None else interval
        )
        # Current statuses, not "Available" blindly: a charger may come back mid-session.
        await ch._quiet(
            self.call(ch.status_payload(0, ch.charger_status, ch.charger_error_code), session)
        )
        for conn in ch.connectors.values():
            status = ch.status_payload(conn.connector_id, conn.status, conn.error_code)
            await ch._quiet(self.call(status, session))
        if session.lost:
            return
        session.booted = True
        ch.online = True
        ch._notify()

        outbox = ch.outbox

        def deliver(message: Outgoing) -> Any:
            return self.call(message, session)

        next_heartbeat = time.monotonic() + (ch.heartbeat_interval or 0.0)
        while True:
            if outbox:
                await outbox.deliver_head(deliver, ch.charge_point_id)
                ch._notify()
                continue
            wait: float | None = None
            if ch.heartbeat_interval:
                wait = next_heartbeat - time.monotonic()
                if wait <= 0:
                    with contextlib.suppress(OCPPError, TimeoutError):
                        await self.call(("Heartbeat", {}), session)
                    next_heartbeat = time.monotonic() + ch.heartbeat_interval
                    continue
            outbox.wakeup.clear()
            if outbox:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await outbox.wakeup.wait()

    async def _boot(self, session: Session) -> float:
        ch = self._ch
        payload = ch.boot_payload()
        while True:
            try:
                result = await self.call(payload, session)
            except (OCPPError, TimeoutError) as exc:
                log.debug("%s: boot failed: %r", ch.charge_point_id, exc)
                ch.last_error = exc
                await asyncio.sleep(ch.options.reconnect_min_s)
                continue
            ch.registration_status = str(result["status"])
            ch._notify()
            interval = float(result["interval"])
            if result["status"] == "Accepted":
                ch.boot_count += 1
                return interval
            # Pending/Rejected: `interval` is when to try again.
            await asyncio.sleep(interval if interval > 0 else 10.0)
