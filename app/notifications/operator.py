"""Operator alerts delivered to the CPO (issue 13 §5): an SMS to the on-call number and a
signed JSON POST to the ticketing webhook ("integrate with your support ticketing system").

A trigger on `operator_alerts` (migration 0011) writes one delivery row and one outbox row
per channel in the transaction that raised the alert — connectivity, payments or anyone
else raise alerts without knowing how they travel. The job `deliver_operator_alert`:
- `sms`: queues an SMS to `ONCALL_SMS_TO` through the same `send_sms` path as every other
  message (pacing, retries, leases); the channel is delivered once it is queued;
- `webhook`: POSTs the alert as JSON to `TICKET_WEBHOOK_URL` with
  `X-Voltway-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (the
  Stripe scheme, so receivers know how to check it) and `Idempotency-Key`; a 2xx is
  delivered, anything else is retried with back-off (`MAX_WEBHOOK_TRIES`), then `failed`;
- a channel that is not configured is `skipped`.
`operator_alerts.delivered_at` is the first delivery. Acknowledging is audited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from datetime import datetime
from typing import Any, Final

import asyncpg
import httpx
import msgspec
from arq import Retry, func

from app.core import audit, outbox
from app.core.auth import StaffPrincipal
from app.core.clock import Clock
from app.core.errors import NotFound
from app.core.settings import Settings
from app.core.sql import Executor, execute, fetch_one, fetch_val
from app.notifications.schemas import AlertAcknowledged
from app.notifications.service import QueuedSms, enqueue_now, queue_sms

log = logging.getLogger("app.notifications.operator")
DELIVER_JOB: Final = "deliver_operator_alert"
MAX_WEBHOOK_TRIES: Final = 8
WEBHOOK_TIMEOUT_S: Final = 10.0
RETRY_BASE_S: Final = 5.0
RETRY_MAX_S: Final = 300.0
SIGNATURE_HEADER: Final = "X-Voltway-Signature"


class TicketPayload(msgspec.Struct, frozen=True, kw_only=True):
    """What the ticketing webhook receives."""

    event: str = "operator_alert.raised"
    alert_id: int
    kind: str
    reason: str
    detail: dict[str, Any]
    raised_at: datetime
    charger_id: str | None
    charge_point_id: str | None
    site_name: str | None
    session_id: str | None
    payment_intent_id: str | None


class AlertForDelivery(TicketPayload, frozen=True):
    """An alert as the webhook receives it, with the state of its delivery on one channel."""

    delivery_status: str
    attempts: int


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Voltway-Signature` value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def sms_text(alert: AlertForDelivery) -> str:
    where = " ".join(
        x
        for x in (alert.charge_point_id, f"at {alert.site_name}" if alert.site_name else None)
        if x
    )
    what = alert.kind.replace("_", " ")
    reason = f" ({alert.reason})" if alert.reason else ""
    return f"Voltway alert #{alert.alert_id}: {what}{reason}{' - ' + where if where else ''}."


async def _load(db: Executor, alert_id: int, channel: str) -> AlertForDelivery | None:
    return await fetch_one(
        db, "notifications.operator_alert_for_delivery", AlertForDelivery, alert_id, channel
    )


async def _finish(
    db: Executor,
    alert_id: int,
    channel: str,
    status: str,
    *,
    now: datetime,
    tries: int = 0,
    error: str | None = None,
    message_id: uuid.UUID | None = None,
) -> None:
    await execute(
        db,
        "notifications.finish_operator_delivery",
        alert_id,
        channel,
        status,
        tries,
        error,
        message_id,
        now,
    )


async def _skipped(
    pool: asyncpg.Pool, outbox_id: int, alert_id: int, channel: str, setting: str, now: datetime
) -> str:
    """A channel whose setting is empty is `skipped`, and the job done."""
    async with outbox.closing(pool, outbox_id) as conn:
        await _finish(conn, alert_id, channel, "skipped", now=now, error=f"{setting} unset")
    return "skipped"


async def deliver_operator_alert(
    ctx: dict[str, Any], outbox_id: int, alert_id: int, channel: str
) -> str:
    """Deliver one operator alert on one channel; safe to run twice."""
    pool = ctx["pool"]
    settings: Settings = ctx["settings"]
    clock: Clock = ctx.get("clock") or Clock()
    alert = await _load(pool, alert_id, channel)
    if alert is None or alert.delivery_status != "pending":
        await outbox.mark_done(pool, outbox_id)
        return "missing" if alert is None else f"already_{alert.delivery_status}"
    if channel == "sms":
        return await _deliver_sms(ctx, outbox_id, alert, settings, clock.now())
    return await _deliver_webhook(ctx, outbox_id, alert, settings, clock)


async def _deliver_sms(
    ctx: dict[str, Any],
    outbox_id: int,
    alert: AlertForDelivery,
    settings: Settings,
    now: datetime,
) -> str:
    pool = ctx["pool"]
    if not settings.oncall_sms_to:
        return await _skipped(pool, outbox_id, alert.alert_id, "sms", "ONCALL_SMS_TO", now)
    async with outbox.closing(pool, outbox_id) as conn:
        if (
            await fetch_val(conn, "notifications.lock_operator_delivery", alert.alert_id, "sms")
            is None
        ):
            return "already_done"
        queued: QueuedSms = await queue_sms(
            conn, to=settings.oncall_sms_to, body=sms_text(alert), purpose="operator_alert", now=now
        )
        await _finish(
            conn,
            alert.alert_id,
            "sms",
            "delivered",
            now=now,
            tries=1,
            message_id=uuid.UUID(queued.message_id),
        )
    redis = ctx.get("redis")
    if redis is not None:
        await enqueue_now(redis, pool, settings, [queued])
    return "queued_sms"


async def _deliver_webhook(
    ctx: dict[str, Any],
    outbox_id: int,
    alert: AlertForDelivery,
    settings: Settings,
    clock: Clock,
) -> str:
    pool = ctx["pool"]
    if not settings.ticket_webhook_url:
        return await _skipped(
            pool, outbox_id, alert.alert_id, "webhook", "TICKET_WEBHOOK_URL", clock.now()
        )
    payload = TicketPayload(**{f: getattr(alert, f) for f in TicketPayload.__struct_fields__})
    body = msgspec.json.encode(payload)
    timestamp = int(clock.now().timestamp())
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": f"voltway-operator-alert-{alert.alert_id}",
        "User-Agent": "Voltway-Alerts/1",
    }
    if settings.ticket_webhook_secret:
        headers[SIGNATURE_HEADER] = sign(settings.ticket_webhook_secret, timestamp, body)
    error: str
    try:
        holder: dict[str, Any] = ctx.get("sms_clients", ctx)  # shared by every job's ctx
        client: httpx.AsyncClient = holder.get("http") or httpx.AsyncClient()
        holder["http"] = client
        response = await client.post(
            settings.ticket_webhook_url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S
        )
        if 200 <= response.status_code < 300:
            async with outbox.closing(pool, outbox_id) as conn:
                await _finish(
                    conn, alert.alert_id, "webhook", "delivered", now=clock.now(), tries=1
                )
            return "delivered"
        error = f"HTTP {response.status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}"
    tries = await fetch_val(
        pool, "notifications.operator_delivery_failed_once", alert.alert_id, "webhook", error
    )
    if tries is not None and int(tries) < MAX_WEBHOOK_TRIES:
        log.warning("ticket webhook for alert %s failed (%s); retrying", alert.alert_id, error)
        raise Retry(defer=min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (int(tries) - 1)))
    log.error("ticket webhook for alert %s failed for good: %s", alert.alert_id, error)
    async with outbox.closing(pool, outbox_id) as conn:
        await _finish(conn, alert.alert_id, "webhook", "failed", now=clock.now(), error=error)
    return "failed"


async def close_http(ctx: dict[str, Any]) -> None:
    client = ctx.pop("http", None)
    if client is not None:
        await client.aclose()


deliver_operator_alert_job = func(
    deliver_operator_alert, name=DELIVER_JOB, max_tries=MAX_WEBHOOK_TRIES + 2
)


async def acknowledge(
    db: Executor,
    *,
    alert_id: int,
    actor: StaffPrincipal,
    now: datetime,
    request_id: str | None,
) -> AlertAcknowledged:
    """Acknowledge an alert (audited); a second acknowledgement answers the first."""
    done = await fetch_one(
        db, "notifications.acknowledge_alert", AlertAcknowledged, alert_id, now, actor.email
    )
    if done is not None:
        await audit.record(
            db,  # type: ignore[arg-type]
            actor=actor,
            action="operator_alert.acknowledge",
            entity_type="operator_alert",
            entity_id=str(alert_id),
            before={"acknowledged_at": None},
            after={"acknowledged_at": done.acknowledged_at.isoformat(), "by": actor.email},
            request_id=request_id,
        )
        return done
    existing = await fetch_one(db, "notifications.operator_alert", AlertAcknowledged, alert_id)
    if existing is None:
        raise NotFound("no such alert")
    return existing
