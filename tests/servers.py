"""The real app in its own OS process(es) for tests that must cross processes: granian
with `workers` API workers (and the arq worker), on the test's database and Redis.

Every stop is bounded and follows `make run`'s order (`app/run.py` `_stop`): the API
workers first close their chargers' WebSockets (SIGUSR1, `OcppHub.drain`), then the
process group gets SIGTERM, and SIGKILL after `wait_s`. granian's own teardown with
sockets open can panic or hang (granian issues #799/#884/#875; bench/README.md "Clean
stop"); a test must not wait on it for ever (CI once did, 60 s, in
tests/chargers/test_processes.py)."""

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
from app.core.settings import ROOT
from tests.conftest import TEST_JWT_SECRET

# granian kills a worker that has not stopped this long after SIGTERM (as `make run`).
WORKERS_KILL_TIMEOUT_S = 10
DRAIN_S = 0.3  # after SIGUSR1: a test's handful of sockets close in milliseconds


class Process:
    """A child process (leading its own process group) with its output kept in a
    temporary file (shown when a test fails)."""

    def __init__(self, argv: list[str], env: dict[str, str], *, drain: bool = False) -> None:
        self.argv = argv
        self.env = env
        self.drain = drain  # an API server: SIGUSR1 to its workers before SIGTERM
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # As app/run.py: the children inherit "ignore SIGUSR1" (granian's main process and
        # a worker still starting up), the API workers' own handler drains their sockets.
        previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        finally:
            signal.signal(signal.SIGUSR1, previous)

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
        """Signal the process group and wait at most `wait_s`, then SIGKILL it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.drain and sig == signal.SIGTERM:
            # Only the workers: SIGUSR1 would end granian's main process (default action).
            for pid in worker_pids(self):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)
            time.sleep(DRAIN_S)
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
            print(f"{self.argv[0]} did not stop within {wait_s:.0f} s: killed", file=sys.stderr)

    def close(self) -> None:
        self.stop()
        self.log.close()


def granian(env: dict[str, str], *, workers: int = 2, port: int | None = None) -> Process:
    """granian serving `app.main:create_app` as `make run` starts it (respawning a worker
    that dies, killing one that will not stop, as app/run.py asks)."""
    bin_ = Path(sys.executable).parent
    argv = [
        str(bin_ / "granian"),
        *("--interface", "asgi", "--factory", "--host", "127.0.0.1"),
        *("--port", str(port or free_port()), "--workers", str(workers)),
        *("--respawn-failed-workers", "--respawn-interval", "0.5", "--no-access-log"),
        *("--workers-kill-timeout", str(WORKERS_KILL_TIMEOUT_S)),
        "app.main:create_app",
    ]
    return Process(argv, env, drain=True)


def base_url(proc: Process) -> str:
    return f"http://127.0.0.1:{proc.argv[proc.argv.index('--port') + 1]}"


def arq_worker(env: dict[str, str]) -> Process:
    return Process([str(Path(sys.executable).parent / "arq"), "workers.main.WorkerSettings"], env)


def worker_pids(server: Process) -> list[int]:
    """The API worker processes of a granian server."""
    import psutil

    with contextlib.suppress(psutil.Error):
        return [c.pid for c in psutil.Process(server.pid).children()]
    return []


def fresh_client(base: str, *, timeout: float = 3) -> httpx.AsyncClient:
    """An HTTP client that opens a new connection per request (so requests spread over
    every API worker)."""
    return httpx.AsyncClient(
        base_url=base, timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0)
    )


async def wait_ready(
    base: str,
    alive: Callable[[], bool],
    *,
    within_s: float = 60,
    in_a_row: int = 1,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Until `/health/ready` answers 200 on `in_a_row` fresh connections in a row (10 reach
    every worker: one still starting holds the requests it accepts until its start-up is
    over); fails, with `output()`, once `alive()` is false or after `within_s`."""
    deadline = time.monotonic() + within_s
    streak = 0
    async with fresh_client(base, timeout=2) as c:
        while time.monotonic() < deadline:
            if not alive():
                raise AssertionError(f"the service exited during start-up:\n{output()}")
            try:
                ok = (await c.get("/health/ready")).status_code == 200
            except httpx.HTTPError:
                ok = False
            streak = streak + 1 if ok else 0
            if streak >= in_a_row:
                return
            if not ok:
                await asyncio.sleep(0.2)
    raise AssertionError(f"the service did not get ready within {within_s} s:\n{output()}")


@asynccontextmanager
async def served(env: dict[str, str], *, workers: int = 2) -> AsyncIterator[tuple[str, Process]]:
    """granian on `env` until `/health/ready` holds on every worker; stopped (bounded)
    on the way out."""
    proc = granian(env, workers=workers)
    proc.start()
    try:
        base = base_url(proc)
        await wait_ready(base, proc.alive, in_a_row=10, output=proc.output)
        yield base, proc
    finally:
        await asyncio.to_thread(proc.close)


def app_env(db_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of the service's processes in a test: this database and Redis,
    the test JWT secret, no demo, quiet logs, no search rate limit; `extra` on top."""
    return {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "APP_DEMO": "0",
        "JWT_SECRET": TEST_JWT_SECRET,
        "ACCESS_LOG": "0",
        "LOG_LEVEL": "WARNING",
        "DISCOVERY_RATE_PER_S": "0",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@asynccontextmanager
async def granian_app(
    db_url: str, redis_url: str, *, workers: int = 2, env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """The app in granian on this database and Redis; yields its base URL."""
    async with served(app_env(db_url, redis_url, **(env or {})), workers=workers) as (base, _):
        yield base


async def seconds_until_everywhere(
    probe: Callable[[], Awaitable[Any]], expected: Any, *, streak: int = 20, within_s: float = 5
) -> float:
    """Seconds from now until the first of `streak` consecutive probes that all see
    `expected` (probe over fresh connections, so they spread over every worker); inf if
    that never happens within `within_s`."""
    start = time.monotonic()
    seen, began = 0, start
    while time.monotonic() - start < within_s:
        sent = time.monotonic()
        if await probe() == expected:
            if seen == 0:
                began = sent
            seen += 1
        else:
            seen = 0
        if seen >= streak:
            return began - start
    return float("inf")
