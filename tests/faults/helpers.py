"""Shared pieces of the fault tests: starting the service's processes with their peers
behind proxies, polling, and small HTTP helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import httpx

from app.core.embedded import free_port
from app.core.settings import ROOT, Settings
from tests.conftest import TEST_JWT_SECRET


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment every fault-test process gets (the test's database and Redis
    namespace; override DATABASE_URL / REDIS_URL with a proxy's)."""
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_NAMESPACE": settings.redis_namespace,
        "APP_DEMO": "0",
        "JWT_SECRET": TEST_JWT_SECRET,
        "ACCESS_LOG": "0",
        "LOG_LEVEL": "WARNING",
        "DISCOVERY_RATE_PER_S": "0",
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "8",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


class Process:
    """A child process with its output kept in a temporary file (shown when a test fails)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.env = env
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self, tail: int = 6000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-tail:]

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with_group = os.getpgid(self.proc.pid) == self.proc.pid
        try:
            if with_group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
            self.proc.wait(wait_s)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            if with_group:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.log.close()


def granian(env: dict[str, str], *, workers: int = 2, port: int | None = None) -> Process:
    """granian serving `app.main:create_app` as `make run` starts it (respawning a worker
    that dies, as app/run.py asks)."""
    bin_ = Path(sys.executable).parent
    argv = [
        str(bin_ / "granian"),
        *("--interface", "asgi", "--factory", "--host", "127.0.0.1"),
        *("--port", str(port or free_port()), "--workers", str(workers)),
        *("--respawn-failed-workers", "--respawn-interval", "0.5", "--no-access-log"),
        "app.main:create_app",
    ]
    return Process(argv, env)


def base_url(proc: Process) -> str:
    return f"http://127.0.0.1:{proc.argv[proc.argv.index('--port') + 1]}"


def arq_worker(env: dict[str, str]) -> Process:
    return Process([str(Path(sys.executable).parent / "arq"), "workers.main.WorkerSettings"], env)


async def wait_ready(base: str, proc: Process, *, within_s: float = 60) -> None:
    """Until `/health/ready` answers 200 on 10 fresh connections in a row, i.e. on every
    worker (or the process died). A worker still starting holds the requests it accepts
    until its start-up is over."""
    deadline = time.monotonic() + within_s
    streak = 0
    async with fresh_client(base, timeout=2) as c:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise AssertionError(f"the service exited:\n{proc.output()}")
            try:
                ok = (await c.get("/health/ready")).status_code == 200
            except httpx.HTTPError:
                ok = False
            streak = streak + 1 if ok else 0
            if streak >= 10:
                return
            if not ok:
                await asyncio.sleep(0.2)
    raise AssertionError(f"not ready within {within_s} s:\n{proc.output()}")


@asynccontextmanager
async def served(env: dict[str, str], *, workers: int = 2) -> AsyncIterator[tuple[str, Process]]:
    proc = granian(env, workers=workers)
    proc.start()
    try:
        base = base_url(proc)
        await wait_ready(base, proc)
        yield base, proc
    finally:
        proc.close()


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


def fresh_client(base: str, *, timeout: float = 3) -> httpx.AsyncClient:
    """An HTTP client that opens a new connection per request (so requests spread over
    every API worker)."""
    return httpx.AsyncClient(
        base_url=base, timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0)
    )


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


def worker_pids(server: Process) -> list[int]:
    """The API worker processes of a granian server."""
    import psutil

    return [c.pid for c in psutil.Process(server.pid).children()]


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
