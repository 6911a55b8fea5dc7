"""Transaction messages a charger must not lose: queued in order, kept while offline.

OCPP 1.6 asks a charger to deliver StartTransaction, StopTransaction and the MeterValues of
a transaction even across connection losses, retrying a timed-out one
``TransactionMessageAttempts`` times ``TransactionMessageRetryInterval`` apart. The
connection's session worker delivers the head of the queue whenever it is online.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ocpp.exceptions import OCPPError

from app.sim.messages import Outgoing
from app.sim.options import SimOptions
from app.sim.state import Wakeup

__all__ = ["Outbox", "TxMessage"]

log = logging.getLogger("app.sim")


@dataclass(slots=True, eq=False)
class TxMessage:
    message: Outgoing
    future: asyncio.Future[dict[str, Any]] | None
    attempts: int = 0


class Outbox:
    """The queue of one charger; ``wakeup`` is set whenever something was queued."""

    __slots__ = ("_items", "_options", "dropped_meter_values", "wakeup")

    def __init__(self, options: SimOptions) -> None:
        self._options = options
        self._items: deque[TxMessage] = deque()
        self.wakeup = Wakeup()
        self.dropped_meter_values = 0  # overflow while offline

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Outgoing, *, want_result: bool) -> asyncio.Future[dict[str, Any]] | None:
        """Queue a message; with ``want_result`` a future gets its CallResult payload."""
        future: asyncio.Future[dict[str, Any]] | None = None
        if want_result:
            future = asyncio.get_running_loop().create_future()
        if len(self._items) >= self._options.max_outbox:
            # Storage full, as on a real charger: the oldest periodic sample goes first;
            # Start/StopTransaction are never dropped.
            for queued in self._items:
                if queued.message[0] == "MeterValues" and queued.future is None:
                    self._items.remove(queued)
                    self.dropped_meter_values += 1
                    break
        self._items.append(TxMessage(message, future))
        self.wakeup.set()
        return future

    async def deliver_head(
        self, call: Callable[[Outgoing], Awaitable[dict[str, Any]]], charge_point_id: str
    ) -> None:
        """Send the oldest message with ``call``; drop it once answered, refused or out of
        attempts (its future gets the outcome)."""
        message = self._items[0]
        try:
            result = await call(message.message)
        except OCPPError as exc:  # a CallError: retrying the same message will not help
            self._items.popleft()
            _settle(message, exc=exc)
        except TimeoutError as exc:
            message.attempts += 1
            if message.attempts >= self._options.tx_message_attempts:
                self._items.popleft()
                log.warning(
                    "%s: giving up %s after %d attempts",
                    charge_point_id,
                    message.message[0],
                    message.attempts,
                )
                _settle(message, exc=exc)
            else:
                await asyncio.sleep(self._options.tx_retry_interval_s)
        else:
            self._items.popleft()
            _settle(message, result=result)

    def cancel_all(self) -> None:
        """The charger is closing: nothing queued will be delivered."""
        while self._items:
            message = self._items.popleft()
            if message.future is not None and not message.future.done():
                message.future.cancel()


def _settle(
    message: TxMessage, *, result: dict[str, Any] | None = None, exc: BaseException | None = None
) -> None:
    future = message.future
    if future is None or future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert result is not None
        future.set_result(result)
