"""arq jobs of the reservations domain. Each takes ids, reloads state and is safe twice.

- `begin_reservation_slot` (outbox, `available_at` = the slot's start): the slot holds the
  connector from now and the charger receives ReserveNow (retried while it refuses).
- `release_reservation` (outbox row written by `reservation_cancel`, due 30 s later):
  CancelReservation at the charger when the API's own attempt right after the cancel did
  not settle it.
- `move_reservations` (outbox row written by a trigger when a charger is hidden): move each
  live reservation to a twin connector or cancel it, with the driver's SMS.
- `resync_charger_reservations` (outbox row written by a trigger on reconnect).
- `expire_reservations` (cron, every 5 s): EXPIRED past `expires_at`, connectors freed.

The move must reach the driver within 5 s of the charger being hidden, and the relay
sweeps every 5 s, so the worker also LISTENs on `vw_reservations` (the trigger NOTIFYs
the new outbox id on commit) and runs the relay at once: the job starts within
milliseconds. After a move the relay runs again, so the SMS and follow-up jobs do not
wait for the sweep either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import asyncpg

from app.chargers.commands import commands_from
from app.core import outbox
from app.core.listen import Listener
from app.core.settings import Settings
from app.reservations import service

log = logging.getLogger("app.reservations")
CHANNEL: Final = "vw_reservations"
T = TypeVar("T")


def _config(ctx: dict[str, Any]) -> service.ReservationsConfig:
    config = ctx.get("reservations_config")
    if not isinstance(config, service.ReservationsConfig):
        config = ctx["reservations_config"] = service.config_from_env()
    return config


def _now() -> datetime:
    return datetime.now(UTC)


async def _step(
    ctx: dict[str, Any], outbox_id: int, step: Callable[..., Awaitable[T]], **ids: Any
) -> T:
    """Run one service step for an outbox job (with the charger commands, the clock and the
    config) and mark the outbox row done on the same connection."""
    pool: asyncpg.Pool = ctx["pool"]
    async with pool.acquire() as conn:
        outcome = await step(conn, commands_from(ctx), now=_now(), config=_config(ctx), **ids)
        await outbox.mark_done(conn, outbox_id)
    return outcome


async def begin_reservation_slot(
    ctx: dict[str, Any], outbox_id: int, *, reservation_id: str, attempt: int = 0
) -> str:
    return await _step(
        ctx,
        outbox_id,
        service.begin_slot,
        reservation_id=uuid.UUID(reservation_id),
        attempt=attempt,
    )


async def release_reservation(ctx: dict[str, Any], outbox_id: int, *, reservation_id: str) -> str:
    return await _step(
        ctx, outbox_id, service.release_at_charger, reservation_id=uuid.UUID(reservation_id)
    )


async def move_reservations(ctx: dict[str, Any], outbox_id: int, *, charger_id: str) -> int:
    outcomes = await _step(
        ctx, outbox_id, service.move_off_charger, charger_id=uuid.UUID(charger_id)
    )
    if outcomes:
        log.info("reservations of charger %s: %s", charger_id, outcomes)
        await _relay_quietly(ctx)  # the SMS and the moved slots' jobs, now
    return len(outcomes)


async def resync_charger_reservations(
    ctx: dict[str, Any], outbox_id: int, *, charger_id: str
) -> dict[str, int]:
    return await _step(ctx, outbox_id, service.resync_charger, charger_id=uuid.UUID(charger_id))


async def expire_reservations(ctx: dict[str, Any]) -> int:
    """Cron: CONFIRMED reservations past their expiry → EXPIRED, stale PENDING holds
    swept (safe to run twice)."""
    pool: asyncpg.Pool = ctx["pool"]
    now = _now()
    async with pool.acquire() as conn, conn.transaction():
        expired = await service.expire(conn, now=now)
    if "ocpp_commands" in ctx:
        await service.sweep_pending(pool, commands_from(ctx), now=now, config=_config(ctx))
    return expired


FUNCTIONS: Final[list[Any]] = [
    begin_reservation_slot,
    release_reservation,
    move_reservations,
    resync_charger_reservations,
    expire_reservations,
]


# ---------------------------------------------------------------- wake-up on NOTIFY


async def _relay_quietly(ctx: dict[str, Any]) -> None:
    try:
        await outbox.relay_outbox(ctx)
    except (OSError, asyncpg.PostgresError) as exc:  # the cron relay will do it
        log.warning("outbox relay after a reservation change failed: %r", exc)


class RelayKicker:
    """Runs the outbox relay once per burst of notifications (never two at a time)."""

    def __init__(self, ctx: dict[str, Any]) -> None:
        self.ctx = ctx
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def kick(self, _payload: str = "") -> None:
        self._wanted.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._wanted.is_set():
            self._wanted.clear()
            await _relay_quietly(self.ctx)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def start_listener(ctx: dict[str, Any]) -> None:
    """Worker start-up: LISTEN on vw_reservations and run the relay on each NOTIFY."""
    settings: Settings = ctx["settings"]
    kicker = RelayKicker(ctx)
    listener = Listener(settings.database_url, CHANNEL, kicker.kick, kicker.kick)
    listener.start()
    ctx["reservations_listener"] = (listener, kicker)


async def stop_listener(ctx: dict[str, Any]) -> None:
    pair = ctx.pop("reservations_listener", None)
    if pair is not None:
        listener, kicker = pair
        await listener.stop()
        await kicker.stop()
