"""Connectivity targets (TARGETS.md): 100,000 SIM records ingested ≤ 10 s; a push event
hides a charger ≤ 1 s.

    .venv/bin/python bench/connectivity.py [--devices 100000] [--page-size 1000] [--rate 20]
                                           [--pushes 200] [--skip-service]

1. Ingestion: the Control Center stand-in runs in-process behind httpx.ASGITransport (no
   sockets), so the figure is the client's paging, pacing and decoding plus the stand-in's
   own work; it does not include writing the records to PostgreSQL.
2. Push → hidden: the real service (`python -m app run`, APP_DEMO=0, 2 API workers + the
   arq worker) on a database `voltway_bench_connectivity` with `--pushes` online chargers
   (one per site, sites 5 km apart). For each charger in turn: a signed SIM_STATE_CHANGE
   (DEACTIVATED) push is POSTed, then `/v1/chargers/nearby` at its site is polled every
   2 ms until its connectors are gone; the time from sending the push to the first answer
   without them is the latency (p50/p99/max), and the push's own answer time beside it.

`--check` exits 1 above 10 s ingestion or above 1 s p99 push → hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.connectivity.__main__ import build as build_push  # noqa: E402
from app.connectivity.client import ClientConfig, ControlCenterClient  # noqa: E402
from app.core.embedded import Services  # noqa: E402
from app.core.migrations import migrate  # noqa: E402
from bench import _service as svc  # noqa: E402
from tests.standins.control_center import ControlCenterStandIn, make_iccid  # noqa: E402

DB_NAME = "voltway_bench_connectivity"


async def run(devices: int, page_size: int, rate: float) -> tuple[float, int, int]:
    standin = ControlCenterStandIn(max_page_size=max(page_size, 50))
    standin.add_devices(devices)
    client = ControlCenterClient(
        "http://cc.bench",
        standin.username,
        standin.api_key,
        config=ClientConfig(requests_per_s=rate, burst=1, page_size=page_size),
        transport=httpx.ASGITransport(app=standin),
    )
    started = time.perf_counter()
    seen: set[str] = set()
    async with client:
        async for device in client.iter_modified_devices(datetime(2000, 1, 1, tzinfo=UTC)):
            seen.add(device.iccid)
    return time.perf_counter() - started, len(seen), client.last_sweep.pages


def site_position(i: int) -> tuple[float, float]:
    """Sites on a 0.05° grid (≈ 5 km): a 1 km search finds exactly one."""
    return 48.0 + (i // 40) * 0.05, 2.0 + (i % 40) * 0.05


async def build_fleet(admin_url: str, n: int) -> str:
    """A fresh database with `n` online chargers (2 AVAILABLE connectors each, a SIM)."""
    url = await svc.reset_database(admin_url, DB_NAME)
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        for i in range(n):
            lat, lon = site_position(i)
            site_id = await conn.fetchval(
                """INSERT INTO sites (external_id, name, address, lat, lon, timezone)
                   VALUES ($1, $1, 'Benchstraße 1', $2, $3, 'Europe/Paris') RETURNING site_id""",
                f"bench-cc-{i}",
                lat,
                lon,
            )
            charger_id = await conn.fetchval(
                """INSERT INTO chargers (site_id, charge_point_id, ocpp_password_hash, iccid)
                   VALUES ($1, $2, 'sha256$bench', $3) RETURNING charger_id""",
                site_id,
                f"BENCH-CC-{i}",
                make_iccid(900_000 + i),
            )
            await conn.execute(
                """INSERT INTO connectors (charger_id, site_id, connector_no, type, power_w,
                                           status)
                   SELECT $1, $2, n, 'CCS2', 150000, 'AVAILABLE' FROM generate_series(1, 2) n""",
                charger_id,
                site_id,
            )
        await conn.execute(
            """UPDATE charger_connectivity
                  SET state = 'online', reason = 'ok', last_seen_at = now(),
                      sim_status = 'ACTIVATED'"""
        )
    finally:
        await conn.close()
    return url


async def push_to_hidden(base: str, secret: str, n: int) -> tuple[list[float], list[float]]:
    """(push → hidden latencies, push answer times), seconds."""
    hidden: list[float] = []
    answered: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as http:
        for i in range(n):
            lat, lon = site_position(i)
            where = {"lat": lat, "lon": lon, "radius_m": 1000}
            r = await http.get("/v1/chargers/nearby", params=where)
            if r.status_code != 200 or not r.json()["items"]:
                raise RuntimeError(f"site {i} not shown before its push: {r.text}")
            body = build_push(
                "SIM_STATE_CHANGE",
                make_iccid(900_000 + i),
                secret,
                {"currentState": "DEACTIVATED"},
                datetime.now(UTC),
            )
            t0 = time.perf_counter()
            r = await http.post("/webhooks/control-center", json=body)
            answered.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"push refused: {r.status_code} {r.text}")
            while True:
                r = await http.get("/v1/chargers/nearby", params=where)
                if r.status_code == 200 and not r.json()["items"]:
                    hidden.append(time.perf_counter() - t0)
                    break
                if time.perf_counter() - t0 > 10:
                    raise TimeoutError(f"site {i} still shown 10 s after the push")
                await asyncio.sleep(0.002)
    return hidden, answered


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def measure_push(n: int) -> float:
    """Run the service, push, print; returns the p99 in seconds."""
    services = Services(ROOT / ".data")
    env = services.start()
    try:
        db = asyncio.run(build_fleet(env["DATABASE_URL"], n))
        secret = secrets.token_urlsafe(24)
        env = {
            **env,
            "DATABASE_URL": db,
            "ACCESS_LOG": "0",
            "DISCOVERY_RATE_PER_S": "0",
            "REDIS_NAMESPACE": "bench-connectivity",
            "CONTROL_CENTER_PUSH_SECRET": secret,
        }
        with svc.running_service(env) as service:
            hidden, answered = asyncio.run(push_to_hidden(service.base, secret, n))
    finally:
        services.stop()
    ms = [h * 1000 for h in hidden]
    print(
        f"push → hidden in search, {n} chargers one after another: p50 {pct(ms, 50):.0f} ms, "
        f"p99 {pct(ms, 99):.0f} ms, max {max(ms):.0f} ms (mean {statistics.mean(ms):.0f} ms); "
        f"the push's own answer p50 {pct(answered, 50) * 1000:.0f} ms, "
        f"p99 {pct(answered, 99) * 1000:.0f} ms"
    )
    return pct(hidden, 99)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--skip-service", action="store_true", help="ingestion only")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    elapsed, count, pages = asyncio.run(run(args.devices, args.page_size, args.rate))
    print(
        f"{count} SIM records in {elapsed:.2f} s ({pages} pages of {args.page_size}, "
        f"≤ {args.rate:g} req/s): {count / elapsed:,.0f} records/s"
    )
    if count != args.devices:
        print(f"expected {args.devices} distinct records", file=sys.stderr)
        return 1
    failed = args.check and elapsed > 10.0
    if not args.skip_service and args.pushes > 0:
        p99 = measure_push(args.pushes)
        failed = failed or (args.check and p99 > 1.0)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
