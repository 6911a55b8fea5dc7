"""Reservations bench: N drivers racing over M connectors through the real service
(`python -m app run`, APP_DEMO=0, 2 API workers + the arq worker, real PostgreSQL and
Redis), with every charger simulated over OCPP (`app.sim`) answering ReserveNow.

Each driver loops for `--seconds`: hold a random connector (POST /v1/reservations); when
it gets one, keep it a moment and cancel it (DELETE; the charger receives
CancelReservation). It reports

- holds the chargers accepted per second (201s), attempts per second, cancels per second;
- latency p50/p99 of an accepted hold (TARGETS.md: p99 ≤ 100 ms), of a refused one (409)
  and of a cancel; beside them, in the same run, `GET /health/live` under the same
  concurrency (the machine's own floor);
- the proof that no connector was double-booked: per connector, the holds the drivers were
  given never overlap (each driver holds from the 201 it received until it sends its
  DELETE — both live in the database for at least that long, so an overlap here would be
  two live holds at once), every 201 is one row in the database, every row is CANCELLED at
  the end, and no two live reservations of one connector overlap.

    make bench-reservations      # or: .venv/bin/python bench/reservations.py --drivers 200 --connectors 100

Uses DATABASE_URL / REDIS_URL when set (a fresh database `voltway_bench_reservations` on
that server), else the embedded servers. Targets (TARGETS.md): 0 double bookings, ≥ 200
reservations/s, p99 ≤ 100 ms for a hold the charger accepts.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.embedded import Services  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from bench import _service as svc  # noqa: E402
from bench._service import pct_ms as pct  # noqa: E402

DB_NAME = "voltway_bench_reservations"
PASSWORD = "bench-reservations-password"


def fleet(connectors: int, per_charger: int = 2) -> dict[str, Any]:
    return svc.grid_fleet(
        max(1, connectors // per_charger),
        per_site=4,
        per_charger=per_charger,
        tag="BR",
        name="Bench reservations",
        lat=52.52,
        lon=13.405,
        password=PASSWORD,
    )


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(cpu.get(pid, 0.0) for pid in tree)


def postgres_cpu_s(backend_pids: set[int]) -> float:
    """CPU seconds used so far by these PostgreSQL backends (the service's connections)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in backend_pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Stats:
    def __init__(self) -> None:
        self.accepted: list[float] = []
        self.refused: list[float] = []
        self.cancels: list[float] = []
        self.codes: dict[str, int] = defaultdict(int)
        self.details: dict[str, int] = defaultdict(int)  # why 409s were refused
        # (reservation_id, connector_id, 201 received, DELETE sent) on one monotonic clock
        self.won: list[tuple[str, str, float, float]] = []
        self.errors = 0


async def driver_loop(
    http: aiohttp.ClientSession,
    base: str,
    token: str,
    connectors: list[str],
    stats: Stats,
    stop_at: float,
    rng: random.Random,
    hold_ms: float,
) -> None:
    headers = {"authorization": f"Bearer {token}"}
    while time.monotonic() < stop_at:
        connector_id = rng.choice(connectors)
        t0 = time.perf_counter()
        try:
            async with http.post(
                f"{base}/v1/reservations", json={"connector_id": connector_id}, headers=headers
            ) as r:
                status, body = r.status, await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError):
            stats.errors += 1
            continue
        took = time.perf_counter() - t0
        if status == 201:
            held_from = time.perf_counter()
            stats.accepted.append(took)
            stats.codes["201"] += 1
            rid = body["reservation_id"]
            await asyncio.sleep(rng.uniform(0, hold_ms) / 1000)
            t0 = time.perf_counter()
            stats.won.append((rid, connector_id, held_from, t0))
            async with http.delete(f"{base}/v1/reservations/{rid}", headers=headers) as d:
                await d.read()
                if d.status != 200:
                    stats.codes[f"cancel {d.status}"] += 1
            stats.cancels.append(time.perf_counter() - t0)
        else:
            stats.refused.append(took)
            code = body.get("code", "?") if status < 500 else "5xx"
            stats.codes[f"{status} {code}"] += 1
            stats.details[str(body.get("detail", ""))[:40]] += 1
            await asyncio.sleep(rng.uniform(0, 0.01))


async def health_floor(
    http: aiohttp.ClientSession, base: str, concurrency: int, seconds: float
) -> list[float]:
    lat: list[float] = []
    stop_at = time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            async with http.get(f"{base}/health/live") as r:
                await r.read()
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return lat


async def proof(db_url: str, stats: Stats) -> list[str]:
    """Everything that would show a double booking; an empty list is the proof."""
    problems: list[str] = []
    by_connector: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, connector_id, held_from, held_until in stats.won:
        by_connector[connector_id].append((held_from, held_until))
    overlaps = 0
    for held in by_connector.values():
        held.sort()
        overlaps += sum(1 for a, b in itertools.pairwise(held) if b[0] < a[1])
    if overlaps:
        problems.append(f"{overlaps} times two drivers held one connector at once")
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch("SELECT reservation_id::text AS rid, status FROM reservations")
        live = await conn.fetchval(
            """SELECT count(*) FROM reservations a JOIN reservations b
                 ON a.connector_id = b.connector_id AND a.reservation_id < b.reservation_id
                WHERE a.status IN ('CONFIRMED', 'ACTIVE') AND b.status IN ('CONFIRMED', 'ACTIVE')
                  AND tstzrange(a.start_at, a.expires_at) && tstzrange(b.start_at, b.expires_at)"""
        )
    finally:
        await conn.close()
    if live:
        problems.append(f"{live} pairs of live reservations overlap")
    kept = {r["rid"] for r in rows}
    seen = {rid for rid, *_ in stats.won}
    if seen != kept:
        problems.append(
            f"201s {len(seen)} vs rows kept {len(kept)} "
            f"(only answered: {len(seen - kept)}, only kept: {len(kept - seen)})"
        )
    not_cancelled = sum(1 for r in rows if r["status"] != "CANCELLED")
    if not_cancelled:
        problems.append(f"{not_cancelled} reservations not CANCELLED at the end")
    return problems


async def run(
    base: str,
    service_pid: int,
    db_url: str,
    settings: Settings,
    args: argparse.Namespace,
    secret: str,
) -> int:
    async with httpx.AsyncClient(base_url=base, timeout=30) as admin:
        token = await asyncio.to_thread(svc.admin_token_at, base, secret)
        r = await admin.post(
            "/admin/v1/fleet/import",
            json=fleet(args.connectors),
            headers={"authorization": f"Bearer {token}"},
        )
        r.raise_for_status()
    conn = await asyncpg.connect(db_url)
    try:
        plan = await conn.fetch(
            """SELECT c.charge_point_id, array_agg(k.connector_no ORDER BY k.connector_no) AS nos
                 FROM chargers c JOIN connectors k USING (charger_id)
                GROUP BY c.charge_point_id ORDER BY 1"""
        )
        connectors = [
            r["connector_id"]
            for r in await conn.fetch("SELECT connector_id::text AS connector_id FROM connectors")
        ]
    finally:
        await conn.close()
    # The simulated chargers run in a process of their own (as in the demo), so they do not
    # compete with the drivers' client for one event loop.
    chargers_file = Path(tempfile.mkdtemp()) / "chargers.json"
    chargers_file.write_text(
        json.dumps(
            {
                "chargers": [
                    {"id": r["charge_point_id"], "password": PASSWORD, "connectors": list(r["nos"])}
                    for r in plan
                ]
            }
        )
    )
    ws = base.replace("http://", "ws://") + "/ocpp"
    t0 = time.perf_counter()
    sims = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measurement
        [
            *(sys.executable, "-m", "app.sim", "--url", ws, "--chargers", str(chargers_file)),
            *("--mode", "idle", "--report-every", "0", "--response-timeout", "10"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        # The chargers stand in for hardware elsewhere: they answer at the service's
        # priority, not the load generator's (their answer is in every accepted hold).
        preexec_fn=(lambda: os.nice(-args.load_nice))
        if args.load_nice and os.geteuid() == 0
        else None,
    )
    try:
        await svc.wait_available(db_url, len(connectors))
        print(f"{len(plan)} simulated chargers online in {time.perf_counter() - t0:.1f} s")
        return await race(base, db_url, settings, args, connectors, (service_pid, sims.pid))
    finally:
        sims.send_signal(signal.SIGINT)
        try:
            sims.wait(15)
        except subprocess.TimeoutExpired:
            sims.kill()


async def race(
    base: str,
    db_url: str,
    settings: Settings,
    args: argparse.Namespace,
    connectors: list[str],
    pids: tuple[int, int],
) -> int:
    drivers = await svc.make_drivers(db_url, settings, args.drivers, prefix="+49152")
    tokens = [d["access_token"] for d in drivers]
    conn = await asyncpg.connect(db_url)
    try:
        backends = {
            int(r["pid"])
            for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'voltway'"
            )
        }
    finally:
        await conn.close()

    stats = Stats()
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as http:
        floor_cpu = tree_cpu_s(pids[0])
        floor = await health_floor(http, base, args.concurrency, 3)
        floor_cpu = tree_cpu_s(pids[0]) - floor_cpu
        rng = random.Random(args.seed)
        stop_at = time.monotonic() + args.seconds
        cpu_before = (tree_cpu_s(pids[0]), tree_cpu_s(pids[1]), postgres_cpu_s(backends))
        started = time.perf_counter()
        await asyncio.gather(
            *(
                driver_loop(
                    http,
                    base,
                    t,
                    connectors,
                    stats,
                    stop_at,
                    random.Random(rng.random()),
                    args.hold_ms,
                )
                for t in tokens
            )
        )
        wall = time.perf_counter() - started
        cpu_after = (tree_cpu_s(pids[0]), tree_cpu_s(pids[1]), postgres_cpu_s(backends))
    await asyncio.sleep(1)  # the last CancelReservations
    problems = await proof(db_url, stats)

    attempts = len(stats.accepted) + len(stats.refused)
    held_per_s = len(stats.accepted) / wall
    p99_accepted = pct(stats.accepted, 0.99)
    print(
        f"\nreservations: {args.drivers} drivers racing over {len(connectors)} connectors "
        f"for {wall:.1f} s, 2 API workers, in-flight ≤ {args.concurrency} "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"  accepted holds       {len(stats.accepted):6d}  {held_per_s:7.1f}/s")
    print(f"  attempts             {attempts:6d}  {attempts / wall:7.1f}/s")
    print(f"  cancels              {len(stats.cancels):6d}  {len(stats.cancels) / wall:7.1f}/s")
    print(
        f"  answers              {dict(sorted(stats.codes.items()))}  transport errors {stats.errors}"
    )
    print(f"  refused because      {dict(sorted(stats.details.items(), key=lambda kv: -kv[1]))}")
    print(
        f"  hold accepted        p50 {pct(stats.accepted, 0.5):6.1f} ms  p99 {p99_accepted:6.1f} ms"
        f"  (mean {statistics.fmean(stats.accepted) * 1000 if stats.accepted else float('nan'):.1f})"
    )
    print(
        f"  hold refused (409)   p50 {pct(stats.refused, 0.5):6.1f} ms  p99 {pct(stats.refused, 0.99):6.1f} ms"
    )
    print(
        f"  cancel               p50 {pct(stats.cancels, 0.5):6.1f} ms  p99 {pct(stats.cancels, 0.99):6.1f} ms"
    )
    print(
        f"  reference: GET /health/live at {args.concurrency} in flight  "
        f"p50 {pct(floor, 0.5):6.1f} ms  p99 {pct(floor, 0.99):6.1f} ms  {len(floor) / 3:.0f}/s"
    )
    service_cpu, sims_cpu, pg_cpu = (a - b for a, b in zip(cpu_after, cpu_before, strict=True))
    requests = attempts + len(stats.cancels)
    print(
        f"  CPU used             service {service_cpu:.1f} s, its PostgreSQL backends "
        f"{pg_cpu:.1f} s, simulated chargers {sims_cpu:.1f} s  → "
        f"{(service_cpu + pg_cpu) / max(1, requests) * 1000:.1f} ms of service + database CPU "
        f"per request ({requests} requests); GET /health/live: "
        f"{floor_cpu / max(1, len(floor)) * 1000:.2f} ms of service CPU per request"
    )
    print(f"  double bookings: {problems or 'none'}")
    ok = not problems and held_per_s >= 200 and p99_accepted <= 100
    verdicts = [
        f"0 double bookings [{'PASS' if not problems else 'FAIL'}]",
        f"≥ 200 holds/s [{'PASS' if held_per_s >= 200 else 'FAIL'}]",
        f"p99 ≤ 100 ms [{'PASS' if p99_accepted <= 100 else 'FAIL'}]",
    ]
    print("  " + ", ".join(verdicts))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drivers", type=int, default=200)
    parser.add_argument("--connectors", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP requests in flight")
    parser.add_argument("--hold-ms", type=float, default=50, help="how long a won hold is kept")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--load-nice", type=int, default=10, help="niceness of the load side")
    args = parser.parse_args()

    services = Services(ROOT / ".data")
    env = services.start()
    db_url = asyncio.run(svc.reset_database(env["DATABASE_URL"], DB_NAME))
    env, settings = svc.bench_env(env, db_url, "bench-resv")
    secret = svc.create_admin(env)
    try:
        with svc.running_service(env) as service:
            # The load (this client) yields to the service on these 2 shared cores, as in
            # the other benches; the simulated chargers do not (see run()).
            if args.load_nice:
                os.nice(args.load_nice)
            return asyncio.run(run(service.base, service.proc.pid, db_url, settings, args, secret))
    finally:
        services.stop()


if __name__ == "__main__":
    raise SystemExit(main())
