"""The `price` block of nearby search, per indexed site, without a dict lookup per hit.

The pricing book (`app/pricing/book.py`) keys site prices by site UUID: at 250k sites a
lookup per hit is a cache miss or two, ~2 µs, which is as much as the whole search. Sites
share a handful of Schedules (zone + assignments), so this maps every site of one
`FleetIndex` to a small slot number once per (index, book version) — in a thread, off the
serving loop — and keeps each slot's rendered tail until the earliest `valid_until`.
Until the map is ready, the per-site path answers (same result, slower).
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from app.discovery.index import FleetIndex
    from app.pricing.book import PriceBook, Schedule

log = logging.getLogger("app.discovery")
NULL_TAIL = b',"price":null}'


class SitePrices:
    def __init__(self, version: int, slots: NDArray[np.int32], schedules: list[Schedule]) -> None:
        self.version = version
        self.slots = slots  # per indexed site: 0 = no tariff, else 1 + index into schedules
        self.schedules = schedules
        self.tails: list[bytes] = []
        self.valid_from = math.inf
        self.valid_until = -math.inf

    @classmethod
    def build(cls, book: PriceBook, site_uuid: NDArray[np.uint8]) -> SitePrices:
        version = book.version
        sites = book.sites
        if isinstance(sites, dict):
            raw = site_uuid.tobytes()
            found = [sites.get(raw[16 * i : 16 * i + 16]) for i in range(len(site_uuid))]
        else:
            found = sites.lookup(site_uuid)
        slot_of: dict[int, int] = {}
        schedules: list[Schedule] = []
        slots = np.zeros(len(site_uuid), dtype=np.int32)
        for i, sch in enumerate(found):
            if sch is not None:
                slot = slot_of.get(id(sch))
                if slot is None:
                    schedules.append(sch)
                    slot = slot_of[id(sch)] = len(schedules)
                slots[i] = slot
        return cls(version, slots, schedules)

    def tails_for(self, book: PriceBook, sites: NDArray[np.int64], now_s: float) -> list[bytes]:
        if not self.valid_from <= now_s < self.valid_until:
            self._refresh(book, now_s)
        tails = self.tails
        return [tails[s] for s in self.slots[sites].tolist()]

    def _refresh(self, book: PriceBook, now_s: float) -> None:
        tails, since, until = [NULL_TAIL], -math.inf, math.inf
        for sch in self.schedules:
            body, valid_until = book.schedule_price_json(sch, now_s)
            tails.append(b',"price":' + body + b"}")
            since, until = max(since, sch.valid_from), min(until, valid_until)
        self.tails, self.valid_from, self.valid_until = tails, since, until


def price_tails(index: FleetIndex, book: PriceBook, sites: NDArray[np.int64]) -> list[bytes]:
    now_s = book.now_s()
    sp: SitePrices | None = index.site_prices
    if sp is not None and sp.version == book.version:
        return sp.tails_for(book, sites, now_s)
    _build_soon(index, book)
    return book.price_tails(index.site_uuids(sites), now_s)


_building: dict[int, asyncio.Task[None]] = {}  # id(index) → the build under way


def _build_soon(index: FleetIndex, book: PriceBook) -> None:
    key = id(index)
    if key in _building:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # called outside the server (scripts): build right here
        index.site_prices = SitePrices.build(book, index.site_uuid)
        return

    async def build() -> None:
        try:
            sp = await asyncio.to_thread(SitePrices.build, book, index.site_uuid)
            if sp.version == book.version:
                index.site_prices = sp
        finally:
            _building.pop(key, None)

    task = loop.create_task(build())
    _building[key] = task
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("site price map not built (%r); per-site lookups meanwhile", exc)
