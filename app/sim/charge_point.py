"""OCPP 1.6J charge-point simulator built on the ``ocpp`` library in the charge-point role.

One :class:`SimCharger` is one simulated charger: it connects over WebSocket (subprotocol
``ocpp1.6``, HTTP Basic auth), boots, heartbeats, reports connector statuses, answers the
central system's commands and, once a transaction starts, charges a virtual
:class:`~app.sim.vehicle.Vehicle` and sends MeterValues. It reconnects with back-off and
queues transaction messages (StopTransaction, MeterValues) while offline, as OCPP 1.6
requires. It costs two asyncio tasks while idle (reader, heartbeat/outbox) and no
threads, so 10,000 of them fit in one process.

This module is the charger's public face and its state; the concerns live beside it:

- :mod:`app.sim.transport` — connection loop (:class:`~app.sim.transport.Link`), the
  ``ocpp`` ChargePoint of a connection, call statistics;
- :mod:`app.sim.outbox` — transaction messages kept and retried across disconnects;
- :mod:`app.sim.transactions` — Start/StopTransaction and the car charging;
- :mod:`app.sim.commands` — the central system's commands (RemoteStart, ReserveNow, ...);
- :mod:`app.sim.messages` — the CALL payloads; :mod:`app.sim.state`,
  :mod:`app.sim.options` — connectors/transactions and the knobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

from ocpp.exceptions import OCPPError

from app.core.clock import Clock
from app.sim import library, messages, transactions
from app.sim.messages import Outgoing, ocpp_timestamp
from app.sim.options import ConnectorSpec, SessionPlan, SimOptions, StopReason
from app.sim.outbox import Outbox
from app.sim.state import (
    AVAILABLE,
    PREPARING,
    AcceleratedClock,
    Connector,
    Reservation,
    SimError,
    SimOfflineError,
    SimStateError,
    Transaction,
    append_bounded,
)
from app.sim.transport import CallStats, Link, Session, SimChargePoint

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

log = logging.getLogger("app.sim")


class SimCharger:
    """One simulated charger: connector state, transactions, cars, and its connection."""

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
        library.prepare()
        self.charge_point_id = charge_point_id
        self.options = options or SimOptions()
        self.iccid = iccid
        self.imsi = imsi
        self.heartbeat_override = heartbeat_override
        self.clock = clock or Clock()
        self.stats = stats or CallStats()
        self._rng = rng or random.Random()  # jitter, not security
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
        self.configuration: dict[str, str] = {}
        self.closing = False

        self.outbox = Outbox(self.options)
        self._link = Link(
            self,
            f"{url_base.rstrip('/')}/{charge_point_id}",
            password,
            gate=connect_gate,
            rng=self._rng,
        )
        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ignore_all = False
        self._ignored_actions: frozenset[str] = frozenset()
        self._pending_remote: dict[str, tuple[int, str]] = {}
        self._status_due: dict[int, Connector] = {}  # CancelReservation → status after reply
        self._load_busy = False
        self._load_count = 0

    @property
    def url(self) -> str:
        return self._link.url

    @property
    def dropped_meter_values(self) -> int:
        """Periodic samples dropped because the outbox was full while offline."""
        return self.outbox.dropped_meter_values

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the connection loop (connect, boot, reconnect on loss) in the background."""
        if not self._link.running:
            self.closing = False
            self._link.start()

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
        self.closing = True
        for conn in self.connectors.values():
            if conn.charging_task is not None:
                conn.charging_task.cancel()
            if conn.reservation is not None and conn.reservation.expiry_task is not None:
                conn.reservation.expiry_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self._link.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        self.outbox.cancel_all()
        self._notify()

    async def __aenter__(self) -> SimCharger:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def drop_connection(self, *, reconnect: bool = True) -> None:
        """Abort the socket without a close frame (cable cut); reconnect with back-off,
        or stay offline until :meth:`reconnect` when ``reconnect=False``."""
        self._link.abort(reconnect=reconnect)

    def reconnect(self) -> None:
        """Allow connecting again and skip the current back-off wait."""
        self._link.allow_connect.set()
        self._link.kick.set()

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
        return len(self.outbox)

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued transaction message has been delivered (or given up)."""
        await self.wait_until(lambda: not self.outbox, timeout_s)

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
            await self._call(self.status_payload(0, status, error_code, info))
            return
        conn = self._connector(connector_no)
        conn.status, conn.error_code = status, error_code
        self._notify()
        await self._call(self.status_payload(connector_no, status, error_code, info))

    async def authorize(self, id_tag: str) -> dict[str, Any]:
        """Authorize.req; returns idTagInfo as the central system sent it (camelCase→snake)."""
        result = await self._call(("Authorize", {"idTag": id_tag}))
        return cast(dict[str, Any], library.camel_to_snake_case(result.get("idTagInfo", {})))

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
        return await transactions.start(self, conn, id_tag, reservation_id, plan, charge)

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
        task = self._spawn(transactions.end(self, conn, reason))
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
        payload = self.meter_values_payload(conn, context=context)
        if conn.transaction is None:
            await self._call(payload)
            return
        future = self._enqueue(payload, want_result=wait)
        if future is not None:
            await future

    def transaction(self, connector_no: int) -> Transaction | None:
        """The running transaction on a connector, if any."""
        return self._connector(connector_no).transaction

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
            if conn.transaction is not None or conn.claimed:
                return  # a car charges here: its own status and meter values only
            # (a reserved connector keeps its status: nobody else plugs in there)
            if self._rng.random() < status_share and conn.reservation is None:
                status = statuses[1] if conn.status == statuses[0] else statuses[0]
                conn.status = status
                payload = self.status_payload(conn.connector_id, status, conn.error_code)
            else:
                conn.power_w = self._rng.uniform(1_000.0, conn.max_power_w)
                conn.meter_wh += conn.power_w / 60.0
                payload = self.meter_values_payload(conn)
            await self._call(payload)
        except (SimError, OCPPError, TimeoutError):
            pass  # counted in self.stats
        finally:
            self._load_busy = False

    # ------------------------------------------------- used by the concern modules

    def boot_payload(self) -> Outgoing:
        return messages.boot_notification(self.options, self.iccid, self.imsi)

    def status_payload(
        self, connector_no: int, status: str, error_code: str, info: str | None = None
    ) -> Outgoing:
        return messages.status_notification(
            connector_no, status, error_code, self.clock.now(), info
        )

    def meter_values_payload(
        self, conn: Connector, *, context: str = "Sample.Periodic"
    ) -> Outgoing:
        return messages.meter_values(conn, self.clock.now(), context=context)

    async def _call(self, message: Outgoing, session: Session | None = None) -> dict[str, Any]:
        return await self._link.call(message, session)

    def _enqueue(
        self, message: Outgoing, *, want_result: bool
    ) -> asyncio.Future[dict[str, Any]] | None:
        future = self.outbox.put(message, want_result=want_result)
        self._notify()
        return future

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

    async def _update_status(self, conn: Connector, status: str) -> None:
        """Set and report a status; offline or unanswered is fine (re-sent on boot)."""
        conn.status = status
        self._notify()
        await self._send_status(conn)
        self._notify()  # again once reported, for waiters that look at the other side

    async def _send_status(self, conn: Connector) -> None:
        if not self._link.online:
            return
        payload = self.status_payload(conn.connector_id, conn.status, conn.error_code)
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
        append_bounded(self.calls_received, (action, payload))


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
