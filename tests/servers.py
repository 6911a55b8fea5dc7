"""The real app in its own OS process(es) for tests that must cross processes: granian,
`workers` API workers, on the test's database and Redis namespace-free URL."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from app.core.embedded import free_port
from app.core.settings import ROOT
from tests.conftest import TEST_JWT_SECRET


@asynccontextmanager
async def granian_app(
    db_url: str, redis_url: str, *, workers: int = 2, env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """Start granian, wait until `/health/ready` answers 200 (≤ 30 s), yield its base
    URL, and stop it."""
    port = free_port()
    child_env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "APP_DEMO": "0",
        "JWT_SECRET": TEST_JWT_SECRET,
        "ACCESS_LOG": "0",
        "LOG_LEVEL": "WARNING",
        "DISCOVERY_RATE_PER_S": "0",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "granian"),
        *("--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(workers), "app.main:create_app"),
        cwd=ROOT,
        env=child_env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=2) as c:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if (await c.get("/health/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        await proc.wait()


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
