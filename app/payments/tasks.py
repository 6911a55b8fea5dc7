"""Payment jobs (arq, through the outbox) and the reconciliation cron.

- `capture_payment(ctx, outbox_id, payment_intent_id)`: carries out the capture decided in
  `payment_captures` (0 = release the hold) with the decision's own idempotency key. A
  transient failure (network, Stripe 5xx after the library's retries) schedules the next
  attempt as a new outbox row (`capture:<pi>:<attempt>`, exponential back-off); after
  `PAYMENT_CAPTURE_MAX_ATTEMPTS`, or when Stripe refuses for good, the decision is
  `flagged` and an operator alert raised. An attempt whose answer was lost is recognised by
  re-reading the PaymentIntent, and the decision is one row per PaymentIntent: a double
  capture is impossible.
- `charge_extra_payment(ctx, outbox_id, session_id)`: the second, off-session payment for
  what a bill exceeds the holds by; declined → operator alert + `payment_failed` SMS.
- `reconcile_payments(ctx)` (cron): holds older than `PAYMENT_STALE_HOLD_S` with no capture
  decided (released when the session failed or does not exist, alerted otherwise), capture
  decisions that stalled or were flagged, and PaymentIntents whose state Stripe may know
  better (re-read and applied; disagreements alerted).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg
import stripe

from app.core import outbox
from app.core.clock import Clock
from app.core.settings import Settings
from app.payments import queries as q
from app.payments import service
from app.payments.stripe_client import Gateway, StripeUnavailable

log = logging.getLogger("app.payments.tasks")

RECONCILE_BATCH: Final = 100
# A capture decision not done after this long is looked at by the reconciliation.
CAPTURE_STALL_S: Final = 15 * 60.0
# PaymentIntents untouched this long in a non-final state are re-read from Stripe.
RECHECK_AFTER_S: Final = 3600.0


def gateway_from(ctx: dict[str, Any]) -> Gateway | None:
    """The worker's Stripe client (built on first use when startup did not)."""
    if "stripe" not in ctx:
        ctx["stripe"] = Gateway.from_settings(ctx["settings"])
    gateway: Gateway | None = ctx["stripe"]
    return gateway


async def close_stripe(ctx: dict[str, Any]) -> None:
    """Worker shutdown: close the Stripe client's HTTP connections."""
    gateway = ctx.pop("stripe", None)
    if gateway is not None:
        await gateway.aclose()


def _clock(ctx: dict[str, Any]) -> Clock:
    clock: Clock = ctx.get("clock") or Clock()
    return clock


def backoff_s(attempt: int) -> float:
    """5 s, 10 s, 20 s … capped at 10 minutes."""
    return float(min(600, 5 * 2 ** max(0, attempt - 1)))


def _configured_gateway(ctx: dict[str, Any]) -> Gateway:
    """The worker's Stripe client; none configured is a failure the job retries."""
    gateway = gateway_from(ctx)
    if gateway is None:
        raise service.PaymentsUnavailable("STRIPE_SECRET_KEY is not set")
    return gateway


async def capture_payment(ctx: dict[str, Any], outbox_id: int, payment_intent_id: str) -> str:
    """One attempt at a decided capture; returns what happened (`succeeded`, `retry`,
    `flagged`, or the decision's final status when there was nothing to do)."""
    pool: asyncpg.Pool = ctx["pool"]
    settings: Settings = ctx["settings"]
    decided = await q.capture_row(pool, payment_intent_id=payment_intent_id)
    if decided is None or decided.status in ("succeeded", "flagged"):
        await outbox.mark_done(pool, outbox_id)
        return decided.status if decided else "missing"
    error: str
    permanent = False
    try:
        outcome = await service.capture(
            _configured_gateway(ctx),
            payment_intent_id=payment_intent_id,
            amount_minor=decided.amount_minor,
            idempotency_key=decided.idempotency_key,
        )
    except service.PaymentsUnavailable as exc:
        error = exc.detail
    except service.CaptureFailed as exc:
        error, permanent = exc.detail, True
    else:
        now = _clock(ctx).now()
        async with outbox.closing(pool, outbox_id) as conn:
            await service.record_outcome(conn, outcome, now=now)
        return "succeeded"
    now = _clock(ctx).now()
    async with outbox.closing(pool, outbox_id) as conn:
        give_up = permanent or decided.attempts + 1 >= settings.payment_capture_max_attempts
        attempts = await q.capture_attempt_failed(
            conn, payment_intent_id=payment_intent_id, error=error, give_up=give_up, now=now
        )
        if attempts is not None and give_up:
            row = await q.payment(conn, payment_intent_id=payment_intent_id)
            await service.raise_alert(
                conn,
                kind="payment_capture_failed",
                reason="refused" if permanent else "unavailable",
                dedupe_key=f"capture_failed:{payment_intent_id}",
                now=now,
                payment_intent_id=payment_intent_id,
                session_id=row.session_id if row else None,
                detail={"amount_minor": decided.amount_minor, "attempts": attempts, "error": error},
            )
        elif attempts is not None:
            await outbox.enqueue(
                conn,
                job=service.CAPTURE_JOB,
                args={"payment_intent_id": payment_intent_id},
                dedupe_key=f"capture:{payment_intent_id}:{attempts}",
                available_at=now + timedelta(seconds=backoff_s(attempts)),
            )
    log.warning(
        "capture of %s failed (%s): %s",
        payment_intent_id,
        "flagged" if give_up else "retrying",
        error,
    )
    return "flagged" if give_up else "retry"


async def charge_extra_payment(ctx: dict[str, Any], outbox_id: int, session_id: str) -> str:
    """One attempt at a session's extra payment; returns `succeeded`, `declined`, `retry`,
    `flagged` or the final status found."""
    pool: asyncpg.Pool = ctx["pool"]
    settings: Settings = ctx["settings"]
    session = uuid.UUID(session_id)
    extra = await q.extra_row(pool, session_id=session)
    if extra is None or extra.status != "pending":
        await outbox.mark_done(pool, outbox_id)
        return extra.status if extra else "missing"
    status = "pending"
    error = ""
    try:
        payment = await service.charge_extra(
            pool,
            _configured_gateway(ctx),
            driver_id=extra.driver_id,
            amount_minor=extra.amount_minor,
            currency=extra.currency,
            idempotency_key=extra.idempotency_key,
            metadata={"session_id": session},
            session_id=session,
            now=_clock(ctx).now(),
        )
    except (service.CardDeclined, service.PaymentMethodRequired) as exc:
        status, error = "declined", exc.detail
    except service.PaymentsUnavailable as exc:
        error = exc.detail
    else:
        now = _clock(ctx).now()
        async with outbox.closing(pool, outbox_id) as conn:
            await q.extra_succeeded(
                conn, session_id=session, payment_intent_id=payment.payment_intent_id, now=now
            )
        return "succeeded"
    now = _clock(ctx).now()
    async with outbox.closing(pool, outbox_id) as conn:
        if status != "declined" and extra.attempts + 1 >= settings.payment_capture_max_attempts:
            status = "flagged"
        recorded = await q.payment_by_key(conn, idempotency_key=extra.idempotency_key)
        attempts = await q.extra_attempt_failed(
            conn,
            session_id=session,
            error=error,
            status=status,
            payment_intent_id=recorded.payment_intent_id if recorded else None,
            now=now,
        )
        if attempts is not None and status in ("declined", "flagged"):
            await service.raise_alert(
                conn,
                kind="payment_extra_failed",
                reason=status,
                dedupe_key=f"extra_failed:{session}",
                now=now,
                payment_intent_id=recorded.payment_intent_id if recorded else None,
                session_id=session,
                detail={
                    "amount_minor": extra.amount_minor,
                    "currency": extra.currency,
                    "error": error,
                },
            )
            if status == "declined":
                await _tell_driver(
                    conn, extra.driver_id, session, extra.amount_minor, extra.currency, now
                )
        elif attempts is not None:
            await outbox.enqueue(
                conn,
                job=service.EXTRA_JOB,
                args={"session_id": session_id},
                dedupe_key=f"extra:{session}:{attempts}",
                available_at=now + timedelta(seconds=backoff_s(attempts)),
            )
    return status if status != "pending" else "retry"


async def _tell_driver(
    conn: asyncpg.Connection,
    driver_id: uuid.UUID,
    session_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    now: datetime,
) -> None:
    """The `payment_failed` SMS (the notifications domain decides whether it is sent)."""
    try:
        from app.notifications.alerts import queue_alert
    except ImportError:  # pragma: no cover - the notifications domain is always there
        return
    try:
        async with conn.transaction():  # a savepoint: the alert must not undo our state
            await queue_alert(
                conn,
                kind="payment_failed",
                driver_id=driver_id,
                now=now,
                session_id=session_id,
                facts={"amount_minor": amount_minor, "currency": currency},
            )
    except Exception as exc:
        log.warning("could not queue the payment_failed SMS: %r", exc)


# --- Reconciliation ------------------------------------------------------------------


async def reconcile_payments(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron: find payments stuck or out of step with Stripe; fix what can be fixed safely
    (never a capture: captures only come from a decision), alert the rest."""
    pool: asyncpg.Pool = ctx["pool"]
    settings: Settings = ctx["settings"]
    gateway = gateway_from(ctx)
    counts = {"released": 0, "alerted": 0, "refreshed": 0, "requeued": 0}
    if gateway is None:
        return counts
    now = _clock(ctx).now()

    async def each(rows: Sequence[Any], fix: Callable[[Any], Awaitable[None]]) -> bool:
        """`fix` every row; False once Stripe is away (the next run goes on)."""
        for row in rows:
            try:
                await fix(row)
            except (StripeUnavailable, service.PaymentsUnavailable):
                return False
            except stripe.StripeError as exc:  # this one PaymentIntent: log, go on
                log.warning("reconciliation skipped a payment: %r", exc)
        return True

    run = _Run(pool, gateway, now, counts)
    stale_before = now - timedelta(seconds=settings.payment_stale_hold_s)
    if not await each(
        await q.stale_holds(pool, before=stale_before, limit=RECONCILE_BATCH),
        lambda hold: _stale_hold(run, hold),
    ):
        return counts
    stall_before = now - timedelta(seconds=CAPTURE_STALL_S)
    if not await each(
        await q.captures_to_check(pool, before=stall_before, limit=RECONCILE_BATCH),
        lambda d: _stalled_capture(run, d.payment_intent_id),
    ):
        return counts
    recheck_before = now - timedelta(seconds=RECHECK_AFTER_S)
    await each(
        await q.intents_to_check(pool, before=recheck_before, limit=RECONCILE_BATCH),
        lambda row: _recheck(run, row.payment_intent_id),
    )
    return counts


@dataclass(frozen=True)
class _Run:
    """One reconciliation run: the pool, Stripe, the run's time and what it did so far."""

    pool: asyncpg.Pool
    gateway: Gateway
    now: datetime
    counts: dict[str, int]


async def _stale_hold(run: _Run, hold: q.StaleHold) -> None:
    facts = await service.refresh_intent(run.pool, run.gateway, hold.payment_intent_id, now=run.now)
    if facts.status != "requires_capture":
        run.counts["refreshed"] += 1
        return
    if not hold.session_exists or hold.session_status == "FAILED":
        # Nobody will bill it: give the driver's money back.
        try:
            await service.cancel_hold(
                run.gateway,
                payment_intent_id=hold.payment_intent_id,
                idempotency_key=f"cancel:{hold.payment_intent_id}",
                db=run.pool,
                now=run.now,
            )
            run.counts["released"] += 1
            return
        except service.CaptureFailed as exc:
            reason = f"release_refused: {exc.detail}"
    elif hold.session_status == "COMPLETED":
        reason = "session_completed_without_capture"
    else:
        reason = "session_open_too_long"
    if await service.raise_alert(
        run.pool,
        kind="payment_stale_hold",
        reason=reason,
        dedupe_key=f"stale_hold:{hold.payment_intent_id}",
        now=run.now,
        payment_intent_id=hold.payment_intent_id,
        session_id=hold.session_id,
        detail={"held_since": hold.created_at.isoformat(), "session_status": hold.session_status},
    ):
        run.counts["alerted"] += 1


async def _stalled_capture(run: _Run, payment_intent_id: str) -> None:
    facts = await service.refresh_intent(run.pool, run.gateway, payment_intent_id, now=run.now)
    decided = await q.capture_row(run.pool, payment_intent_id=payment_intent_id)
    if decided is None or decided.status == "succeeded":
        run.counts["refreshed"] += 1  # Stripe had done it; the row is right now
        return
    if facts.status == "requires_capture" and decided.status in ("pending", "failed"):
        queued = await outbox.enqueue(
            run.pool,
            job=service.CAPTURE_JOB,
            args={"payment_intent_id": payment_intent_id},
            dedupe_key=f"capture:{payment_intent_id}:{decided.attempts}",
        )
        if queued is not None:
            run.counts["requeued"] += 1
        return
    if facts.status != "requires_capture":
        row = await q.payment(run.pool, payment_intent_id=payment_intent_id)
        if await service.raise_alert(
            run.pool,
            kind="payment_mismatch",
            reason=f"capture_{decided.status}_but_intent_{facts.status}",
            dedupe_key=f"mismatch:{payment_intent_id}:{facts.status}",
            now=run.now,
            payment_intent_id=payment_intent_id,
            session_id=row.session_id if row else None,
            detail={"decided_minor": decided.amount_minor, "stripe_status": facts.status},
        ):
            run.counts["alerted"] += 1


async def _recheck(run: _Run, payment_intent_id: str) -> None:
    before = await q.payment(run.pool, payment_intent_id=payment_intent_id)
    facts = await service.refresh_intent(run.pool, run.gateway, payment_intent_id, now=run.now)
    run.counts["refreshed"] += 1
    if before is None or facts.status == before.status:
        return
    decided = await q.capture_row(run.pool, payment_intent_id=payment_intent_id)
    if facts.status == "succeeded" and before.kind == "hold" and decided is None:
        reason = "captured_without_decision"
    elif facts.status == "canceled" and decided is not None and decided.amount_minor > 0:
        reason = "hold_canceled_before_capture"
    else:
        return
    if await service.raise_alert(
        run.pool,
        kind="payment_mismatch",
        reason=reason,
        dedupe_key=f"mismatch:{payment_intent_id}:{facts.status}",
        now=run.now,
        payment_intent_id=payment_intent_id,
        session_id=before.session_id,
        detail={"ours": before.status, "stripe": facts.status},
    ):
        run.counts["alerted"] += 1
