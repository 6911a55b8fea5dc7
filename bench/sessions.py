"""Session start bench: `POST /v1/sessions` through the real service (`python -m app run`,
APP_DEMO=0, 2 API workers + the arq worker, real PostgreSQL and Redis) with a private
localstripe as Stripe and every charger simulated over OCPP (`app.sim`, no car: the
charger starts the transaction at once and waits to be stopped).

Each driver has a saved card (`pm_card_visa`, through the API) and its own connector.
Two phases, each started, then stopped (RemoteStop → StopTransaction → bill → capture
decision, the worker capturing in the background) before the next round:

- 1 concurrent: the drivers start one after another (`--sequential` starts);
- N concurrent (`--drivers`, default 50): all drivers start at once (`--rounds` rounds).

It reports, per phase:
- `POST /v1/sessions` p50/p99 as the client sees it (TARGETS.md: p99 ≤ 300 ms at 50);
- per request, from the answer's `Server-Timing` header, the hold (Stripe + our payments
  rows) and "ours" = the client's latency minus that hold;
- our own stages from the service's `session_start_seconds` histogram (`/metrics`, both
  workers), and `request` = the whole POST inside the service (the request middleware's
  histogram, coarse buckets): `reserve` (checks, tariff lock, STARTING row), `hold` (the Stripe PaymentIntent
  confirmed and recorded — localstripe's time plus our payments bookkeeping), and
  `remote_start` = hold confirmed → the charger's answer to RemoteStartTransaction (an upper
  bound of "at the charger"; TARGETS.md: ≤ 100 ms p99). Histogram quantiles are the upper
  edge of the bucket they fall in;
- beside them, localstripe's own time: the same PaymentIntent (manual capture, confirmed
  off-session on the same customers' default cards) created straight from the bench with
  the Stripe library, at the same concurrency;
- when the RemoteStart reached each simulated charger relative to the 201 the client got
  (negative: the charger had it before the driver's app).

The bench process (simulated chargers and HTTP clients) lowers its own priority (`--nice`,
10) once the service runs, as bench/ocpp_load.py does: the load generator shares the cores.

    .venv/bin/python bench/sessions.py            # --drivers 50 --rounds 5 --sequential 50

Uses DATABASE_URL / REDIS_URL when set (a fresh database `voltway_bench_sessions` on that
server), else the embedded servers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.embedded import Services  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.payments.localstripe import LocalStripe  # noqa: E402
from app.payments.stripe_client import Gateway  # noqa: E402
from app.sim import SimCharger, SimOptions, connect  # noqa: E402
from bench import _service as svc  # noqa: E402
from bench._service import pct_ms as pct  # noqa: E402
from tests.factories import energy_tariff  # noqa: E402

DB_NAME = "voltway_bench_sessions"
PASSWORD = "bench-sessions-password"
TARIFF = energy_tariff("Bench")
STAGES = ("request", "reserve", "hold", "remote_start")


def fleet(chargers: int) -> dict[str, Any]:
    return svc.grid_fleet(
        chargers,
        per_site=5,
        tag="BS",
        name="Bench sessions",
        lat=48.137,
        lon=11.575,
        password=PASSWORD,
    )


_BUCKET = re.compile(
    r"^(?P<name>session_start_seconds|http_request_duration_seconds)_bucket"
    r"\{(?P<labels>[^}]*)\}\s+(?P<v>[0-9.e+-]+)$"
)


async def stage_buckets(http: httpx.AsyncClient) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of `session_start_seconds` per stage (all workers)."""
    text = (await http.get("/metrics")).text
    out: dict[str, dict[float, float]] = defaultdict(dict)
    for line in text.splitlines():
        m = _BUCKET.match(line)
        if not m:
            continue
        labels = dict(kv.split("=", 1) for kv in m["labels"].split(","))
        if m["name"] == "http_request_duration_seconds":
            route, method = labels.get("route", ""), labels.get("method", "")
            if route.strip('"') != "/v1/sessions" or method.strip('"') != "POST":
                continue
            stage = "request"
        else:
            stage = labels["stage"].strip('"')
        le = labels["le"].strip('"')
        out[stage][float("inf") if le == "+Inf" else float(le)] = float(m["v"])
    return out


def bucket_quantile(
    before: dict[float, float], after: dict[float, float], q: float
) -> tuple[float, int]:
    """The upper edge (ms) of the bucket holding quantile q of what was observed between
    two snapshots, and how many were observed."""
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0.0) for e in edges]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return float("nan"), 0
    for edge, cum in zip(edges, counts, strict=True):
        if cum >= q * total:
            return edge * 1000, int(total)
    return float("inf"), int(total)


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, parent in parents.items() if parent == pid]
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Processes:
    """The service's processes whose CPU a phase is charged with."""

    api: list[int]
    worker: list[int]
    stripe: list[int]

    @classmethod
    def find(cls, service_pid: int, stripe_pid: int) -> Processes:
        kids = _descendants(service_pid)
        api = [p for p in kids if "granian" in _cmdline(p)]
        worker = [p for p in kids if "arq" in _cmdline(p)]
        return cls(api=api, worker=worker, stripe=[stripe_pid, *_descendants(stripe_pid)])

    def sample(self) -> tuple[float, float, float]:
        return cpu_seconds(self.api), cpu_seconds(self.worker), cpu_seconds(self.stripe)


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.post: list[float] = []
        self.hold: list[float] = []  # per request, from Server-Timing
        self.ours: list[float] = []  # POST as the client saw it minus the hold
        self.handler: list[float] = []  # the start in the service minus the hold
        self.codes: dict[int, int] = defaultdict(int)
        self.arrival_vs_201: list[float] = []
        self.stripe: list[float] = []
        self.stages: dict[str, tuple[float, float, int]] = {}
        self.cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)  # API, worker, localstripe
        self.cycles = 0  # sessions started and stopped in the CPU window


async def start_one(
    http: httpx.AsyncClient,
    driver: dict[str, str],
    connector_id: str,
    phase: Phase,
    answered: dict[str, float],
) -> str | None:
    t0 = time.perf_counter()
    r = await http.post(
        "/v1/sessions",
        json={"connector_id": connector_id},
        headers={"authorization": f"Bearer {driver['access_token']}"},
    )
    took = time.perf_counter() - t0
    answered[driver["id_tag"]] = time.time()
    phase.codes[r.status_code] += 1
    if r.status_code != 201:
        print(f"  start: {r.status_code} {r.text[:200]}")
        return None
    phase.post.append(took)
    timing = dict(
        (part.split(";dur=")[0].strip(), float(part.split(";dur=")[1]) / 1000)
        for part in r.headers.get("server-timing", "").split(",")
        if ";dur=" in part
    )
    if "hold" in timing:
        phase.hold.append(timing["hold"])
        phase.ours.append(took - timing["hold"])
    if "start" in timing:
        phase.handler.append(timing["start"] - timing.get("hold", 0.0))
    return str(r.json()["session_id"])


async def stop_all(
    http: httpx.AsyncClient, db_url: str, started: list[tuple[dict[str, str], str]]
) -> None:
    for driver, sid in started:  # wait until each charger has started its transaction
        async with asyncio.timeout(30):
            while True:
                r = await http.get(
                    f"/v1/sessions/{sid}",
                    headers={"authorization": f"Bearer {driver['access_token']}"},
                )
                if r.json()["status"] != "STARTING":
                    break
                await asyncio.sleep(0.05)
    await asyncio.gather(
        *(
            http.post(
                f"/v1/sessions/{sid}/stop", headers={"authorization": f"Bearer {d['access_token']}"}
            )
            for d, sid in started
        )
    )
    conn = await asyncpg.connect(db_url)
    try:
        async with asyncio.timeout(60):
            while True:
                open_ = await conn.fetchval(
                    "SELECT count(*) FROM charging_sessions "
                    "WHERE status NOT IN ('COMPLETED', 'FAILED')"
                )
                if not open_:
                    break
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def stripe_alone(
    gateway: Gateway, customers: list[tuple[str, str]], concurrency: int, count: int
) -> list[float]:
    """localstripe's own time for the hold PaymentIntent (create + confirm, manual capture,
    off-session), straight from the Stripe library, `concurrency` at a time."""
    lat: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        customer, pm = customers[i % len(customers)]
        async with gate:
            t0 = time.perf_counter()
            await gateway.v1.payment_intents.create_async(
                {
                    "amount": 5000,
                    "currency": "eur",
                    "customer": customer,
                    "payment_method": pm,
                    "capture_method": "manual",
                    "confirm": True,
                    "off_session": True,
                },
                options={"idempotency_key": f"bench:{uuid.uuid4()}"},
            )
            lat.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(i) for i in range(count)))
    return lat


async def run(
    procs: Processes,
    base: str,
    db_url: str,
    settings: Settings,
    args: argparse.Namespace,
    secret: str,
    stripe_env: dict[str, str],
) -> int:
    n = args.drivers
    if args.nice:  # the simulated chargers and clients share the cores with the service
        os.nice(args.nice)
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        token = await asyncio.to_thread(svc.admin_token_at, base, secret)
        admin = {"authorization": f"Bearer {token}"}
        await svc.import_priced_fleet(http, admin, db_url, fleet(n), TARIFF)
        conn = await asyncpg.connect(db_url)
        try:
            plan = await conn.fetch(
                """SELECT c.charge_point_id, k.connector_id::text AS connector_id
                     FROM chargers c JOIN connectors k USING (charger_id) ORDER BY 1"""
            )
        finally:
            await conn.close()

        drivers = await svc.make_drivers(db_url, settings, n, prefix="+49153")
        gate = asyncio.Semaphore(10)

        async def card(d: dict[str, str]) -> None:
            async with gate:
                r = await http.post(
                    "/v1/me/payment-methods",
                    json={"payment_method_id": "pm_card_visa"},
                    headers={"authorization": f"Bearer {d['access_token']}"},
                )
                r.raise_for_status()

        await asyncio.gather(*(card(d) for d in drivers))

        # Simulated chargers: RemoteStart accepted, transaction started, no car.
        arrivals: dict[str, float] = {}
        options = SimOptions(
            response_timeout_s=10, reconnect_min_s=0.2, reconnect_max_s=2, remote_start_plan=None
        )
        ws = base.replace("http://", "ws://") + "/ocpp"
        sims: list[SimCharger] = []
        for row in plan:
            sim = await connect(
                ws, row["charge_point_id"], PASSWORD, connectors=[1], options=options, timeout_s=60
            )
            record = sim._record

            def recorded(action: str, payload: dict[str, Any], _orig: Any = record) -> None:
                if action == "RemoteStartTransaction":
                    arrivals[str(payload.get("id_tag"))] = time.time()
                _orig(action, payload)

            sim._record = recorded  # type: ignore[method-assign]
            sims.append(sim)
        await svc.wait_available(db_url, n)
        connectors = [row["connector_id"] for row in plan]

        conn = await asyncpg.connect(db_url)
        try:
            customers = [
                (r["customer_id"], r["default_payment_method_id"])
                for r in await conn.fetch(
                    "SELECT customer_id, default_payment_method_id FROM stripe_customers"
                )
            ]
        finally:
            await conn.close()
        gateway = Gateway(stripe_env["STRIPE_SECRET_KEY"], api_base=stripe_env["STRIPE_API_BASE"])

        phases: list[Phase] = []
        # --- 1 at a time
        one = Phase("1 concurrent")
        before = await stage_buckets(http)
        cpu0 = procs.sample()
        answered: dict[str, float] = {}
        done = 0
        while done < args.sequential:
            batch = []
            for i in range(min(n, args.sequential - done)):
                sid = await start_one(http, drivers[i], connectors[i], one, answered)
                if sid is not None:
                    batch.append((drivers[i], sid))
            await stop_all(http, db_url, batch)
            done += len(batch) or 1
        one.arrival_vs_201 = [arrivals[t] - answered[t] for t in answered if t in arrivals]
        cpu1 = procs.sample()
        one.cpu = (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], cpu1[2] - cpu0[2])
        one.cycles = len(one.post)
        after = await stage_buckets(http)
        one.stages = _stages(before, after)
        one.stripe = await stripe_alone(gateway, customers, 1, args.sequential)
        phases.append(one)

        # --- all at once
        many = Phase(f"{n} concurrent")
        before = await stage_buckets(http)
        cpu0 = procs.sample()
        for _ in range(args.rounds):
            arrivals.clear()
            answered = {}
            sids = await asyncio.gather(
                *(start_one(http, drivers[i], connectors[i], many, answered) for i in range(n))
            )
            many.arrival_vs_201 += [arrivals[t] - answered[t] for t in answered if t in arrivals]
            await stop_all(
                http, db_url, [(drivers[i], s) for i, s in enumerate(sids) if s is not None]
            )
        cpu1 = procs.sample()
        many.cpu = (cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], cpu1[2] - cpu0[2])
        gone = [p for p in procs.api + procs.worker if cpu_seconds([p]) == 0.0]
        if gone:
            print(f"  !! service processes gone during the run: {gone}")
        many.cycles = len(many.post)
        after = await stage_buckets(http)
        many.stages = _stages(before, after)
        for _ in range(args.rounds):
            many.stripe += await stripe_alone(gateway, customers, n, n)
        phases.append(many)
        await gateway.aclose()
        for sim in sims:
            await sim.close()

    print(
        f"\nsession start: {n} drivers with a card, {n} simulated chargers, 2 API workers, "
        "localstripe as Stripe"
    )
    ok = True
    for ph in phases:
        p99 = pct(ph.post, 0.99)
        print(f"\n  {ph.name}: {len(ph.post)} starts, answers {dict(ph.codes)}")
        print(
            f"    POST /v1/sessions (client)     p50 {pct(ph.post, 0.5):7.1f} ms  "
            f"p99 {p99:7.1f} ms  mean {statistics.fmean(ph.post) * 1000:6.1f} ms"
        )
        for stage in STAGES:
            p50, p99s, count = ph.stages.get(stage, (float("nan"), float("nan"), 0))
            print(
                f"    stage {stage:<14}         p50 ≤ {p50:6.1f} ms  p99 ≤ {p99s:6.1f} ms  ({count})"
            )
        print(
            f"    localstripe alone (hold PI)    p50 {pct(ph.stripe, 0.5):7.1f} ms  "
            f"p99 {pct(ph.stripe, 0.99):7.1f} ms  ({len(ph.stripe)} at the same concurrency)"
        )
        print(
            f"    hold (Server-Timing)           p50 {pct(ph.hold, 0.5):7.1f} ms  "
            f"p99 {pct(ph.hold, 0.99):7.1f} ms  (Stripe + the payments rows)"
        )
        print(
            f"    ours = POST − its hold         p50 {pct(ph.ours, 0.5):7.1f} ms  "
            f"p99 {pct(ph.ours, 0.99):7.1f} ms  (per request, as the client saw it)"
        )
        print(
            f"    ours in the handler            p50 {pct(ph.handler, 0.5):7.1f} ms  "
            f"p99 {pct(ph.handler, 0.99):7.1f} ms  (the start minus its hold, server-side)"
        )
        arr = ph.arrival_vs_201
        if arr:
            print(
                f"    RemoteStart at the charger − 201 at the client: p50 {pct(arr, 0.5):6.1f} ms  "
                f"p99 {pct(arr, 0.99):6.1f} ms  ({len(arr)})"
            )
        if ph.cycles:
            api, worker, ls = (c / ph.cycles * 1000 for c in ph.cpu)
            print(
                f"    CPU per session (start, charge, stop, bill, capture): API workers "
                f"{api:5.1f} ms, arq worker {worker:5.1f} ms, localstripe {ls:5.1f} ms"
            )
        rs_p99 = ph.stages.get("remote_start", (0, float("nan"), 0))[1]
        if ph.name != "1 concurrent":
            ours99 = pct(ph.ours, 0.99)
            verdicts = [
                f"POST p99 ≤ 300 ms [{'PASS' if p99 <= 300 else 'FAIL'}]",
                f"ours (without the hold) p99 ≤ 300 ms [{'PASS' if ours99 <= 300 else 'FAIL'}]",
                f"hold → RemoteStart p99 ≤ 100 ms [{'PASS' if rs_p99 <= 100 else 'FAIL'}]",
            ]
            ok = ok and p99 <= 300 and rs_p99 <= 100
            print("    " + ", ".join(verdicts))
    return 0 if ok else 1


def _stages(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> dict[str, tuple[float, float, int]]:
    out = {}
    for stage in STAGES:
        if stage not in after:
            continue
        p50, count = bucket_quantile(before.get(stage, {}), after[stage], 0.5)
        p99, _ = bucket_quantile(before.get(stage, {}), after[stage], 0.99)
        out[stage] = (p50, p99, count)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drivers", type=int, default=50, help="also the concurrency")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of all-at-once starts")
    parser.add_argument("--sequential", type=int, default=50, help="starts one at a time")
    parser.add_argument(
        "--nice",
        type=int,
        default=10,
        help="niceness of this process (sims, clients) once the service runs",
    )
    args = parser.parse_args()

    services = Services(ROOT / ".data")
    env = services.start()
    db_url = asyncio.run(svc.reset_database(env["DATABASE_URL"], DB_NAME))
    stripe = LocalStripe(ROOT / ".data" / "localstripe-bench.log")
    stripe_env = stripe.start()
    env, settings = svc.bench_env({**env, **stripe_env}, db_url, "bench-sess")
    secret = svc.create_admin(env)
    try:
        with svc.running_service(env) as service:
            assert stripe.proc is not None
            procs = Processes.find(service.proc.pid, stripe.proc.pid)
            return asyncio.run(run(procs, service.base, db_url, settings, args, secret, stripe_env))
    finally:
        stripe.stop()
        services.stop()


if __name__ == "__main__":
    raise SystemExit(main())
