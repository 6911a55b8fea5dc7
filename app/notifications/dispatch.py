"""The SMS dispatcher: the worker's fast path from PostgreSQL to Twilio.

One arq job per message costs a couple of dozen Redis round trips (enqueue, start, finish)
— more than the Twilio request itself. So each worker also runs this loop: woken by the
`vw_sms` NOTIFY of new messages (and every half second for paced ones whose slot came),
it leases a batch of due messages (`FOR UPDATE SKIP LOCKED`: workers never share one) and
sends them concurrently through the same `deliver` as the `send_sms` job — suppression,
pacing, in-doubt lookup, retries, outbox row done in the same statement as the send.

The outbox stays the guarantee: an alert's outbox row becomes due for the relay only
`FAST_PATH_GRACE_S` after it was queued, so whatever the dispatcher did not finish by then
(a worker killed mid-send, no worker listening) goes through arq's `send_sms` as before,
and a lease that ran out is picked up by `recover_sms`. The dispatcher needs no Redis
unless pacing is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any, Final

from app.core.clock import Clock
from app.notifications import queries
from app.notifications.tasks import Later, deliver_claimed, lease_s

log = logging.getLogger("app.notifications.dispatch")
CONCURRENCY: Final = 50  # messages in flight per worker process
IDLE_POLL_S: Final = 0.5  # how often a quiet dispatcher looks for paced messages now due


class Dispatcher:
    def __init__(self, ctx: dict[str, Any]) -> None:
        self.ctx = ctx
        self.wanted = asyncio.Event()
        self.inflight: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None
        self.sent = 0

    def wake(self) -> None:
        self.wanted.set()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="sms-dispatcher")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        # messages in flight keep their lease: recover_sms or arq finish them
        for t in list(self.inflight):
            t.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_POLL_S):
                    await self.wanted.wait()
            self.wanted.clear()
            try:
                await self._drain()
            except Exception as exc:  # PostgreSQL away: the outbox relay is the safety net
                log.warning("SMS dispatcher: %r", exc)
                await asyncio.sleep(1.0)

    async def _drain(self) -> None:
        clock: Clock = self.ctx.get("clock") or Clock()
        lease = timedelta(seconds=lease_s(self.ctx["settings"]))
        while True:
            free = CONCURRENCY - len(self.inflight)
            if free <= 0:
                await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            now = clock.now()
            rows = await queries.claim_due_messages(
                self.ctx["pool"], limit=free, lease_until=now + lease, now=now
            )
            if not rows:
                return
            for row in rows:
                task = asyncio.create_task(self._one(row))
                self.inflight.add(task)
                task.add_done_callback(self.inflight.discard)

    async def _one(self, row: queries.DueMessage) -> None:
        clock: Clock = self.ctx.get("clock") or Clock()
        try:
            await deliver_claimed(self.ctx, row.outbox_id or 0, row, clock.now())
            self.sent += 1
        except Later:
            pass  # back in the queue with its slot (`send_after`): claimed again then
        except Exception as exc:  # the lease runs out and recover_sms / arq take over
            log.warning("SMS %s: dispatch failed: %r", row.message_id, exc)
