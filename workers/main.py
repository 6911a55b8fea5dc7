"""The arq worker: `arq workers.main.WorkerSettings` (started by `make run`).

Jobs are enqueued through the `outbox` table (written in the same transaction as the
change that needs them, `app/core/outbox.py`); `relay_outbox` moves pending rows to arq and
re-enqueues rows Redis lost. Domains add their jobs to `FUNCTIONS` and cron sweeps to `CRON_JOBS`.
"""

from __future__ import annotations

from typing import Any

from arq import cron

from app.chargers.commands import CommandClient
from app.connectivity.tasks import close_client, sweep_connectivity, sweep_links
from app.core import outbox
from app.core.db import create_pool
from app.core.idempotency import purge_idempotency_keys
from app.core.observability import configure_logging
from app.core.outbox import purge_outbox, relay_outbox
from app.core.settings import get_settings
from app.identity.tasks import purge_expired_identity
from app.notifications import operator as operator_alerts
from app.notifications import tasks as notification_tasks
from app.notifications.tasks import close_sender, redact_expired_sms
from app.payments import tasks as payment_tasks
from app.payments.stripe_client import Gateway
from app.reservations import tasks as reservation_tasks
from app.sessions import tasks as session_tasks


async def startup(ctx: dict[str, Any]) -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    ctx["settings"] = settings
    ctx["pool"] = await create_pool(settings)
    # Commands to chargers from jobs: app.chargers.commands.commands_from(ctx).
    ctx["ocpp_commands"] = CommandClient(settings.redis_url, settings.redis_namespace)
    ctx["stripe"] = Gateway.from_settings(settings)  # None without STRIPE_SECRET_KEY
    await reservation_tasks.start_listener(ctx)  # charger hidden → move jobs at once
    await notification_tasks.start_listener(ctx)  # new SMS → relay at once


async def shutdown(ctx: dict[str, Any]) -> None:
    await reservation_tasks.stop_listener(ctx)
    await notification_tasks.stop_listener(ctx)
    await close_sender(ctx)
    await payment_tasks.close_stripe(ctx)
    await close_client(ctx)
    await ctx["ocpp_commands"].close()
    await ctx["pool"].close()


_settings = get_settings()

FUNCTIONS: list[Any] = [
    relay_outbox,
    notification_tasks.send_sms_job,
    operator_alerts.deliver_operator_alert_job,
    *reservation_tasks.FUNCTIONS,
    payment_tasks.capture_payment,
    payment_tasks.charge_extra_payment,
    session_tasks.session_hold_low,
]
CRON_JOBS: list[Any] = [
    cron(relay_outbox, second=set(range(0, 60, 5)), run_at_startup=True, unique=True),
    cron(purge_outbox, minute=23, second=0, unique=True),
    cron(purge_idempotency_keys, minute=29, second=0, unique=True),
    cron(redact_expired_sms, minute=set(range(0, 60, 5)), second=30, unique=True),
    cron(purge_expired_identity, minute=17, second=0, unique=True),
    # SMS alerts that come due with time (reservation ending, car idle, charger quiet).
    cron(notification_tasks.alert_sweep, second=set(range(3, 60, 10)), unique=True, timeout=30),
    # SMS a SIGKILLed worker left behind (arq would hold them for minutes).
    cron(notification_tasks.recover_sms, second=set(range(4, 60, 5)), unique=True, timeout=40),
    # Connectivity platform sweep (a no-op without CONTROL_CENTER_API_BASE).
    cron(sweep_connectivity, second=45, unique=True, timeout=50),
    # Missed heartbeats / sockets down past the grace → offline; long outages → alerts.
    cron(sweep_links, second={5, 20, 35, 50}, unique=True, timeout=14),
    # Reservations past expires_at → EXPIRED, their connectors free in search.
    cron(reservation_tasks.expire_reservations, second=set(range(2, 60, 5)), unique=True),
    # Session starts the charger never began → FAILED, holds released.
    cron(session_tasks.sweep_starting, second={10, 25, 40, 55}, unique=True, timeout=14),
    # Stale holds, stalled captures, PaymentIntents out of step with Stripe.
    cron(
        payment_tasks.reconcile_payments,
        minute=set(range(7, 60, 10)),
        second=0,
        unique=True,
        timeout=300,
    ),
]


class WorkerSettings:
    functions = FUNCTIONS
    cron_jobs = CRON_JOBS
    on_startup = startup
    on_shutdown = shutdown
    # Ride out a Redis outage (restart, failover) instead of exiting: commands are retried
    # with back-off for about two minutes; the outbox keeps what was queued meanwhile.
    redis_settings = notification_tasks.resilient_redis(_settings.redis_url)
    queue_name = outbox.queue_name(_settings)
    max_jobs = 50
    # arq picks up at most max_jobs per poll: 50 ms keeps an alert's hand-over short and
    # lets one worker send hundreds of SMS a second (bench/alerts.py)
    poll_delay = 0.05
    job_timeout = 60
    keep_result = 3600
