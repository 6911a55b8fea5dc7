"""A throw-away OCPP 1.6 central system for the simulator's tests, built with the same
ocpp library (central-system role): Basic auth checked at the upgrade, every message kept."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar, cast

from ocpp.routing import on as _ocpp_on
from ocpp.v16 import ChargePoint, call_result
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from app.sim.charge_point import ocpp_timestamp

_F = TypeVar("_F", bound=Callable[..., Any])


def on(action: str) -> Callable[[_F], _F]:
    """Typed wrapper of ``ocpp.routing.on`` (the library ships no type hints)."""
    return cast(Callable[[_F], _F], _ocpp_on(action))


PASSWORDS = {"CP-1": "cp-one-password-0001", "CP-2": "cp-two-password-0002"}


@dataclass
class Received:
    cp_id: str
    connection: int  # 1 for the first connection of that charger, 2 after a reconnect…
    action: str
    payload: dict[str, Any]


class CentralSystemSide(ChargePoint):  # type: ignore[misc]
    """One connected charger as the central system sees it."""

    def __init__(self, cp_id: str, ws: ServerConnection, cs: CentralSystem, n: int) -> None:
        super().__init__(cp_id, ws, response_timeout=2)
        self.cs = cs
        self.n = n

    def _got(self, action: str, payload: dict[str, Any]) -> None:
        self.cs.record(Received(self.id, self.n, action, payload))

    @on("BootNotification")
    def on_boot_notification(self, **payload: Any) -> Any:
        self._got("BootNotification", payload)
        return call_result.BootNotification(
            current_time=ocpp_timestamp(datetime.now(UTC)),
            interval=self.cs.heartbeat_interval,
            status="Accepted",
        )

    @on("Heartbeat")
    def on_heartbeat(self, **payload: Any) -> Any:
        self._got("Heartbeat", payload)
        return call_result.Heartbeat(current_time=ocpp_timestamp(datetime.now(UTC)))

    @on("StatusNotification")
    def on_status_notification(self, **payload: Any) -> Any:
        self._got("StatusNotification", payload)
        return call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **payload: Any) -> Any:
        self._got("Authorize", payload)
        status = "Invalid" if payload["id_tag"] == "UNKNOWN" else "Accepted"
        return call_result.Authorize(id_tag_info={"status": status})

    @on("StartTransaction")
    def on_start_transaction(self, **payload: Any) -> Any:
        self._got("StartTransaction", payload)
        status = "Blocked" if payload["id_tag"] == "BLOCKED" else "Accepted"
        return call_result.StartTransaction(
            transaction_id=next(self.cs.transaction_ids), id_tag_info={"status": status}
        )

    @on("StopTransaction")
    async def on_stop_transaction(self, **payload: Any) -> Any:
        self._got("StopTransaction", payload)
        delay, self.cs.stop_answer_delays = (
            self.cs.stop_answer_delays[:1],
            self.cs.stop_answer_delays[1:],
        )
        if delay:
            await asyncio.sleep(delay[0])  # answer late: the charger times out and retries
        return call_result.StopTransaction(id_tag_info={"status": "Accepted"})

    @on("MeterValues")
    def on_meter_values(self, **payload: Any) -> Any:
        self._got("MeterValues", payload)
        return call_result.MeterValues()


class CentralSystem:
    """Checks Basic auth at the upgrade, keeps every message it receives."""

    def __init__(self, passwords: dict[str, str] | None = None) -> None:
        self.passwords = PASSWORDS if passwords is None else passwords
        self.url = ""
        self.heartbeat_interval = 60
        self.stop_answer_delays: list[float] = []
        self.transaction_ids = itertools.count(1001)
        self.received: list[Received] = []
        self.chargers: dict[str, CentralSystemSide] = {}
        self.connections: dict[str, int] = {}
        self.refused = 0
        self._waiters: list[asyncio.Future[None]] = []

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        cp_id = request.path.rsplit("/", 1)[-1]
        expected = self.passwords.get(cp_id)
        token = base64.b64encode(f"{cp_id}:{expected}".encode()).decode()
        if expected is None or request.headers.get("Authorization") != f"Basic {token}":
            self.refused += 1
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        assert ws.subprotocol == "ocpp1.6"
        cp_id = ws.request.path.rsplit("/", 1)[-1]
        n = self.connections[cp_id] = self.connections.get(cp_id, 0) + 1
        side = self.chargers[cp_id] = CentralSystemSide(cp_id, ws, self, n)
        with contextlib.suppress(ConnectionClosed):
            await side.start()

    def record(self, message: Received) -> None:
        self.received.append(message)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def messages(
        self, action: str, cp_id: str = "CP-1", where: Callable[[dict[str, Any]], bool] = bool
    ) -> list[Received]:
        return [
            m
            for m in self.received
            if m.action == action and m.cp_id == cp_id and (where(m.payload) or not m.payload)
        ]

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter

    async def wait_for(
        self,
        action: str,
        cp_id: str = "CP-1",
        where: Callable[[dict[str, Any]], bool] = bool,
        timeout_s: float = 5.0,
    ) -> Received:
        async with asyncio.timeout(timeout_s):
            while True:
                found = self.messages(action, cp_id, where)
                if found:
                    return found[0]
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter

    def statuses(self, connector_id: int, cp_id: str = "CP-1") -> list[str]:
        return [
            m.payload["status"]
            for m in self.messages("StatusNotification", cp_id)
            if m.payload["connector_id"] == connector_id
        ]


@contextlib.asynccontextmanager
async def running_central_system(
    passwords: dict[str, str] | None = None,
) -> AsyncIterator[CentralSystem]:
    """Serve on 127.0.0.1, a free port; ``central.url`` is the OCPP base URL."""
    central = CentralSystem(passwords)
    async with serve(
        central.handler,
        "127.0.0.1",
        0,
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        process_request=central.process_request,
        compression=None,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        central.url = f"ws://127.0.0.1:{port}/ocpp"
        yield central
