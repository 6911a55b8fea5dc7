"""The `send_sms` job (enqueued through the outbox) and its sender's life cycle.

arq runs a job at least once, and the outbox relay may enqueue it again, so the job takes
ids, reloads the row and decides from PostgreSQL alone:
- it leases the message (`queued` → `sending`, `lease_until`); a message already `sent`
  (or failed/expired/suppressed) is never sent again, and a live lease means another
  worker has it;
- a worker killed mid-send leaves a lease that runs out; the next run is "in doubt" and
  first asks Twilio whether the message arrived there (`find_sent`), so a kill costs no
  duplicate unless Twilio cannot say — at most one per kill, never a lost message;
- an alert to a driver who replied STOP or turned `sms_alerts` off is `suppressed`, never
  sent; expired messages (an OTP past its 5 minutes) are dropped;
- per-sender pacing (`app.notifications.pacing`): a slot per message, waited for here when
  close, otherwise the job is deferred to it (`Retry(defer=…)`, `send_after`);
- 21610 (STOP) remembers the opt-out and gives up; other refusals give up; transient
  failures go back to the queue with back-off (`Retry`), `MAX_TRIES` times.
Each final state marks the outbox row done in the same transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from arq import Retry, func
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core import outbox
from app.core.clock import Clock
from app.core.listen import Listener
from app.core.outbox import RELAY_BATCH, relay_outbox
from app.core.settings import Settings
from app.core.sql import execute
from app.notifications import alerts, operator, pacing, queries, rules
from app.notifications.service import SEND_SMS_JOB, SmsSender, build_sender
from app.notifications.twilio import (
    ERR_OPTED_OUT,
    SentSms,
    SmsOptedOut,
    SmsRejected,
    SmsUnavailable,
)

log = logging.getLogger("app.notifications.tasks")
MAX_TRIES = 5  # transient failures (429/5xx/unreachable after the client's own retries)
RETRY_BASE_S = 5
# arq tries of one job: transient failures plus pacing deferrals and waits for a lease
SEND_MAX_TRIES = 50
WAIT_IN_PLACE_S = 1.0  # a pacing slot this close is waited for in the job, later ones deferred


def _clients(ctx: dict[str, Any]) -> dict[str, Any]:
    """Where this process keeps its SMS clients. arq hands each job a copy of the worker's
    ctx, so a client stored on the copy would be built (and leaked) per job: the holder is
    created once at start-up (`start_listener`) and shared by every copy."""
    holder: dict[str, Any] = ctx.get("sms_clients", ctx)
    return holder


def _sender(ctx: dict[str, Any]) -> SmsSender | None:
    clients = _clients(ctx)
    if "sms_sender" not in clients:
        clients["sms_sender"] = build_sender(ctx["settings"])
    sender: SmsSender | None = clients["sms_sender"]
    return sender


async def close_sender(ctx: dict[str, Any]) -> None:
    """Worker shutdown: close the sender's HTTP session."""
    sender = _clients(ctx).pop("sms_sender", None)
    if sender is not None:
        await sender.aclose()


def lease_s(settings: Settings) -> float:
    """Longer than one send can take: the pacing wait in place, every attempt with its
    timeout and the client's back-off between attempts (≤ 8 s each)."""
    attempts = settings.twilio_max_retries + 1
    backoff = sum(min(8.0, 0.5 * 2.0**k) for k in range(settings.twilio_max_retries))
    return WAIT_IN_PLACE_S + settings.twilio_timeout_s * attempts + backoff + 10.0


def _sender_id(sender: SmsSender) -> str:
    """Who the message is from, for pacing: the From number (or Messaging Service SID)."""
    return str(getattr(sender, "from_", "") or sender.name)


def status_callback_url(settings: Settings, message_id: str) -> str | None:
    """Where Twilio reports this message's status (signed against PUBLIC_BASE_URL; our id in
    the URL, so a callback quicker than our own bookkeeping still finds the message)."""
    base = settings.public_base_url.rstrip("/")
    return f"{base}/webhooks/twilio/status?message_id={message_id}" if base else None


async def send_sms(ctx: dict[str, Any], outbox_id: int, message_id: str) -> str:
    """Send one queued SMS; returns what happened (for arq's result and the tests)."""
    pool = ctx["pool"]
    settings: Settings = ctx["settings"]
    clock: Clock = ctx.get("clock") or Clock()
    now = clock.now()
    mid = uuid.UUID(message_id)

    row = await queries.claim_message(
        pool, message_id=mid, lease_until=now + timedelta(seconds=lease_s(settings)), now=now
    )
    if row is None:
        state = await queries.message_state(pool, message_id=mid)
        if state is not None and state.status == "sending" and state.lease_until is not None:
            # Another run holds a live lease; look again once it could have run out.
            wait = (state.lease_until - now).total_seconds() + 1
            raise Retry(defer=max(1.0, wait))
        if state is not None and state.status == "queued" and state.send_after is not None:
            raise Retry(defer=max(0.1, (state.send_after - now).total_seconds()))
        await outbox.mark_done(pool, outbox_id)
        return "missing" if state is None else f"already_{state.status}"
    return await deliver(ctx, outbox_id, row, now)


class Later(Exception):
    """The message went back to the queue for later (`defer_s`): a pacing slot further
    away, or a transient failure backing off. arq jobs turn it into `Retry`."""

    def __init__(self, defer_s: float) -> None:
        super().__init__(f"later: {defer_s:.1f} s")
        self.defer_s = defer_s


async def deliver(
    ctx: dict[str, Any], outbox_id: int, row: queries.ClaimedMessage, now: datetime
) -> str:
    """Everything after the lease: suppression, the in-doubt lookup, pacing, the send and
    its outcome. Raises `Retry` (arq) for a message put back for later."""
    try:
        return await deliver_claimed(ctx, outbox_id, row, now)
    except Later as later:
        raise Retry(defer=later.defer_s) from None


async def deliver_claimed(
    ctx: dict[str, Any], outbox_id: int, row: queries.ClaimedMessage, now: datetime
) -> str:
    """`deliver` for a caller that is not an arq job: raises `Later` instead of `Retry`."""
    pool = ctx["pool"]
    settings: Settings = ctx["settings"]
    clock: Clock = ctx.get("clock") or Clock()
    mid = row.message_id
    message_id = str(mid)
    alert = row.notification_id is not None
    if row.expires_at is not None and row.expires_at <= now:
        await _final(pool, outbox_id, mid, "expired", None, "expired before sending", now)
        return "expired"
    if row.opted_out or (alert and row.alerts_off):
        if alert:  # the driver said STOP or turned alerts off: nothing reaches Twilio
            code = ERR_OPTED_OUT if row.opted_out else None
            reason = "recipient opted out" if row.opted_out else "sms alerts turned off"
            await _final(pool, outbox_id, mid, "suppressed", code, reason, now)
            return "suppressed"
        await _final(pool, outbox_id, mid, "failed", ERR_OPTED_OUT, "recipient opted out", now)
        return "opted_out"
    sender = _sender(ctx)
    if sender is None:
        log.error("no SMS provider: set TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN/TWILIO_FROM")
        await _final(pool, outbox_id, mid, "failed", None, "no SMS provider configured", now)
        return "no_provider"

    if row.in_doubt:
        # The last run died holding the lease: it may have reached Twilio before dying.
        found = await sender.find_sent(row.to_phone, row.body, since=row.created_at)
        if found is not None:
            await _sent(pool, outbox_id, mid, sender, found, clock.now())
            return "recovered"

    # Per-sender pacing: a slot of our own, waited for here or later; never dropped.
    if row.send_after is not None:
        wait = (row.send_after - now).total_seconds()
    else:
        redis = ctx.get("redis")
        wait = 0.0
        if redis is not None:
            wait = await pacing.reserve(
                redis, settings, _sender_id(sender), priority=row.purpose == "otp"
            )
    if wait > WAIT_IN_PLACE_S:
        send_after = now + timedelta(seconds=wait)
        await queries.defer_message(pool, message_id=mid, send_after=send_after, now=now)
        raise Later(wait)
    if wait > 0:
        await asyncio.sleep(wait)
    if (clock.now() - now).total_seconds() > lease_s(settings) - settings.twilio_timeout_s * (
        settings.twilio_max_retries + 1
    ):
        # Held up (Redis away while reserving a slot): the lease may run out while sending,
        # and then another run would send it too. Leave it to that run.
        log.warning("SMS %s: lease nearly spent before sending; left to recovery", message_id)
        return "lease_lost"

    validity = None
    if row.expires_at is not None:
        validity = int((row.expires_at - clock.now()).total_seconds())
    try:
        sent = await sender.send(
            row.to_phone,
            row.body,
            status_callback=status_callback_url(settings, message_id)
            if sender.name == "twilio"
            else None,
            validity_period_s=validity,
        )
    except SmsOptedOut as exc:
        status = "suppressed" if alert else "failed"
        await _final(
            pool, outbox_id, mid, status, exc.code, str(exc), clock.now(), opt_out=row.to_phone
        )
        return "opted_out"
    except SmsRejected as exc:
        log.warning("SMS %s refused by the provider: code=%s", message_id, exc.code)
        await _final(pool, outbox_id, mid, "failed", exc.code, str(exc), clock.now())
        return "rejected"
    except SmsUnavailable as exc:
        tries = row.transient_failures + 1
        later = clock.now()
        if tries < MAX_TRIES:
            back_off = RETRY_BASE_S * tries
            await queries.release_message(
                pool,
                message_id=mid,
                code=exc.code,
                message=str(exc),
                now=later,
                send_after=later + timedelta(seconds=back_off),
            )
            raise Later(back_off) from exc
        await _final(pool, outbox_id, mid, "failed", exc.code, str(exc), later)
        return "gave_up"

    await _sent(pool, outbox_id, mid, sender, sent, clock.now())
    return "sent"


async def _sent(
    pool: asyncpg.Pool,
    outbox_id: int,
    message_id: uuid.UUID,
    sender: SmsSender,
    sent: SentSms,
    done_at: datetime,
) -> None:
    """The message is sent and its outbox row done (one statement: atomic, one round trip;
    this is the hot path of every SMS)."""
    await queries.mark_sent_done(
        pool,
        message_id=message_id,
        provider=sender.name,
        provider_sid=sent.sid,
        now=done_at,
        redact=sender.name != "sink",  # the demo sink keeps the text for GET /dev/sms
        outbox_id=outbox_id,
    )


async def _final(
    pool: asyncpg.Pool,
    outbox_id: int,
    message_id: uuid.UUID,
    status: str,
    code: int | None,
    message: str,
    now: datetime,
    *,
    opt_out: str | None = None,
) -> None:
    """A final state for the message and its outbox row, in one transaction; `opt_out`: the
    number Twilio refused as opted out, remembered in it too. `suppressed` (the driver said
    STOP or turned alerts off) keeps the body as it is."""
    async with outbox.closing(pool, outbox_id) as conn:
        if opt_out is not None:
            await execute(conn, "notifications.opt_out", opt_out, "twilio_21610")
        if status == "suppressed":
            await queries.mark_suppressed(
                conn, message_id=message_id, code=code, message=message, now=now
            )
        else:
            await execute(conn, "notifications.mark_final", message_id, status, code, message, now)


async def redact_expired_sms(ctx: dict[str, Any]) -> int:
    """Cron: secret bodies of messages that expired unsent are redacted."""
    clock: Clock = ctx.get("clock") or Clock()
    return await execute(ctx["pool"], "notifications.redact_expired", clock.now())


# --- Recovering what arq holds back -----------------------------------------------------

STUCK_QUEUED_S = 60.0  # a message still queued this long after its job went to arq
SLOT_MISSED_S = 15.0  # a paced message whose slot passed this long ago unsent
RECOVER_BATCH = 200
RECOVER_CONCURRENCY = 10


async def recover_sms(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron: send what a dead worker left behind, without waiting for arq. A job whose
    worker was SIGKILLed stays "in progress" in arq until its key expires — the longest
    job timeout of the worker + 10 s, minutes here (TARGETS.md) — and the relay cannot
    enqueue the same job id meanwhile. So once a message's lease has run out (or it sat
    queued long after its job was handed over) this runs `send_sms` itself: the lease
    keeps it to one sender, the Twilio lookup of an in-doubt message keeps it to one SMS,
    and arq's late re-run finds it sent."""
    clock: Clock = ctx.get("clock") or Clock()
    stuck = await queries.stuck_messages(
        ctx["pool"],
        now=clock.now(),
        queued_for_s=STUCK_QUEUED_S,
        slot_missed_s=SLOT_MISSED_S,
        limit=RECOVER_BATCH,
    )
    redis = ctx.get("redis")
    if redis is not None and stuck:
        stuck = [m for m in stuck if not await _waiting_in_arq(redis, ctx["settings"], m)]
    outcomes: dict[str, int] = {}
    gate = asyncio.Semaphore(RECOVER_CONCURRENCY)

    async def one(m: queries.StuckMessage) -> None:
        async with gate:
            try:
                outcome = await send_sms(ctx, m.outbox_id, str(m.message_id))
            except Retry:
                outcome = "later"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    await asyncio.gather(*(one(m) for m in stuck))
    if stuck:
        log.warning("recovered %d stuck SMS: %s", len(stuck), outcomes)
    return outcomes


async def _waiting_in_arq(redis: Any, settings: Settings, m: queries.StuckMessage) -> bool:
    """A queued message whose job sits in arq's queue and runs nowhere is only waiting its
    turn (a backlog), not stuck: leave it to arq."""
    job_id = outbox.job_id(settings, m.outbox_id)
    queued = await redis.zscore(outbox.queue_name(settings), job_id)
    running = await redis.exists(in_progress_key_prefix + job_id)
    return queued is not None and not running


# --- Time-based alerts -------------------------------------------------------------------

RESERVATION_LEAD_S = 300.0  # reservation_expiring: 5 minutes before the end
QUIET_AFTER_S = 120.0  # a charger that sent no MeterValues for this long: rules re-run
SWEEP_BATCH = 500


async def alert_sweep(ctx: dict[str, Any]) -> dict[str, int]:
    """Cron: the alerts that come due with time rather than with a message — a reservation
    about to end, a car idle long enough to count as full, a charger gone quiet. Safe to
    run twice (each kind once per session/reservation in PostgreSQL)."""
    pool: asyncpg.Pool = ctx["pool"]
    clock: Clock = ctx.get("clock") or Clock()
    now = clock.now()
    expiring = await queries.reservations_expiring(
        pool, now=now, lead_s=RESERVATION_LEAD_S, limit=SWEEP_BATCH
    )
    queued = 0
    for r in expiring:
        async with pool.acquire() as conn, conn.transaction():
            if await alerts.queue_alert(
                conn,
                kind="reservation_expiring",
                driver_id=r.driver_id,
                now=now,
                reservation_id=r.reservation_id,
                facts={"site_name": r.site_name, "timezone": r.timezone, "at": r.expires_at},
            ):
                queued += 1
    sessions = await queries.sessions_to_reevaluate(
        pool,
        now=now,
        idle_s=rules.IDLE_FOR.total_seconds(),
        quiet_s=QUIET_AFTER_S,
        limit=SWEEP_BATCH,
    )
    for session_id in sessions:
        async with pool.acquire() as conn, conn.transaction():
            await alerts.session_changed(conn, session_id=session_id, now=now)
    return {"reservations": queued, "sessions": len(sessions)}


# --- Waking the relay at once ---------------------------------------------------------------


class RelayWaker:
    """LISTEN `vw_sms` (a trigger on new messages and operator alerts): the outbox relay
    runs right after the commit that queued them, not at its next 5-second sweep; bursts
    of notifications collapse into one run at a time."""

    def __init__(self, ctx: dict[str, Any], also: Callable[[], None] | None = None) -> None:
        self.ctx = ctx
        self.also = also
        self.wanted = asyncio.Event()
        settings: Settings = ctx["settings"]
        self.listener = Listener(settings.database_url, "vw_sms", self._heard, self._heard_all)
        self.task: asyncio.Task[None] | None = None

    def _heard(self, _payload: str) -> None:
        self.wanted.set()
        if self.also is not None:
            self.also()

    def _heard_all(self) -> None:
        self._heard("")

    def start(self) -> None:
        self.listener.start()
        self.task = asyncio.create_task(self._run(), name="sms-relay-waker")

    async def _run(self) -> None:
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            try:
                # a burst larger than one relay batch: keep going until it is all handed over
                while await relay_outbox(self.ctx) >= RELAY_BATCH:
                    pass
            except Exception as exc:  # Redis or PostgreSQL away: the cron sweep covers it
                log.warning("relay after NOTIFY failed: %r", exc)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.listener.stop()


async def start_listener(ctx: dict[str, Any]) -> None:
    """Worker start-up: the shared client holder, the SMS dispatcher and the relay, both
    woken by NOTIFY."""
    from app.notifications.dispatch import Dispatcher  # it builds on this module

    ctx.setdefault("sms_clients", {})
    dispatcher = Dispatcher(ctx)
    waker = RelayWaker(ctx, also=dispatcher.wake)
    dispatcher.start()
    waker.start()
    ctx["sms_relay_waker"] = waker
    ctx["sms_dispatcher"] = dispatcher


async def stop_listener(ctx: dict[str, Any]) -> None:
    waker = ctx.pop("sms_relay_waker", None)
    if waker is not None:
        await waker.stop()
    dispatcher = ctx.pop("sms_dispatcher", None)
    if dispatcher is not None:
        await dispatcher.stop()
    await operator.close_http(_clients(ctx))


# arq counts every Retry as a try: pacing deferrals and lease waits must not exhaust it.
send_sms_job = func(send_sms, name=SEND_SMS_JOB, max_tries=SEND_MAX_TRIES)


def resilient_redis(dsn: str) -> RedisSettings:
    """arq's Redis settings for a worker that rides out a Redis outage: every command is
    retried with back-off (0.1 s doubling to 2 s, about two minutes in all) instead of the
    worker exiting on the first ConnectionError; the outbox in PostgreSQL keeps what was
    queued meanwhile and the relay hands it over once Redis is back."""
    settings = RedisSettings.from_dsn(dsn)
    settings.retry = RedisRetry(ExponentialBackoff(cap=2.0, base=0.1), retries=70)
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, OSError]
    settings.conn_retries = 120
    return settings
