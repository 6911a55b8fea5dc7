"""Session jobs (arq, through the outbox) and the sweep of starts that never began.

- `session_hold_low(ctx, outbox_id, session_id)`: the running cost of a session reached
  90 % of what is authorised (queued once per hold level by the MeterValues path). It
  re-checks from PostgreSQL, tries one more hold (`SESSION_MAX_HOLDS` in all, the same
  amount, idempotency key from the session id and the hold's number), and when that is
  not possible stops the session (RemoteStopTransaction) and tells the driver by SMS
  (`hold_exhausted`) — once: `hold_exhausted_at` is set in the transaction that queues the
  alert. Safe to run twice: a repeat finds the hold recorded or the session marked.
- `sweep_starting(ctx)` (cron): STARTING sessions older than `SESSION_START_TIMEOUT_S`
  (RemoteStart accepted but no StartTransaction, or the API process died before it sent
  it) become FAILED and their holds are released.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
from arq import Retry

from app.chargers.commands import CommandError, commands_from
from app.core import outbox
from app.core.clock import Clock
from app.core.settings import Settings
from app.notifications import alerts
from app.payments import service as payments
from app.payments.tasks import gateway_from
from app.sessions import billing, queries, service, state

log = logging.getLogger("app.sessions.tasks")
MAX_TRIES = 5


def _clock(ctx: dict[str, Any]) -> Clock:
    clock: Clock = ctx.get("clock") or Clock()
    return clock


async def session_hold_low(ctx: dict[str, Any], outbox_id: int, session_id: str) -> str:
    """See the module docstring; returns what happened (for arq's result and tests)."""
    pool: asyncpg.Pool = ctx["pool"]
    settings: Settings = ctx["settings"]
    now = _clock(ctx).now()
    sid = uuid.UUID(session_id)
    row = await queries.session(pool, session_id=sid)
    if row is None or row.status not in state.LIVE or row.preauth_minor is None:
        await outbox.mark_done(pool, outbox_id)
        return "not_running"
    if row.hold_exhausted_at is None:
        cost = await service.running_cost(pool, row, now)
        if cost is None or not billing.hold_low(cost, row.preauth_minor):
            await outbox.mark_done(pool, outbox_id)
            return "enough"
        if row.holds < settings.session_max_holds and row.driver_id is not None:
            gateway = gateway_from(ctx)
            try:
                if gateway is None:
                    raise payments.PaymentsUnavailable("payments are not configured")
                hold = await payments.place_hold(
                    pool,
                    gateway,
                    driver_id=row.driver_id,
                    amount_minor=settings.payment_hold_minor,
                    currency=row.currency or "EUR",
                    idempotency_key=service.hold_key(sid, row.holds + 1),
                    metadata={"session_id": session_id, "hold": row.holds + 1},
                    session_id=sid,
                    now=now,
                )
            except (payments.CardDeclined, payments.PaymentMethodRequired) as exc:
                log.info("further hold for session %s refused: %s", session_id, exc)
            except payments.PaymentsUnavailable:
                if ctx.get("job_try", 1) < MAX_TRIES:
                    raise Retry(defer=5 * ctx.get("job_try", 1)) from None
                log.warning("payments unavailable: session %s stops at its hold", session_id)
            else:
                async with outbox.closing(pool, outbox_id) as conn:
                    await queries.hold_placed(conn, session_id=sid, amount_minor=hold.amount_minor)
                return "further_hold"
        async with pool.acquire() as conn, conn.transaction():
            if await queries.mark_hold_exhausted(conn, session_id=sid, now=now) and row.driver_id:
                await alerts.queue_alert(
                    conn,
                    kind="hold_exhausted",
                    driver_id=row.driver_id,
                    now=now,
                    session_id=sid,
                    facts={
                        "hold_minor": row.preauth_minor,
                        "cost_minor": cost,
                        "currency": row.currency,
                        "energy_wh": row.energy_wh,
                    },
                )
    try:
        result = await commands_from(ctx).remote_stop(
            row.charge_point_id,
            transaction_id=row.transaction_id,
            timeout_s=settings.session_remote_start_timeout_s,
        )
    except CommandError as exc:
        if ctx.get("job_try", 1) < MAX_TRIES:
            raise Retry(defer=5 * ctx.get("job_try", 1)) from None
        log.warning("could not stop session %s at its hold: %s", session_id, exc)
        await outbox.mark_done(pool, outbox_id)
        return "stop_failed"
    await outbox.mark_done(pool, outbox_id)
    return "stopped" if result.status == "Accepted" else "stop_rejected"


async def sweep_starting(ctx: dict[str, Any]) -> int:
    """Cron: fail the starts that never began and release their holds."""
    return await service.sweep_starting(ctx["pool"], ctx["settings"], _clock(ctx).now())
