"""Garbage-collector policy for long-running API workers.

CPython's full (generation 2) collection walks every tracked object. An API worker that
holds 10,000 OCPP connections tracks ~900,000 objects, and each full collection then
stops the event loop for ~0.55 s (measured with gc.callbacks under bench/ocpp_load.py) —
every search and OCPP answer in that worker waits. So:

- every `freeze_every_s` the objects that survived so far are frozen (`gc.freeze()`):
  moved to the permanent generation, which collections no longer walk. Short-lived
  cycles die in generations 0/1 long before that, so what is frozen is mostly the
  long-lived state (connections, caches, the loaded modules);
- every `sweep_every_s` everything is unfrozen and collected once, so cycles that became
  garbage after being frozen (a charger that disconnected) are reclaimed: one pause per
  sweep instead of one every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

log = logging.getLogger("app.gc")


async def _run(freeze_every_s: float, sweep_every_s: float) -> None:
    last_sweep = time.monotonic()
    while True:
        await asyncio.sleep(freeze_every_s)
        if time.monotonic() - last_sweep >= sweep_every_s:
            t0 = time.perf_counter()
            gc.unfreeze()
            collected = gc.collect()
            log.info(
                "gc sweep: %d unreachable, %.0f ms", collected, (time.perf_counter() - t0) * 1e3
            )
            last_sweep = time.monotonic()
        gc.freeze()


@asynccontextmanager
async def lifespan(
    _app: object, freeze_every_s: float = 30.0, sweep_every_s: float = 1800.0
) -> AsyncIterator[None]:
    """Run the policy for as long as the worker runs (the last lifespan part, so what
    start-up loaded is frozen at once; discovery's lifespan has just collected)."""
    gc.freeze()
    task = asyncio.create_task(_run(freeze_every_s, sweep_every_s), name="gc-policy")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.unfreeze()
