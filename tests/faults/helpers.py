"""Shared pieces of the fault tests: starting the service's processes with their peers
behind proxies, polling, and small HTTP helpers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.core.settings import Settings

# The service's processes (granian, arq) and their bounded stop: tests/servers.py.
from tests.servers import Process, app_env, worker_pids


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment every fault-test process gets (the test's database and Redis
    namespace; override DATABASE_URL / REDIS_URL with a proxy's)."""
    defaults = {"REDIS_NAMESPACE": settings.redis_namespace, "DB_POOL_MIN": "1", "DB_POOL_MAX": "8"}
    return app_env(settings.database_url, settings.redis_url, **{**defaults, **extra})


async def until(
    check: Callable[[], Awaitable[Any]], *, within_s: float, what: str, log: Process | None = None
) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` (and the process
    output) after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n--- process output:\n{log.output()}" if log is not None else ""
            raise AssertionError(f"{what} not within {within_s} s{tail}")
        await asyncio.sleep(0.05)


def stripe_env(api_base: str, *, timeout_s: float = 3.0) -> dict[str, str]:
    from app.payments.localstripe import DEMO_SECRET_KEY
    from tests.payments.fixtures import WEBHOOK_SECRET

    return {
        "STRIPE_SECRET_KEY": DEMO_SECRET_KEY,
        "STRIPE_API_BASE": api_base,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_TIMEOUT_S": str(timeout_s),
        "STRIPE_MAX_NETWORK_RETRIES": "1",
    }


def twilio_env(twilio: Any) -> dict[str, str]:
    from tests.standins.twilio import FROM

    return {
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM": FROM,
        "TWILIO_API_BASE": twilio.url,
        "TWILIO_TIMEOUT_S": "3",
        "TWILIO_MAX_RETRIES": "1",
        "SMS_RATE_PER_SENDER": "0",
    }


def client_ports(server_port: int) -> set[int]:
    """Local ports of this process's established TCP connections to `server_port`."""
    import psutil

    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == server_port and c.status == psutil.CONN_ESTABLISHED
    }


def holder_of(server: Process, client_port: int) -> int | None:
    """The API worker pid that holds the connection from `client_port`."""
    import psutil

    for pid in worker_pids(server):
        with contextlib.suppress(psutil.Error):
            for c in psutil.Process(pid).net_connections(kind="tcp"):
                if c.raddr and c.raddr.port == client_port:
                    return pid
    return None
