"""The GC policy keeps long-lived objects out of full collections (frozen) and still
reclaims cycles that became garbage after being frozen, at the next sweep."""

from __future__ import annotations

import asyncio
import gc
import weakref

from app.core.gcpolicy import lifespan


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic GC can reclaim it


async def test_frozen_cycles_survive_collections_until_the_next_sweep() -> None:
    async with lifespan(None, freeze_every_s=0.05, sweep_every_s=0.3):
        node = Node()
        ref = weakref.ref(node)
        await asyncio.sleep(0.12)  # frozen by now
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()  # ordinary collections no longer walk frozen objects
        assert ref() is not None
        for _ in range(40):  # the sweep unfreezes and collects everything once
            await asyncio.sleep(0.05)
            if ref() is None:
                break
        assert ref() is None
    assert gc.get_freeze_count() == 0
