"""PostgreSQL "restarted" under load: the app (granian, 2 API workers) reaches PostgreSQL
through a TCP proxy; while drivers keep writing (`PATCH /v1/me` with an Idempotency-Key,
whose stored response is committed in the request's own transaction), the proxy resets
every connection and refuses new ones for a while, then comes back.

Shown: `/health/ready` answers 503 naming PostgreSQL while it is away; every answer in the
outage is a 503 problem, never a 500; the service is ready and writing again ≤ 5 s after
PostgreSQL is back, on every worker; and no acknowledged write is lost (each 200 has its
row, each driver's stored name is at least the last one acknowledged)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest

from app.core.settings import Settings
from tests.factories import auth, make_driver
from tests.faultproxy import TcpProxy
from tests.faults.helpers import service_env, until
from tests.servers import fresh_client, seconds_until_everywhere, served

pytestmark = pytest.mark.timeout(120)

WRITERS = 8
OUTAGE_S = 4.0
RECOVERY_TARGET_S = 5.0


@dataclass
class Writer:
    """One driver writing their name in a loop; remembers what was acknowledged."""

    driver_id: str
    token: str
    sent: int = 0
    acked: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)

    def key(self, n: int) -> str:
        return f"pg-fault-{self.driver_id}-{n}"

    async def run(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            n = self.sent
            self.sent += 1
            try:
                r = await http.patch(
                    "/v1/me",
                    json={"name": f"w{n}"},
                    headers={**auth(self.token), "idempotency-key": self.key(n)},
                )
            except httpx.HTTPError as exc:  # no answer at all: not acknowledged
                self.statuses[0] += 1
                self.bad.append(f"{type(exc).__name__}")
                await asyncio.sleep(0.05)
                continue
            self.statuses[r.status_code] += 1
            if r.status_code == 200:
                assert r.json()["name"] == f"w{n}"
                self.acked.append(n)
                self.acked_at.append(time.monotonic())
            elif r.status_code == 503:
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.json()["code"] == "service_unavailable", r.text
                await asyncio.sleep(0.05)
            else:
                self.bad.append(f"{r.status_code} {r.text[:200]}")
            await asyncio.sleep(0.01)


@pytest.fixture
async def pg_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    async with TcpProxy.for_url(settings.database_url) as proxy:
        yield proxy


async def test_postgres_restart_under_load_503_then_recovers_and_loses_no_write(
    db: asyncpg.Connection, settings: Settings, pg_proxy: TcpProxy
) -> None:
    writers = []
    for i in range(WRITERS):
        d = await make_driver(db, settings, phone=f"+4915100077{i:03d}")
        writers.append(Writer(d["driver_id"], d["access_token"]))
    env = service_env(settings, DATABASE_URL=pg_proxy.url_for(settings.database_url))
    async with (
        contextlib.AsyncExitStack() as cleanup,
        served(env) as (base, proc),
        httpx.AsyncClient(base_url=base, timeout=5) as http,
        fresh_client(base, timeout=3) as probe_http,
    ):
        stop = asyncio.Event()
        load = [asyncio.create_task(w.run(http, stop)) for w in writers]
        cleanup.callback(stop.set)

        async def ready_status() -> int:
            try:
                return (await probe_http.get("/health/ready")).status_code
            except httpx.HTTPError:
                return 0

        async def steady() -> bool:
            return all(len(w.acked) >= 3 for w in writers)

        await until(steady, within_s=20, what="every writer acknowledged", log=proc)
        before = sum(len(w.acked) for w in writers)

        # --- PostgreSQL goes away: every connection reset, new ones refused
        await pg_proxy.stop()
        down_at = time.monotonic()
        r = await until(
            lambda: _ready_body(probe_http, 503), within_s=3, what="/health/ready 503", log=proc
        )
        assert r["checks"]["postgres"].startswith("down"), r
        assert r["checks"]["redis"] == "ok", r
        # and it stays 503 for the whole outage, on every worker
        seen_down = Counter[int]()
        while time.monotonic() - down_at < OUTAGE_S:
            seen_down[await ready_status()] += 1
        assert set(seen_down) == {503}, seen_down
        acked_during = sum(1 for w in writers for t in w.acked_at if t > down_at + 0.5)
        assert acked_during == 0  # nothing can be acknowledged without PostgreSQL

        # --- PostgreSQL is back
        await pg_proxy.start()
        back_at = time.monotonic()
        ready_after = await seconds_until_everywhere(
            ready_status, 200, streak=20, within_s=RECOVERY_TARGET_S + 5
        )

        async def all_writing() -> bool:
            return all(any(t > back_at for t in w.acked_at) for w in writers)

        await until(all_writing, within_s=RECOVERY_TARGET_S + 5, what="writes again", log=proc)
        writes_after = max(min(t for t in w.acked_at if t > back_at) for w in writers) - back_at
        await asyncio.sleep(1.0)  # and keeps writing
        stop.set()
        await asyncio.gather(*load)
        server_log = proc.output(2000000)

    statuses = sum((w.statuses for w in writers), Counter[int]())
    print(
        f"\nPostgreSQL away {OUTAGE_S:.0f} s: ready again on every worker after "
        f"{ready_after:.2f} s, every writer acknowledged again after {writes_after:.2f} s; "
        f"answers {dict(statuses)}; probes during the outage {dict(seen_down)}"
    )
    assert ready_after <= RECOVERY_TARGET_S, ready_after
    assert writes_after <= RECOVERY_TARGET_S, writes_after
    bad = [b for w in writers for b in w.bad]
    assert not bad, f"{bad}\n--- server errors:\n{_errors(server_log)}"
    assert set(statuses) <= {200, 503}, statuses

    # --- no acknowledged write lost
    keys = [w.key(n) for w in writers for n in w.acked]
    stored = await db.fetchval(
        "SELECT count(*) FROM idempotency_keys WHERE key = ANY($1::text[]) "
        "AND completed_at IS NOT NULL AND status_code = 200",
        keys,
    )
    assert stored == len(keys), (stored, len(keys))
    names = {
        str(r["driver_id"]): r["name"]
        for r in await db.fetch(
            "SELECT driver_id, name FROM drivers WHERE driver_id = ANY($1::uuid[])",
            [w.driver_id for w in writers],
        )
    }
    for w in writers:
        # the last write that committed is the last acknowledged one or a later attempt
        # whose answer was lost with the connection; never an older one
        assert int(names[w.driver_id][1:]) >= max(w.acked), (names[w.driver_id], max(w.acked))
    print(f"acknowledged writes: {len(keys)} ({before} before the outage), all stored")


async def _ready_body(http: httpx.AsyncClient, status: int) -> dict[str, dict[str, str]] | None:
    try:
        r = await http.get("/health/ready")
    except httpx.HTTPError:
        return None
    if r.status_code != status:
        return None
    body: dict[str, dict[str, str]] = r.json()
    return body


def _errors(log: str) -> str:
    """The server's error lines (JSON logs), for a failure message."""
    return "\n".join(line[-2500:] for line in log.splitlines() if '"level": "error"' in line)
