"""The per-process PriceBook: every tariff's current version (compiled) and every site-level
assignment, in memory, so nearby search can render a site's `price` block with a dict
lookup and no I/O.

- Loaded at start-up (one query for current tariff versions, one for site assignments).
- Kept fresh by LISTEN on `vw_pricing` (triggers in migration 0006): `t<tariff_id>` and
  `a<assignment_id>` are applied by re-reading just that row; `f` (deletes, site time-zone
  edits), a reconnect of the LISTEN connection and a periodic resync reload everything.
  Every reload bumps `version`, which invalidates every cached answer.
- `site_price_json(site_id, now_s)`: one dict lookup to the site's interned `Schedule`
  (sites with the same zone and assignments share one), whose cached answer holds until the
  price shown changes (`valid_until`) or a future assignment takes over, whichever is
  sooner. Sites without a tariff are not in the dict: `(b"null", inf)`. The site block
  uses SITE-level assignments only: a charger-level tariff shows in quotes for that
  charger's connectors, not in the site summary.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
import numpy as np
from numpy.typing import NDArray

from app.core.clock import Clock
from app.core.listen import Listener
from app.pricing import queries
from app.pricing.engine import Band, CompiledTariff, PriceNow, bands, compile_tariff, price_at
from app.pricing.queries import TariffRow
from app.pricing.tariff import Tariff

CHANNEL = "vw_pricing"
NULL = b"null"
DAY_S = 86_400.0
log = logging.getLogger("app.pricing")
_encoder = msgspec.json.Encoder()


def tariff_from_row(row: TariffRow) -> Tariff:
    """A stored tariff version as the engine's Tariff (without the row's timestamps)."""
    return Tariff(**{f: getattr(row, f) for f in Tariff.__struct_fields__})


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


def _has_dates(ct: CompiledTariff) -> bool:
    return any(
        e.restrictions is not None
        and (e.restrictions.start_date is not None or e.restrictions.end_date is not None)
        for e in ct.tariff.elements
    )


class Schedule:
    """A zone plus site-level assignments `(effective_from_s, tariff_id)` in the order they
    apply (a later assignment wins a tie). Interned: every site with the same zone and
    assignments shares one Schedule, and with it the cached answer, so a million sites on
    a handful of tariffs cost a dict entry each."""

    __slots__ = ("body", "effs", "rows", "tz", "valid_from", "valid_until", "version")

    def __init__(self, tz: ZoneInfo, rows: tuple[tuple[float, str], ...]) -> None:
        self.tz = tz
        self.rows = rows
        self.effs = [r[0] for r in rows]
        self.version = -1  # the cached answer: valid for book `version` in [from, until)
        self.valid_from = 0.0
        self.valid_until = 0.0
        self.body = NULL

    def at(self, now_s: float) -> tuple[str | None, float, float]:
        """(tariff in force at now_s or None, since when, the next change or inf)."""
        i = bisect.bisect_right(self.effs, now_s)
        nxt = self.effs[i] if i < len(self.effs) else math.inf
        if i == 0:
            return None, -math.inf, nxt
        return self.rows[i - 1][1], self.effs[i - 1], nxt

    @staticmethod
    def with_row(
        rows: tuple[tuple[float, str], ...], eff_s: float, tariff_id: str
    ) -> tuple[tuple[float, str], ...]:
        """`rows` plus one assignment, after any with the same effective_from."""
        i = bisect.bisect_right([r[0] for r in rows], eff_s)
        return (*rows[:i], (eff_s, tariff_id), *rows[i:])


class SiteSchedules:
    """Site UUID (16 raw bytes) → Schedule, compact. A bulk load keeps the keys in one
    sorted `S16` numpy array with an int32 index into the distinct Schedules (~5 MB at
    250,000 sites, against ~28 MB for a dict of bytes keys, which counts against the API
    worker's 400 MB budget); assignments added later go to a small overlay dict."""

    def __init__(self, mapping: dict[bytes, Schedule] | None = None) -> None:
        items = sorted((mapping or {}).items())
        distinct: dict[int, int] = {}
        self.schedules: list[Schedule] = []
        index = np.empty(len(items), dtype=np.int32)
        for i, (_, sch) in enumerate(items):
            slot = distinct.get(id(sch))
            if slot is None:
                slot = distinct[id(sch)] = len(self.schedules)
                self.schedules.append(sch)
            index[i] = slot
        self.keys = np.array([k for k, _ in items], dtype="S16")
        self.index = index
        self.overlay: dict[bytes, Schedule] = {}

    def get(self, key: bytes, default: Schedule | None = None) -> Schedule | None:
        sch = self.overlay.get(key)
        if sch is not None:
            return sch
        j = self._bulk_position(key)
        return default if j is None else self.schedules[int(self.index[j])]

    def __getitem__(self, key: bytes) -> Schedule:
        sch = self.get(key)
        if sch is None:
            raise KeyError(key)
        return sch

    def __setitem__(self, key: bytes, sch: Schedule) -> None:
        self.overlay[key] = sch

    def __bool__(self) -> bool:  # cheap: nearby search asks on every request
        return len(self.keys) > 0 or bool(self.overlay)

    def __len__(self) -> int:
        extra = sum(1 for k in self.overlay if self._bulk_position(k) is None)
        return len(self.keys) + extra

    def _bulk_position(self, key: bytes) -> int | None:
        # Compare as S16 arrays: a numpy bytes scalar drops trailing NUL bytes, and a
        # UUID may end in one.
        probe = np.array([key], dtype="S16")
        j = int(np.searchsorted(self.keys, probe[0]))
        return j if j < len(self.keys) and bool(self.keys[j : j + 1] == probe) else None

    def lookup(self, raw: NDArray[np.uint8]) -> list[Schedule | None]:
        """The Schedule of each of (n, 16) raw site UUIDs, vectorised over the bulk part."""
        want = np.ascontiguousarray(raw).view("S16").reshape(-1)
        out: list[Schedule | None] = [None] * len(want)
        if len(self.keys):
            j = np.minimum(np.searchsorted(self.keys, want), len(self.keys) - 1)
            hit = self.keys[j] == want
            slots = np.where(hit, self.index[j], -1).tolist()
            scheds = self.schedules
            out = [scheds[s] if s >= 0 else None for s in slots]
        if self.overlay:
            for i, key in enumerate(want.tolist()):
                sch = self.overlay.get(key.ljust(16, b"\0"))
                if sch is not None:
                    out[i] = sch
        return out


class PriceBook:
    """Tariffs and site assignments of the whole network, kept fresh by NOTIFY."""

    def __init__(self, dsn: str = "", *, resync_s: float = 600.0, debounce_s: float = 0.02) -> None:
        self.dsn = dsn
        self.resync_s = resync_s
        self.debounce_s = debounce_s
        self.version = 0
        self.clock: Clock = Clock()  # the "now" of displayed prices (tests may replace it)
        self.tariffs: dict[str, CompiledTariff] = {}
        self.sites: SiteSchedules | dict[bytes, Schedule] = {}
        self.loaded_at = 0.0
        self._schedules: dict[tuple[str, tuple[tuple[float, str], ...]], Schedule] = {}
        self._memo: dict[tuple[str, str], tuple[int, float, float, PriceNow, bytes]] = {}
        self._heard: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._listener = Listener(dsn, CHANNEL, self._on_notify, lambda: self._on_notify("f"))
        self._pool: asyncpg.Pool | None = None
        self._stopping = False

    # ---- the hot path -------------------------------------------------------------------

    def now_s(self) -> float:
        return self.clock.now().timestamp()

    def site_price_json(self, site_id: bytes, now_s: float) -> tuple[bytes, float]:
        """The site's `price` object as JSON (or b"null") and the UNIX time until which it
        holds (`math.inf` if it never changes). `site_id` is the UUID's 16 raw bytes."""
        sch = self.sites.get(site_id)
        if sch is None:
            return NULL, math.inf
        return self.schedule_price_json(sch, now_s)

    def schedule_price_json(self, sch: Schedule, now_s: float) -> tuple[bytes, float]:
        """`site_price_json` for a Schedule (shared by every site with the same zone and
        assignments; `sch.valid_from` is set once this returns)."""
        if sch.version == self.version and sch.valid_from <= now_s < sch.valid_until:
            return sch.body, sch.valid_until
        return self._compute(sch, now_s)

    def price_tails(self, site_ids: list[bytes], now_s: float) -> list[bytes]:
        """`,"price":<json>}` for each site (nearby search closes each site object with
        it). Sites share Schedules, so each distinct one is looked up once per call."""
        get = self.sites.get
        memo: dict[int, bytes] = {}
        out: list[bytes] = []
        for site_id in site_ids:
            sch = get(site_id)
            key = id(sch)
            tail = memo.get(key)
            if tail is None:
                body = NULL if sch is None else self.site_price_json(site_id, now_s)[0]
                tail = memo[key] = b',"price":' + body + b"}"
            out.append(tail)
        return out

    def _compute(self, sch: Schedule, now_s: float) -> tuple[bytes, float]:
        tariff_id, since, nxt = sch.at(now_s)
        ct = self.tariffs.get(tariff_id) if tariff_id is not None else None
        if ct is None:
            body, valid_from, until = NULL, since, nxt
        else:
            p_from, p_until, price, body = self._price(ct, sch.tz, now_s)
            valid_from, until = max(p_from, since), min(p_until, nxt)
            if nxt < p_until:  # a future assignment takes over before the price changes
                shown = datetime.fromtimestamp(nxt, UTC)
                body = _encoder.encode(msgspec.structs.replace(price, valid_until=shown))
        sch.version, sch.valid_from, sch.valid_until, sch.body = (
            self.version,
            valid_from,
            until,
            body,
        )
        return body, until

    def _price(
        self, ct: CompiledTariff, tz: ZoneInfo, now_s: float
    ) -> tuple[float, float, PriceNow, bytes]:
        """The displayed price of a tariff in a zone (and its JSON), shared by every
        schedule using both."""
        key = (ct.tariff.tariff_id, tz.key)
        hit = self._memo.get(key)
        if hit is not None and hit[0] == self.version and hit[1] <= now_s < hit[2]:
            return hit[1], hit[2], hit[3], hit[4]
        price = price_at(ct, datetime.fromtimestamp(now_s, UTC), tz)
        if price.valid_until is not None:
            until = price.valid_until.timestamp()
        elif _has_dates(ct):
            until = now_s + DAY_S  # no change within 8 days; look again tomorrow
        else:
            until = math.inf  # time/day-of-week bands repeat weekly: never changes
        body = _encoder.encode(price)
        self._memo[key] = (self.version, now_s, until, price, body)
        return now_s, until, price, body

    # ---- lookups for the driver-facing endpoints -------------------------------------------

    def site_timeline(self, site_id: bytes, now: datetime, hours: float = 24) -> list[Band]:
        """The displayed-price bands of the next `hours` at a site (site-level tariffs,
        switching at assignment changes); [] when the site has no tariff then."""
        site = self.sites.get(site_id)
        if site is None:
            return []
        start = now.timestamp()
        end = start + hours * 3600
        out: list[Band] = []
        t = start
        while t < end:
            tariff_id, _, nxt = site.at(t)
            stop = min(nxt, end)
            ct = self.tariffs.get(tariff_id) if tariff_id is not None else None
            if ct is not None:
                a = now if t == start else datetime.fromtimestamp(t, UTC)
                b = (
                    now + timedelta(hours=hours)
                    if stop == end
                    else datetime.fromtimestamp(stop, UTC)
                )
                out.extend(bands(ct, a, b, site.tz))
            t = stop
        return out

    def site_detail_json(self, site_id: bytes) -> tuple[bytes, bytes]:
        """`price` and `price_timeline` (next 24 h) of a site as JSON, at the book's now."""
        now = self.clock.now()
        price, _ = self.site_price_json(site_id, now.timestamp())
        return price, _encoder.encode(self.site_timeline(site_id, now))

    # ---- loading ------------------------------------------------------------------------

    def _bump(self) -> None:
        self.version += 1  # invalidates every cached answer
        self._memo.clear()
        self.loaded_at = time.monotonic()

    def assign(self, site_id: bytes, tz: ZoneInfo, eff_s: float, tariff_id: str) -> None:
        """Add a site-level assignment (call `_bump` after a batch)."""
        old = self.sites.get(site_id)
        rows = Schedule.with_row(old.rows if old else (), eff_s, sys.intern(tariff_id))
        key = (tz.key, rows)
        sch = self._schedules.get(key)
        if sch is None:
            sch = self._schedules[key] = Schedule(tz, rows)
        self.sites[site_id] = sch

    async def load_all(self, conn: asyncpg.Connection | asyncpg.Pool) -> None:
        tariffs = {
            r.tariff_id: compile_tariff(r)
            for r in await queries.current_versions(conn, tariff_ids=None)
        }
        groups = await queries.site_schedules(conn)
        self.tariffs, self._schedules = tariffs, {}
        self.sites = self._compact(groups)  # later assignments go to its overlay
        self._bump()

    def _compact(self, groups: list[queries.ScheduleGroup]) -> SiteSchedules:
        """Sites grouped by schedule (`pricing.site_schedules`) into a SiteSchedules."""
        table = SiteSchedules()
        keys: list[NDArray[Any]] = []
        index: list[NDArray[np.int32]] = []
        for g in groups:
            tz = _zone(g.timezone)
            if tz is None:
                continue
            rows = tuple(
                (float(e), sys.intern(t)) for e, t in zip(g.effs, g.tariff_ids, strict=True)
            )
            sch = self._schedules.get((tz.key, rows))
            if sch is None:
                sch = self._schedules[(tz.key, rows)] = Schedule(tz, rows)
            ids = np.frombuffer(g.site_ids, dtype="S16")
            keys.append(ids)
            index.append(np.full(len(ids), len(table.schedules), dtype=np.int32))
            table.schedules.append(sch)
        if keys:
            all_keys, all_index = np.concatenate(keys), np.concatenate(index)
            order = np.argsort(all_keys, kind="stable")
            table.keys, table.index = all_keys[order], all_index[order]
        return table

    def _add_assignments(self, rows: list[queries.SiteAssignmentRow]) -> None:
        for r in sorted(rows, key=lambda r: (r.effective_from, r.assignment_id)):
            tz = _zone(r.timezone)
            if tz is not None:
                self.assign(r.site_id.bytes, tz, r.effective_from.timestamp(), r.tariff_id)

    async def apply(self, conn: asyncpg.Connection | asyncpg.Pool, payloads: set[str]) -> None:
        """Re-read what the notifications name (or everything on `f`)."""
        if "f" in payloads:
            await self.load_all(conn)
            return
        tariff_ids: list[uuid.UUID] = []
        assignment_ids: list[int] = []
        for p in payloads:
            with contextlib.suppress(ValueError):
                if p[:1] == "t":
                    tariff_ids.append(uuid.UUID(p[1:]))
                elif p[:1] == "a":
                    assignment_ids.append(int(p[1:]))
        if tariff_ids:
            for r in await queries.current_versions(conn, tariff_ids=tariff_ids):
                self.tariffs[r.tariff_id] = compile_tariff(r)
        if assignment_ids:
            self._add_assignments(
                await queries.site_assignments(conn, assignment_ids=assignment_ids)
            )
        self._bump()

    # ---- background tasks -------------------------------------------------------------------

    async def start(self, pool: asyncpg.Pool) -> None:
        # Listen first, then load: a change committed during the load is either in the
        # loaded rows or heard (and re-read afterwards), never lost.
        self._pool = pool
        self._tasks = []
        self._listener.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listener.ready.wait(), timeout=5)
        try:
            await self.load_all(pool)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("price book not loaded at start-up (%r); retrying", exc)
            self._heard.add("f")
            self._wake.set()
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="pricing-refresh"))

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self._listener.stop()

    def _on_notify(self, payload: str) -> None:
        self._heard.add(payload)
        self._wake.set()

    async def _refresh_loop(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.resync_s)
            except TimeoutError:
                self._heard.add("f")  # periodic resync bounds any drift
            await asyncio.sleep(self.debounce_s)  # let a burst of changes settle
            self._wake.clear()
            heard, self._heard = self._heard, set()
            if not heard:
                continue
            assert self._pool is not None
            try:
                async with asyncio.timeout(30):
                    await self.apply(self._pool, heard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("price book refresh failed (%r); will retry", exc)
                self._heard |= heard
                await asyncio.sleep(1.0)
                self._wake.set()
