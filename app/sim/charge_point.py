"""OCPP 1.6J charge-point simulator built on the ``ocpp`` library in the charge-point role.

One :class:`SimCharger` is one simulated charger: it connects over WebSocket (subprotocol
``ocpp1.6``, HTTP Basic auth), boots, heartbeats, reports connector statuses, answers the
central system's commands and, once a transaction starts, charges a virtual
:class:`~app.sim.vehicle.Vehicle` and sends MeterValues. It reconnects with back-off and
queues transaction messages (StopTransaction, MeterValues) while offline, as OCPP 1.6
requires. It costs two asyncio tasks while idle (reader, heartbeat/outbox) and no
threads, so 10,000 of them fit in one process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeVar, cast

from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import FormatViolationError, GenericError, OCPPError
from ocpp.messages import Call, CallError, CallResult, validate_payload
from ocpp.routing import after as _ocpp_after
from ocpp.routing import on as _ocpp_on
from ocpp.v16 import ChargePoint, call_result
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.core.clock import Clock
from app.sim.vehicle import Vehicle

__all__ = [
    "AcceleratedClock",
    "CallStats",
    "Connector",
    "ConnectorSpec",
    "Reservation",
    "SessionPlan",
    "SimChargePoint",
    "SimCharger",
    "SimError",
    "SimOfflineError",
    "SimOptions",
    "SimStateError",
    "Transaction",
    "connect",
    "ocpp_timestamp",
]

OCPP_SUBPROTOCOL: Final = Subprotocol("ocpp1.6")

# The ocpp library logs every frame at INFO; the simulator's copy of that stream is
# quiet unless someone asks for it (``logging.getLogger("app.sim.ocpp").setLevel(...)``).
OCPP_LOGGER: Final = logging.getLogger("app.sim.ocpp")
if OCPP_LOGGER.level == logging.NOTSET:
    OCPP_LOGGER.setLevel(logging.WARNING)
log = logging.getLogger("app.sim")

# Connector states in OCPP 1.6 words (ChargePointStatus).
AVAILABLE: Final = "Available"
PREPARING: Final = "Preparing"
CHARGING: Final = "Charging"
SUSPENDED_EV: Final = "SuspendedEV"
SUSPENDED_EVSE: Final = "SuspendedEVSE"
FINISHING: Final = "Finishing"
RESERVED: Final = "Reserved"
UNAVAILABLE: Final = "Unavailable"
FAULTED: Final = "Faulted"

StopReason = Literal[
    "EmergencyStop",
    "EVDisconnected",
    "HardReset",
    "Local",
    "Other",
    "PowerLoss",
    "Reboot",
    "Remote",
    "SoftReset",
    "UnlockCommand",
    "DeAuthorized",
]

_F = TypeVar("_F", bound=Callable[..., Any])
# An outgoing CALL: action and camelCase payload, the JSON the charger puts on the wire.
Outgoing = tuple[str, dict[str, Any]]


def _on(action: str) -> Callable[[_F], _F]:
    """Typed wrapper of ``ocpp.routing.on`` (the library ships no type hints)."""
    return cast(Callable[[_F], _F], _ocpp_on(action))


def _after(action: str) -> Callable[[_F], _F]:
    return cast(Callable[[_F], _F], _ocpp_after(action))


def ocpp_timestamp(at: datetime) -> str:
    """RFC 3339 UTC with milliseconds and a ``Z``, the way chargers write it."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _parse_timestamp(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class AcceleratedClock(Clock):
    """Wall clock that runs ``speedup`` times faster from the moment it is created.

    Hand it to a SimCharger when the central system should see a sped-up charge with
    consistent timestamps (energy / time gives the real power). Timestamps then run ahead
    of the central system's clock.
    """

    def __init__(self, speedup: float, *, start: datetime | None = None) -> None:
        self.speedup = speedup
        self._start = start or datetime.now(UTC)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._t0) * self.speedup)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """What the car plugged in for a transaction does."""

    battery_kwh: float = 60.0
    start_soc: float = 20.0
    target_soc: float = 100.0
    car_max_power_w: float = 150_000.0
    # The car pauses (SuspendedEV, e.g. waiting for off-peak) once it reaches this SoC.
    suspend_at_soc: float | None = None
    suspend_for_s: float = 0.0  # simulated seconds
    # At the target: "stop" = Finishing → StopTransaction → Available; "suspend" = the car
    # stays plugged in, SuspendedEV, until someone stops the transaction.
    when_done: Literal["stop", "suspend"] = "stop"
    stop_reason: StopReason = "EVDisconnected"
    report_soc: bool = True  # SoC is optional in the field (AC chargers rarely know it)


@dataclass(frozen=True, slots=True)
class ConnectorSpec:
    connector_id: int
    max_power_w: float | None = None  # None → SimOptions.max_power_w


@dataclass(slots=True)
class SimOptions:
    """Knobs of one simulated charger; the defaults behave like a real AC charger."""

    vendor: str = "Voltway"
    model: str = "SimCharger"
    serial_number: str | None = None
    firmware_version: str = "sim-1.0"
    max_power_w: float = 22_000.0  # per connector unless its ConnectorSpec says otherwise
    meter_start_wh: int = 0  # energy register of every connector at start-up
    # Simulated time runs `speedup` times faster than the event loop's (charging only).
    speedup: float = 1.0
    meter_interval_s: float = 60.0  # simulated seconds between MeterValues while charging
    response_timeout_s: float = 30.0  # how long our CALLs wait for the central system
    open_timeout_s: float = 30.0
    ping_interval_s: float | None = None  # WebSocket pings (OCPP heartbeats run anyway)
    max_frame_bytes: int = 1 << 20
    ssl_context: ssl.SSLContext | None = None  # for wss:// with a private CA (profile 2)
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    boot_on_reconnect: bool = True
    validate_messages: bool = True  # schema-check our own outgoing CALLs and their results
    tx_message_attempts: int = 3  # TransactionMessageAttempts
    tx_retry_interval_s: float = 5.0  # TransactionMessageRetryInterval
    max_outbox: int = 1000  # queued transaction messages kept while offline
    remote_start_policy: Literal["accept", "reject"] = "accept"
    # The car that shows up on RemoteStartTransaction; None = no charging simulated.
    remote_start_plan: SessionPlan | Callable[[], SessionPlan] | None = field(
        default_factory=SessionPlan
    )


# ----------------------------------------------------------------------------- state


@dataclass(slots=True, eq=False)
class Reservation:
    reservation_id: int
    id_tag: str
    expiry: datetime | None
    parent_id_tag: str | None = None
    expiry_task: asyncio.Task[None] | None = None


@dataclass(slots=True, eq=False)
class Transaction:
    transaction_id: int
    connector_id: int
    id_tag: str
    id_tag_status: str
    meter_start_wh: int
    started_at: datetime
    reservation_id: int | None = None
    vehicle: Vehicle | None = None
    meter_stop_wh: int | None = None
    stopped_at: datetime | None = None
    stop_reason: str | None = None


@dataclass(slots=True, eq=False)
class Connector:
    connector_id: int
    max_power_w: float
    status: str = AVAILABLE
    error_code: str = "NoError"
    meter_wh: float = 0.0  # cumulative Energy.Active.Import.Register
    power_w: float = 0.0
    soc: float | None = None
    reservation: Reservation | None = None
    transaction: Transaction | None = None
    claimed: bool = False  # a start is under way (RemoteStart accepted, StartTransaction out)
    inoperative: bool = False
    inoperative_after_tx: bool = False  # ChangeAvailability "Scheduled"
    charging_task: asyncio.Task[None] | None = None


class SimError(Exception):
    """Base of the simulator's own errors."""


class SimOfflineError(SimError):
    """The charger has no booted connection right now (or lost it during the call)."""


class SimStateError(SimError):
    """The request does not fit the connector's state (busy, unknown, no transaction)."""


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


_T = TypeVar("_T")


def _append_bounded(items: list[_T], item: _T, limit: int = 256) -> None:
    items.append(item)
    if len(items) > limit:
        del items[: len(items) - limit]


class _Wakeup:
    """asyncio.Event for a single waiter, without the Event's deque (10,000 chargers × 3)."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self, flag: bool = False) -> None:
        self._flag = flag
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> None:
        if self._flag:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


@dataclass(slots=True, eq=False)
class _TxMessage:
    message: Outgoing
    future: asyncio.Future[dict[str, Any]] | None
    attempts: int = 0


@dataclass(slots=True, eq=False)
class _Session:
    cp: SimChargePoint
    ws: ClientConnection
    booted: bool = False
    lost: bool = False


# ------------------------------------------------------------------- ocpp subclass


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
            _append_bounded(owner.ignored_calls, (str(msg[2]), msg[3] if len(msg) > 3 else None))
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

    @_on("RemoteStartTransaction")
    def on_remote_start_transaction(
        self, id_tag: str, connector_id: int | None = None, call_unique_id: str = "", **_: Any
    ) -> Any:
        status = self._owner._on_remote_start(id_tag, connector_id, call_unique_id)
        return call_result.RemoteStartTransaction(status=status)

    @_after("RemoteStartTransaction")
    def after_remote_start_transaction(self, call_unique_id: str = "", **_: Any) -> None:
        self._owner._after_remote_start(call_unique_id)

    @_on("RemoteStopTransaction")
    def on_remote_stop_transaction(self, transaction_id: int, **_: Any) -> Any:
        return call_result.RemoteStopTransaction(status=self._owner._on_remote_stop(transaction_id))

    @_after("RemoteStopTransaction")
    def after_remote_stop_transaction(self, transaction_id: int, **_: Any) -> None:
        self._owner._after_remote_stop(transaction_id)

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
        status = self._owner._on_reserve_now(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        return call_result.ReserveNow(status=status)

    @_after("ReserveNow")
    def after_reserve_now(self, connector_id: int, reservation_id: int, **_: Any) -> None:
        self._owner._after_reservation_change(connector_id, reservation_id)

    @_on("CancelReservation")
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> Any:
        return call_result.CancelReservation(
            status=self._owner._on_cancel_reservation(reservation_id)
        )

    @_after("CancelReservation")
    def after_cancel_reservation(self, reservation_id: int, **_: Any) -> None:
        self._owner._after_cancel_reservation(reservation_id)

    @_on("ChangeAvailability")
    def on_change_availability(self, connector_id: int, type: str, **_: Any) -> Any:
        return call_result.ChangeAvailability(
            status=self._owner._on_change_availability(connector_id, type)
        )

    @_after("ChangeAvailability")
    def after_change_availability(self, connector_id: int, **_: Any) -> None:
        self._owner._after_change_availability(connector_id)

    @_on("TriggerMessage")
    def on_trigger_message(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> Any:
        return call_result.TriggerMessage(
            status=self._owner._on_trigger_message(requested_message, connector_id)
        )

    @_after("TriggerMessage")
    def after_trigger_message(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> None:
        self._owner._after_trigger_message(requested_message, connector_id)

    @_on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        known, unknown = self._owner._configuration(key)
        return call_result.GetConfiguration(
            configuration_key=known or None, unknown_key=unknown or None
        )

    @_on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        return call_result.ChangeConfiguration(
            status=self._owner._on_change_configuration(key, value)
        )

    @_on("Reset")
    def on_reset(self, type: str, **_: Any) -> Any:
        self._owner._record("Reset", {"type": type})
        return call_result.Reset(status="Accepted")

    @_after("Reset")
    def after_reset(self, type: str, **_: Any) -> None:
        self._owner._spawn(self._owner._reset(type))

    @_on("UnlockConnector")
    def on_unlock_connector(self, connector_id: int, **_: Any) -> Any:
        self._owner._record("UnlockConnector", {"connector_id": connector_id})
        ok = connector_id in self._owner.connectors
        return call_result.UnlockConnector(status="Unlocked" if ok else "NotSupported")

    @_on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> Any:
        self._owner._record("DataTransfer", {"vendor_id": vendor_id, **kwargs})
        return call_result.DataTransfer(status="UnknownVendorId")


# -------------------------------------------------------------------------- charger


class SimCharger:
    """One simulated charger: connection loop, connector state, transactions, cars."""

    def __init__(
        self,
        url_base: str,
        charge_point_id: str,
        password: str | None,
        *,
        connectors: Sequence[int | ConnectorSpec] = (1,),
        iccid: str | None = None,
        imsi: str | None = None,
        heartbeat_override: float | None = None,
        options: SimOptions | None = None,
        clock: Clock | None = None,
        stats: CallStats | None = None,
        connect_gate: asyncio.Semaphore | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.charge_point_id = charge_point_id
        self.url = f"{url_base.rstrip('/')}/{charge_point_id}"
        self.options = options or SimOptions()
        self.iccid = iccid
        self.imsi = imsi
        self.heartbeat_override = heartbeat_override
        self.clock = clock or Clock()
        self.stats = stats or CallStats()
        self._gate = connect_gate
        self._rng = rng or random.Random()  # jitter, not security
        self._auth_header = (
            None
            if password is None
            else "Basic " + base64.b64encode(f"{charge_point_id}:{password}".encode()).decode()
        )
        self.connectors: dict[int, Connector] = {}
        for spec in connectors:
            if isinstance(spec, int):
                spec = ConnectorSpec(spec)
            if spec.connector_id < 1:
                raise ValueError("connector ids start at 1 (0 is the charger itself)")
            power = self.options.max_power_w if spec.max_power_w is None else spec.max_power_w
            self.connectors[spec.connector_id] = Connector(
                spec.connector_id, power, meter_wh=float(self.options.meter_start_wh)
            )
        self.charger_status = AVAILABLE  # connector 0
        self.charger_error_code = "NoError"

        # observable state (tests, fleet reports)
        self.online = False  # connected, booted and statuses sent
        self.registration_status: str | None = None
        self.heartbeat_interval: float | None = None
        self.connection_count = 0
        self.boot_count = 0
        self.last_error: BaseException | None = None
        # CS → charger CALLs, the latest 256 (lists: an empty deque costs 600 B × 10,000)
        self.calls_received: list[tuple[str, dict[str, Any]]] = []
        self.ignored_calls: list[tuple[str, Any]] = []
        self.completed_transactions: list[Transaction] = []
        self.dropped_meter_values = 0  # outbox overflow while offline
        self.configuration: dict[str, str] = {}

        self._session: _Session | None = None
        self._outbox: deque[_TxMessage] = deque()
        self._outbox_wakeup = _Wakeup()
        self._allow_connect = _Wakeup(True)
        self._kick = _Wakeup()  # cut a back-off short
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._ignore_all = False
        self._ignored_actions: frozenset[str] = frozenset()
        self._pending_remote: dict[str, tuple[int, str]] = {}
        self._status_due: dict[int, Connector] = {}  # CancelReservation → status after reply
        self._load_busy = False
        self._load_count = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the connection loop (connect, boot, reconnect on loss) in the background."""
        if self._runner is None:
            self._closing = False
            self._runner = asyncio.create_task(self._run(), name=f"sim:{self.charge_point_id}")

    async def wait_online(self, timeout_s: float = 10.0) -> None:
        """Wait until connected, booted and statuses sent; TimeoutError otherwise."""
        try:
            await self.wait_until(lambda: self.online, timeout_s)
        except TimeoutError:
            raise TimeoutError(
                f"{self.charge_point_id} not online after {timeout_s}s "
                f"(last error: {self.last_error!r})"
            ) from None

    async def close(self) -> None:
        """Stop everything: no final StopTransaction, like a power cut; closes cleanly."""
        self._closing = True
        self._allow_connect.set()
        self._kick.set()
        for conn in self.connectors.values():
            if conn.charging_task is not None:
                conn.charging_task.cancel()
            if conn.reservation is not None and conn.reservation.expiry_task is not None:
                conn.reservation.expiry_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        session = self._session
        if session is not None:
            with contextlib.suppress(Exception):
                await session.ws.close()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.wait([self._runner])
            self._runner = None
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        while self._outbox:
            message = self._outbox.popleft()
            if message.future is not None and not message.future.done():
                message.future.cancel()
        self._notify()

    async def __aenter__(self) -> SimCharger:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def drop_connection(self, *, reconnect: bool = True) -> None:
        """Abort the socket without a close frame (cable cut); reconnect with back-off,
        or stay offline until :meth:`reconnect` when ``reconnect=False``."""
        if not reconnect:
            self._allow_connect.clear()
        session = self._session
        if session is not None:
            session.ws.transport.abort()

    def reconnect(self) -> None:
        """Allow connecting again and skip the current back-off wait."""
        self._allow_connect.set()
        self._kick.set()

    def stop_answering(self, *actions: str) -> None:
        """Drop incoming CALLs of these actions (all when none given) without any reply,
        so the central system's call timeout fires."""
        if actions:
            self._ignored_actions = self._ignored_actions | frozenset(actions)
        else:
            self._ignore_all = True

    def resume_answering(self) -> None:
        self._ignore_all = False
        self._ignored_actions = frozenset()

    @property
    def outbox_size(self) -> int:
        """Transaction messages waiting to be delivered."""
        return len(self._outbox)

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued transaction message has been delivered (or given up)."""
        await self.wait_until(lambda: not self._outbox, timeout_s)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; re-checked on every state change."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            while not predicate():
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)

    async def wait_status(self, connector_no: int, status: str, timeout_s: float = 10.0) -> None:
        conn = self._connector(connector_no)
        await self.wait_until(lambda: conn.status == status, timeout_s)

    # ------------------------------------------------------------- public actions

    async def set_status(
        self,
        connector_no: int,
        status: str,
        error_code: str = "NoError",
        *,
        info: str | None = None,
    ) -> None:
        """Change a connector's (or, with 0, the charger's) status and report it."""
        if connector_no == 0:
            self.charger_status, self.charger_error_code = status, error_code
            self._notify()
            await self._call(self._status_payload(0, status, error_code, info))
            return
        conn = self._connector(connector_no)
        conn.status, conn.error_code = status, error_code
        self._notify()
        await self._call(self._status_payload(connector_no, status, error_code, info))

    async def authorize(self, id_tag: str) -> dict[str, Any]:
        """Authorize.req; returns idTagInfo as the central system sent it (camelCase→snake)."""
        result = await self._call(("Authorize", {"idTag": id_tag}))
        return cast(dict[str, Any], camel_to_snake_case(result.get("idTagInfo", {})))

    async def start_transaction(
        self,
        connector_no: int,
        id_tag: str,
        reservation_id: int | None = None,
        *,
        plan: SessionPlan | None = None,
        charge: bool = True,
    ) -> Transaction:
        """Preparing → StartTransaction.req (meterStart = register) → Charging.

        With ``charge`` the car of ``plan`` (or of ``options.remote_start_plan``) charges
        and MeterValues follow; without it the connector just says Charging. If the central
        system does not accept the idTag the charger stops at once (reason DeAuthorized);
        check ``transaction.id_tag_status``.
        """
        conn = self._connector(connector_no)
        if conn.transaction is not None or conn.claimed:
            raise SimStateError(f"connector {connector_no} is busy")
        if (
            conn.reservation is not None
            and conn.reservation.id_tag != id_tag
            and conn.reservation.parent_id_tag != id_tag
        ):
            raise SimStateError(f"connector {connector_no} is reserved for another idTag")
        conn.claimed = True
        return await self._start(conn, id_tag, reservation_id, plan, charge)

    async def stop_transaction(
        self,
        connector_no: int | None = None,
        *,
        reason: StopReason = "Local",
        wait: bool = True,
    ) -> dict[str, Any] | None:
        """Finishing → StopTransaction.req (queued if offline) → Available.

        ``connector_no`` may be omitted when one transaction is running. With ``wait`` it
        returns the StopTransaction result once delivered (after a reconnect if offline).
        """
        conn = self._transaction_connector(connector_no)
        task = self._spawn(self._end_transaction(conn, reason))
        if not wait:
            return None
        return await asyncio.shield(task)

    async def send_meter_values(
        self,
        connector_no: int,
        *,
        energy_wh: float | None = None,
        power_w: float | None = None,
        soc: float | None = None,
        context: str = "Sample.Periodic",
        wait: bool = True,
    ) -> None:
        """MeterValues.req for a connector; part of its transaction (queued while
        offline) when one is running. ``energy_wh`` sets the register first."""
        conn = self._connector(connector_no)
        if energy_wh is not None:
            conn.meter_wh = energy_wh
        if power_w is not None:
            conn.power_w = power_w
        if soc is not None:
            conn.soc = soc
        payload = self._meter_values_payload(conn, context=context)
        if conn.transaction is None:
            await self._call(payload)
            return
        future = self._enqueue(payload, want_result=wait)
        if future is not None:
            await future

    # ------------------------------------------------------------- connection loop

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            await self._allow_connect.wait()
            if self._closing:
                break
            try:
                ws = await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = exc
                self.stats.connect_failures += 1
                failures += 1
                log.debug("%s: connect failed: %r", self.charge_point_id, exc)
                await self._backoff(failures)
                continue
            self.connection_count += 1
            self.stats.connections += 1
            booted = await self._serve(ws)
            failures = 1 if booted else failures + 1
            if not self._closing:
                await self._backoff(failures)

    async def _open(self) -> ClientConnection:
        gate = self._gate
        if gate is not None:
            await gate.acquire()
        try:
            headers = {} if self._auth_header is None else {"Authorization": self._auth_header}
            extra: dict[str, Any] = (
                {} if self.options.ssl_context is None else {"ssl": self.options.ssl_context}
            )
            ws = await ws_connect(
                self.url,
                subprotocols=[OCPP_SUBPROTOCOL],
                additional_headers=headers,
                compression=None,  # permessage-deflate costs ~100 KB per socket
                proxy=None,
                open_timeout=self.options.open_timeout_s,
                ping_interval=self.options.ping_interval_s,
                ping_timeout=self.options.ping_interval_s,
                close_timeout=2,
                max_size=self.options.max_frame_bytes,
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
        opts = self.options
        delay = min(opts.reconnect_max_s, opts.reconnect_min_s * 2 ** max(failures - 1, 0))
        delay *= 0.5 + self._rng.random() / 2  # jitter: a fleet must not reconnect in step
        self._kick.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._kick.wait()

    async def _serve(self, ws: ClientConnection) -> bool:
        """Run one connection until it drops; True if it got as far as booted."""
        session = _Session(SimChargePoint(self, ws), ws)
        self._session = session
        worker = asyncio.create_task(self._session_worker(session))
        worker.add_done_callback(lambda task: self._on_worker_done(session, task))
        try:
            await session.cp.start()
        except ConnectionClosed as exc:
            self.last_error = exc
        except Exception as exc:
            self.last_error = exc
            log.warning("%s: reader failed: %r", self.charge_point_id, exc)
        finally:
            session.lost = True
            self._session = None
            self.online = False
            worker.cancel()
            session.cp.fail_waiting(f"{self.charge_point_id} lost its connection")
            ws.transport.abort()
            self._notify()
            await asyncio.wait([worker])
        return session.booted

    def _on_worker_done(self, session: _Session, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not session.lost:
            log.warning("%s: session worker failed: %r", self.charge_point_id, exc)
            self.last_error = exc
            session.ws.transport.abort()

    async def _session_worker(self, session: _Session) -> None:
        """Boot, report statuses, then deliver the outbox and heartbeat until cancelled."""
        if self.options.boot_on_reconnect or self.registration_status != "Accepted":
            interval = await self._boot(session)
        else:
            interval = self.heartbeat_interval or 0.0
        self.heartbeat_interval = (
            self.heartbeat_override if self.heartbeat_override is not None else interval
        )
        # Current statuses, not "Available" blindly: a charger may come back mid-session.
        await self._quiet(
            self._call(
                self._status_payload(0, self.charger_status, self.charger_error_code), session
            )
        )
        for conn in self.connectors.values():
            status = self._status_payload(conn.connector_id, conn.status, conn.error_code)
            await self._quiet(self._call(status, session))
        if session.lost:
            return
        session.booted = True
        self.online = True
        self._notify()

        next_heartbeat = time.monotonic() + (self.heartbeat_interval or 0.0)
        while True:
            if self._outbox:
                await self._deliver_head(session)
                continue
            wait: float | None = None
            if self.heartbeat_interval:
                wait = next_heartbeat - time.monotonic()
                if wait <= 0:
                    with contextlib.suppress(OCPPError, TimeoutError):
                        await self._call(("Heartbeat", {}), session)
                    next_heartbeat = time.monotonic() + self.heartbeat_interval
                    continue
            self._outbox_wakeup.clear()
            if self._outbox:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._outbox_wakeup.wait()

    async def _boot(self, session: _Session) -> float:
        opts = self.options
        payload = self._boot_payload()
        while True:
            try:
                result = await self._call(payload, session)
            except (OCPPError, TimeoutError) as exc:
                log.debug("%s: boot failed: %r", self.charge_point_id, exc)
                self.last_error = exc
                await asyncio.sleep(opts.reconnect_min_s)
                continue
            self.registration_status = str(result["status"])
            self._notify()
            interval = float(result["interval"])
            if result["status"] == "Accepted":
                self.boot_count += 1
                return interval
            # Pending/Rejected: `interval` is when to try again.
            await asyncio.sleep(interval if interval > 0 else 10.0)

    async def _deliver_head(self, session: _Session) -> None:
        message = self._outbox[0]
        try:
            result = await self._call(message.message, session)
        except OCPPError as exc:  # a CallError: retrying the same message will not help
            self._outbox.popleft()
            if message.future is not None and not message.future.done():
                message.future.set_exception(exc)
        except TimeoutError as exc:
            message.attempts += 1
            if message.attempts >= self.options.tx_message_attempts:
                self._outbox.popleft()
                log.warning(
                    "%s: giving up %s after %d attempts",
                    self.charge_point_id,
                    message.message[0],
                    message.attempts,
                )
                if message.future is not None and not message.future.done():
                    message.future.set_exception(exc)
            else:
                await asyncio.sleep(self.options.tx_retry_interval_s)
        else:
            self._outbox.popleft()
            if message.future is not None and not message.future.done():
                message.future.set_result(result)
        self._notify()

    def _enqueue(
        self, message: Outgoing, *, want_result: bool
    ) -> asyncio.Future[dict[str, Any]] | None:
        future: asyncio.Future[dict[str, Any]] | None = None
        if want_result:
            future = asyncio.get_running_loop().create_future()
        if len(self._outbox) >= self.options.max_outbox:
            # Storage full, as on a real charger: the oldest periodic sample goes first;
            # Start/StopTransaction are never dropped.
            for queued in self._outbox:
                if queued.message[0] == "MeterValues" and queued.future is None:
                    self._outbox.remove(queued)
                    self.dropped_meter_values += 1
                    break
        self._outbox.append(_TxMessage(message, future))
        self._outbox_wakeup.set()
        self._notify()
        return future

    async def _call(self, message: Outgoing, session: _Session | None = None) -> dict[str, Any]:
        """One CALL on the current connection; CallError → OCPPError, no answer in time →
        TimeoutError, connection gone → SimOfflineError. Returns the camelCase payload."""
        if session is None:
            session = self._session
            if session is None or not session.booted:
                raise SimOfflineError(f"{self.charge_point_id} is offline")
        stats = self.stats
        stats.calls_sent += 1
        started = time.perf_counter()
        action, payload = message
        try:
            result = await session.cp.send_call(
                action,
                payload,
                validate=self.options.validate_messages,
                timeout_s=self.options.response_timeout_s,
            )
        except SimOfflineError:
            stats.calls_offline += 1
            raise
        except ConnectionClosed as exc:
            stats.calls_offline += 1
            raise SimOfflineError(f"{self.charge_point_id} lost its connection") from exc
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

    # ------------------------------------------------------------ transactions

    async def _start(
        self,
        conn: Connector,
        id_tag: str,
        reservation_id: int | None,
        plan: SessionPlan | None,
        charge: bool,
    ) -> Transaction:
        """StartTransaction for a connector already claimed by the caller."""
        reservation = conn.reservation
        if reservation_id is None and reservation is not None:
            reservation_id = reservation.reservation_id
        previous = conn.status
        try:
            await self._update_status(conn, PREPARING)
            meter_start = round(conn.meter_wh)
            started_at = self.clock.now()
            payload: dict[str, Any] = {
                "connectorId": conn.connector_id,
                "idTag": id_tag,
                "meterStart": meter_start,
                "timestamp": ocpp_timestamp(started_at),
            }
            if reservation_id is not None:
                payload["reservationId"] = reservation_id
            result = await self._call(("StartTransaction", payload))
        except Exception:
            conn.claimed = False
            await self._update_status(conn, previous)
            raise
        finally:
            conn.claimed = False
        info = result.get("idTagInfo") or {}
        tx = Transaction(
            transaction_id=int(result["transactionId"]),
            connector_id=conn.connector_id,
            id_tag=id_tag,
            id_tag_status=str(info.get("status", "Invalid")),
            meter_start_wh=meter_start,
            started_at=started_at,
            reservation_id=reservation_id,
        )
        conn.transaction = tx
        if reservation is not None and reservation.reservation_id == reservation_id:
            self._clear_reservation(conn)
        self._notify()
        if tx.id_tag_status != "Accepted":
            # StopTransactionOnInvalidId: the charger ends what the CS refused.
            await self._end_transaction(conn, "DeAuthorized")
            return tx
        if charge:
            if plan is None:
                plan = self._remote_plan()
            if plan is not None:
                tx.vehicle = Vehicle(
                    plan.battery_kwh,
                    plan.start_soc,
                    conn.max_power_w,
                    max_car_power_w=plan.car_max_power_w,
                    target_soc=plan.target_soc,
                )
        await self._update_status(conn, CHARGING)
        if tx.vehicle is not None and plan is not None:
            conn.charging_task = self._spawn(self._charge(conn, tx, plan))
        return tx

    def _remote_plan(self) -> SessionPlan | None:
        plan = self.options.remote_start_plan
        if plan is None or isinstance(plan, SessionPlan):
            return plan
        return plan()

    async def _charge(self, conn: Connector, tx: Transaction, plan: SessionPlan) -> None:
        """Charge the car, one MeterValues per interval of simulated time, then finish."""
        vehicle = tx.vehicle
        assert vehicle is not None
        opts = self.options
        conn.soc = vehicle.soc if plan.report_soc else None
        conn.power_w = vehicle.power_w
        self._enqueue(
            self._meter_values_payload(conn, context="Transaction.Begin"), want_result=False
        )
        suspended_left = 0.0
        suspend_pending = plan.suspend_at_soc is not None
        last = time.monotonic()
        while not vehicle.done:
            await asyncio.sleep(opts.meter_interval_s / opts.speedup)
            now = time.monotonic()
            dt = (now - last) * opts.speedup  # what really passed, lag included
            last = now
            if suspended_left > 0.0:
                suspended_left -= dt
                if suspended_left <= 0.0:
                    await self._update_status(conn, CHARGING)
                conn.power_w = 0.0
            else:
                energy, power, soc = vehicle.step(dt)
                conn.meter_wh += energy
                conn.power_w = power
                if plan.report_soc:
                    conn.soc = soc
                if (
                    suspend_pending
                    and plan.suspend_at_soc is not None
                    and soc >= plan.suspend_at_soc
                    and not vehicle.done
                ):
                    suspend_pending = False
                    suspended_left = plan.suspend_for_s
                    conn.power_w = 0.0
                    await self._update_status(conn, SUSPENDED_EV)
            self._enqueue(self._meter_values_payload(conn), want_result=False)
            self._notify()
        conn.power_w = 0.0
        if plan.when_done == "suspend":
            await self._update_status(conn, SUSPENDED_EV)
            return
        await self._end_transaction(conn, plan.stop_reason)

    async def _end_transaction(self, conn: Connector, reason: str) -> dict[str, Any] | None:
        tx = conn.transaction
        if tx is None:
            return None
        conn.transaction = None
        task, conn.charging_task = conn.charging_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        conn.power_w = 0.0
        stopped_at = self.clock.now()
        tx.meter_stop_wh = round(conn.meter_wh)
        tx.stopped_at = stopped_at
        tx.stop_reason = reason
        self.completed_transactions.append(tx)
        await self._update_status(conn, FINISHING)
        transaction_data = [
            {
                "timestamp": ocpp_timestamp(tx.started_at),
                "sampledValue": [_energy_sample(tx.meter_start_wh, "Transaction.Begin")],
            },
            {
                "timestamp": ocpp_timestamp(stopped_at),
                "sampledValue": [_energy_sample(tx.meter_stop_wh, "Transaction.End")],
            },
        ]
        stop = {
            "meterStop": tx.meter_stop_wh,
            "timestamp": ocpp_timestamp(stopped_at),
            "transactionId": tx.transaction_id,
            "reason": reason,
            "idTag": tx.id_tag,
            "transactionData": transaction_data,
        }
        future = self._enqueue(("StopTransaction", stop), want_result=True)
        assert future is not None
        try:
            result = await future
        finally:
            if conn.transaction is None and conn.status == FINISHING and not self._closing:
                if conn.inoperative_after_tx:
                    conn.inoperative, conn.inoperative_after_tx = True, False
                await self._update_status(conn, UNAVAILABLE if conn.inoperative else AVAILABLE)
        return cast(dict[str, Any], camel_to_snake_case(result))

    # ------------------------------------------------------ handlers (CS → charger)

    def _on_remote_start(self, id_tag: str, connector_id: int | None, unique_id: str) -> str:
        self._record("RemoteStartTransaction", {"id_tag": id_tag, "connector_id": connector_id})
        if self.options.remote_start_policy == "reject":
            return "Rejected"
        candidates: Iterable[Connector]
        if connector_id is None:
            # A connector reserved for this idTag first, then any free one.
            candidates = sorted(
                self.connectors.values(),
                key=lambda c: c.reservation is None or c.reservation.id_tag != id_tag,
            )
        elif connector_id in self.connectors:
            candidates = [self.connectors[connector_id]]
        else:
            return "Rejected"
        for conn in candidates:
            if self._can_start(conn, id_tag):
                conn.claimed = True
                self._pending_remote[unique_id] = (conn.connector_id, id_tag)
                return "Accepted"
        return "Rejected"

    def _after_remote_start(self, unique_id: str) -> None:
        pending = self._pending_remote.pop(unique_id, None)
        if pending is None:
            return
        connector_no, id_tag = pending
        self._spawn(self._remote_start(self.connectors[connector_no], id_tag))

    async def _remote_start(self, conn: Connector, id_tag: str) -> None:
        try:
            await self._start(conn, id_tag, None, None, True)
        except (SimError, OCPPError, TimeoutError) as exc:
            log.info("%s: remote start failed: %r", self.charge_point_id, exc)

    def _can_start(self, conn: Connector, id_tag: str) -> bool:
        if conn.transaction is not None or conn.claimed or conn.inoperative:
            return False
        if conn.status == RESERVED or conn.reservation is not None:
            res = conn.reservation
            return res is not None and id_tag in (res.id_tag, res.parent_id_tag)
        return conn.status in (AVAILABLE, PREPARING)

    def _on_remote_stop(self, transaction_id: int) -> str:
        self._record("RemoteStopTransaction", {"transaction_id": transaction_id})
        return "Accepted" if self._find_transaction(transaction_id) is not None else "Rejected"

    def _after_remote_stop(self, transaction_id: int) -> None:
        conn = self._find_transaction(transaction_id)
        if conn is not None:
            self._spawn(self._end_transaction(conn, "Remote"))

    def _on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None,
    ) -> str:
        self._record(
            "ReserveNow",
            {
                "connector_id": connector_id,
                "expiry_date": expiry_date,
                "id_tag": id_tag,
                "reservation_id": reservation_id,
            },
        )
        conn = self.connectors.get(connector_id)
        if conn is None:  # includes 0: ReserveConnectorZeroSupported = false
            return "Rejected"
        reservation = Reservation(
            reservation_id, id_tag, _parse_timestamp(expiry_date), parent_id_tag
        )
        current = conn.reservation
        if current is not None and current.reservation_id == reservation_id:
            self._clear_reservation(conn)  # the same reservation again: replace it
        elif conn.inoperative or conn.status == UNAVAILABLE:
            return "Unavailable"
        elif conn.status == FAULTED:
            return "Faulted"
        elif (
            current is not None
            or conn.transaction is not None
            or conn.claimed
            or conn.status != AVAILABLE
        ):
            return "Occupied"
        conn.reservation = reservation
        conn.status = RESERVED
        self._notify()
        return "Accepted"

    def _after_reservation_change(self, connector_id: int, reservation_id: int) -> None:
        conn = self.connectors.get(connector_id)
        if conn is None or conn.reservation is None:
            return
        reservation = conn.reservation
        if reservation.reservation_id != reservation_id:
            return
        self._spawn(self._send_status(conn))
        if reservation.expiry is not None and reservation.expiry_task is None:
            reservation.expiry_task = self._spawn(self._expire(conn, reservation))

    async def _expire(self, conn: Connector, reservation: Reservation) -> None:
        assert reservation.expiry is not None
        await asyncio.sleep(max(0.0, (reservation.expiry - self.clock.now()).total_seconds()))
        if conn.reservation is reservation:
            reservation.expiry_task = None  # we are that task: do not cancel ourselves
            self._clear_reservation(conn)
            await self._update_status(conn, AVAILABLE)

    def _on_cancel_reservation(self, reservation_id: int) -> str:
        self._record("CancelReservation", {"reservation_id": reservation_id})
        for conn in self.connectors.values():
            if conn.reservation is not None and conn.reservation.reservation_id == reservation_id:
                self._clear_reservation(conn)
                if conn.status == RESERVED:
                    conn.status = AVAILABLE
                    self._status_due[reservation_id] = conn
                self._notify()
                return "Accepted"
        return "Rejected"

    def _after_cancel_reservation(self, reservation_id: int) -> None:
        conn = self._status_due.pop(reservation_id, None)
        if conn is not None:
            self._spawn(self._send_status(conn))

    def _clear_reservation(self, conn: Connector) -> None:
        reservation, conn.reservation = conn.reservation, None
        if reservation is not None and reservation.expiry_task is not None:
            reservation.expiry_task.cancel()
            reservation.expiry_task = None

    def _on_change_availability(self, connector_id: int, kind: str) -> str:
        self._record("ChangeAvailability", {"connector_id": connector_id, "type": kind})
        if connector_id == 0:
            targets = list(self.connectors.values())
        elif connector_id in self.connectors:
            targets = [self.connectors[connector_id]]
        else:
            return "Rejected"
        scheduled = False
        for conn in targets:
            if kind == "Inoperative":
                if conn.transaction is not None or conn.claimed:
                    conn.inoperative_after_tx = True
                    scheduled = True
                else:
                    conn.inoperative = True
                    conn.status = UNAVAILABLE
            else:
                conn.inoperative = conn.inoperative_after_tx = False
                if conn.status == UNAVAILABLE:
                    conn.status = RESERVED if conn.reservation is not None else AVAILABLE
        self._notify()
        return "Scheduled" if scheduled else "Accepted"

    def _after_change_availability(self, connector_id: int) -> None:
        for conn in self.connectors.values():
            if connector_id in (0, conn.connector_id) and conn.transaction is None:
                self._spawn(self._send_status(conn))

    def _on_trigger_message(self, requested: str, connector_id: int | None) -> str:
        self._record(
            "TriggerMessage", {"requested_message": requested, "connector_id": connector_id}
        )
        if connector_id is not None and connector_id != 0 and connector_id not in self.connectors:
            return "Rejected"
        supported = ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues")
        return "Accepted" if requested in supported else "NotImplemented"

    def _after_trigger_message(self, requested: str, connector_id: int | None) -> None:
        if requested == "BootNotification":
            self._spawn(self._quiet(self._call(self._boot_payload())))
        elif requested == "Heartbeat":
            self._spawn(self._quiet(self._call(("Heartbeat", {}))))
        elif requested == "StatusNotification":
            if connector_id == 0:
                payload = self._status_payload(0, self.charger_status, self.charger_error_code)
                self._spawn(self._quiet(self._call(payload)))
            for conn in self.connectors.values():
                if connector_id in (None, conn.connector_id):
                    self._spawn(self._send_status(conn))
        elif requested == "MeterValues":
            for conn in self.connectors.values():
                if connector_id in (None, 0, conn.connector_id):
                    payload = self._meter_values_payload(conn, context="Trigger")
                    self._spawn(self._quiet(self._call(payload)))

    def _configuration(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        self._record("GetConfiguration", {"key": keys})
        values = {
            "HeartbeatInterval": str(int(self.heartbeat_interval or 0)),
            "MeterValueSampleInterval": str(int(self.options.meter_interval_s)),
            "NumberOfConnectors": str(len(self.connectors)),
            "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,SoC",
            "ReserveConnectorZeroSupported": "false",
            "StopTransactionOnInvalidId": "true",
            "TransactionMessageAttempts": str(self.options.tx_message_attempts),
            "TransactionMessageRetryInterval": str(int(self.options.tx_retry_interval_s)),
            "SupportedFeatureProfiles": "Core,RemoteTrigger,Reservation",
            **self.configuration,
        }
        wanted = keys or list(values)
        known = [{"key": k, "readonly": False, "value": values[k]} for k in wanted if k in values]
        unknown = [k for k in wanted if k not in values]
        return known, unknown

    def _on_change_configuration(self, key: str, value: str) -> str:
        self._record("ChangeConfiguration", {"key": key, "value": value})
        try:
            number = float(value)
        except ValueError:
            return "Rejected"
        if key == "HeartbeatInterval" and number >= 0:
            self.heartbeat_interval = number
            self._outbox_wakeup.set()
        elif key == "MeterValueSampleInterval" and number > 0:
            self.options.meter_interval_s = number
        else:
            return "NotSupported"
        self.configuration[key] = value
        return "Accepted"

    async def _reset(self, kind: str) -> None:
        reason = "HardReset" if kind == "Hard" else "SoftReset"
        for conn in self.connectors.values():
            if conn.transaction is not None:
                self._spawn(self._end_transaction(conn, reason))
        await asyncio.sleep(0)
        self.drop_connection()

    # ---------------------------------------------------------------- helpers

    def _connector(self, connector_no: int) -> Connector:
        try:
            return self.connectors[connector_no]
        except KeyError:
            raise SimStateError(f"no connector {connector_no}") from None

    def _transaction_connector(self, connector_no: int | None) -> Connector:
        if connector_no is not None:
            conn = self._connector(connector_no)
            if conn.transaction is None:
                raise SimStateError(f"no transaction on connector {connector_no}")
            return conn
        busy = [c for c in self.connectors.values() if c.transaction is not None]
        if len(busy) != 1:
            raise SimStateError(f"{len(busy)} transactions running: say which connector")
        return busy[0]

    def _find_transaction(self, transaction_id: int) -> Connector | None:
        for conn in self.connectors.values():
            if conn.transaction is not None and conn.transaction.transaction_id == transaction_id:
                return conn
        return None

    def transaction(self, connector_no: int) -> Transaction | None:
        """The running transaction on a connector, if any."""
        return self._connector(connector_no).transaction

    def _boot_payload(self) -> Outgoing:
        opts = self.options
        payload = {
            "chargePointVendor": opts.vendor,
            "chargePointModel": opts.model,
            "chargePointSerialNumber": opts.serial_number,
            "firmwareVersion": opts.firmware_version,
            "iccid": self.iccid,
            "imsi": self.imsi,
        }
        return "BootNotification", {k: v for k, v in payload.items() if v is not None}

    def _status_payload(
        self, connector_no: int, status: str, error_code: str, info: str | None = None
    ) -> Outgoing:
        payload: dict[str, Any] = {
            "connectorId": connector_no,
            "errorCode": error_code,
            "status": status,
            "timestamp": ocpp_timestamp(self.clock.now()),
        }
        if info is not None:
            payload["info"] = info
        return "StatusNotification", payload

    def _meter_values_payload(
        self, conn: Connector, *, context: str = "Sample.Periodic"
    ) -> Outgoing:
        samples = [
            _energy_sample(round(conn.meter_wh), context),
            {
                "value": str(round(conn.power_w)),
                "context": context,
                "measurand": "Power.Active.Import",
                "location": "Outlet",
                "unit": "W",
            },
        ]
        if conn.soc is not None:
            samples.append(
                {
                    "value": f"{conn.soc:.1f}",
                    "context": context,
                    "measurand": "SoC",
                    "location": "EV",
                    "unit": "Percent",
                }
            )
        payload: dict[str, Any] = {
            "connectorId": conn.connector_id,
            "meterValue": [
                {"timestamp": ocpp_timestamp(self.clock.now()), "sampledValue": samples}
            ],
        }
        if conn.transaction is not None:
            payload["transactionId"] = conn.transaction.transaction_id
        return "MeterValues", payload

    async def _update_status(self, conn: Connector, status: str) -> None:
        """Set and report a status; offline or unanswered is fine (re-sent on boot)."""
        conn.status = status
        self._notify()
        await self._send_status(conn)
        self._notify()  # again once reported, for waiters that look at the other side

    async def _send_status(self, conn: Connector) -> None:
        if self._session is None or not self._session.booted:
            return
        payload = self._status_payload(conn.connector_id, conn.status, conn.error_code)
        await self._quiet(self._call(payload))

    async def _quiet(self, awaitable: Coroutine[Any, Any, Any]) -> None:
        try:
            await awaitable
        except (SimError, OCPPError, TimeoutError) as exc:
            log.debug("%s: %r", self.charge_point_id, exc)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if (
            not task.cancelled()
            and (exc := task.exception()) is not None
            and not isinstance(exc, SimError | OCPPError | TimeoutError)
        ):
            log.warning("%s: task failed: %r", self.charge_point_id, exc)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _record(self, action: str, payload: dict[str, Any]) -> None:
        _append_bounded(self.calls_received, (action, payload))

    # ------------------------------------------------------------------ load mode

    @property
    def load_busy(self) -> bool:
        """A bench message of :meth:`begin_load_tick` is waiting for its answer."""
        return self._load_busy

    def begin_load_tick(
        self, *, status_share: float = 0.5, statuses: Sequence[str] = (AVAILABLE, PREPARING)
    ) -> bool:
        """Start one bench message unless offline or the previous one is still unanswered
        (one CALL at a time, as OCPP wants); False when skipped."""
        if not self.online or self._load_busy:
            return False
        self._load_busy = True
        self._spawn(self._load_tick(status_share, statuses))
        return True

    async def _load_tick(self, status_share: float, statuses: Sequence[str]) -> None:
        """A StatusNotification (flipping between ``statuses``) or a MeterValues (register
        up, random power) on the next connector, round robin."""
        try:
            self._load_count += 1
            conns = list(self.connectors.values())
            conn = conns[self._load_count % len(conns)]
            if self._rng.random() < status_share:
                status = statuses[1] if conn.status == statuses[0] else statuses[0]
                conn.status = status
                payload = self._status_payload(conn.connector_id, status, conn.error_code)
            else:
                conn.power_w = self._rng.uniform(1_000.0, conn.max_power_w)
                conn.meter_wh += conn.power_w / 60.0
                payload = self._meter_values_payload(conn)
            await self._call(payload)
        except (SimError, OCPPError, TimeoutError):
            pass  # counted in self.stats
        finally:
            self._load_busy = False


def _energy_sample(value_wh: int, context: str) -> dict[str, str]:
    return {
        "value": str(value_wh),
        "context": context,
        "measurand": "Energy.Active.Import.Register",
        "location": "Outlet",
        "unit": "Wh",
    }


async def connect(
    url_base: str,
    charge_point_id: str,
    password: str | None,
    *,
    connectors: Sequence[int | ConnectorSpec] = (1,),
    iccid: str | None = None,
    imsi: str | None = None,
    heartbeat_override: float | None = None,
    options: SimOptions | None = None,
    clock: Clock | None = None,
    timeout_s: float = 10.0,
) -> SimCharger:
    """Start a SimCharger and return it once it is online (booted, statuses sent).

    On timeout it is closed and TimeoutError names the last connection error (e.g. a
    401 when the password is wrong).
    """
    charger = SimCharger(
        url_base,
        charge_point_id,
        password,
        connectors=connectors,
        iccid=iccid,
        imsi=imsi,
        heartbeat_override=heartbeat_override,
        options=options,
        clock=clock,
    )
    charger.start()
    try:
        await charger.wait_online(timeout_s)
    except BaseException:
        await charger.close()
        raise
    return charger
