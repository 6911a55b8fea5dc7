"""Nearby search at 1,000,000 connectors: throughput ratio vs a trivial route, p50/p99.

    .venv/bin/python bench/discovery.py            # builds the fleet once, then measures
    .venv/bin/python bench/discovery.py --rebuild  # rebuild the synthetic fleet

1. A synthetic Europe-wide fleet in database `voltway_bench_discovery` (bulk SQL loader):
   250,000 sites clustered around 40 European cities, 2 chargers per site, 2 connectors
   per charger = 1,000,000 connectors, all chargers online, statuses mixed.
2. The real service (`python -m app run`, APP_DEMO=0, 2 granian workers, real PostgreSQL
   and Redis; the per-client discovery rate limit raised because all load comes from one
   address; access log off for both routes).
3. wrk (Debian package), 64 connections, 2 threads, random positions around the cities
   and random filters, against `/v1/chargers/nearby`, and in the same run against the
   trivial `/health/live` of the same app. Prints throughput for both, the ratio, p50/p99,
   and the RSS of each API worker. Targets: ratio ≥ 0.5, p99 ≤ 25 ms, RSS ≤ 400 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.embedded import Services, dsn_for_database  # noqa: E402
from app.core.migrations import migrate  # noqa: E402
from bench import _service as svc  # noqa: E402

CITIES = [
    ("Europe/Berlin", 52.52, 13.405),
    ("Europe/Berlin", 48.137, 11.575),
    ("Europe/Berlin", 53.551, 9.993),
    ("Europe/Berlin", 50.938, 6.96),
    ("Europe/Berlin", 50.11, 8.682),
    ("Europe/Paris", 48.857, 2.352),
    ("Europe/Paris", 45.764, 4.836),
    ("Europe/Paris", 43.296, 5.37),
    ("Europe/Paris", 43.605, 1.444),
    ("Europe/London", 51.507, -0.128),
    ("Europe/London", 53.481, -2.243),
    ("Europe/London", 52.486, -1.89),
    ("Europe/Madrid", 40.417, -3.704),
    ("Europe/Madrid", 41.385, 2.173),
    ("Europe/Madrid", 39.47, -0.376),
    ("Europe/Rome", 41.903, 12.496),
    ("Europe/Rome", 45.464, 9.19),
    ("Europe/Rome", 40.852, 14.268),
    ("Europe/Amsterdam", 52.368, 4.904),
    ("Europe/Amsterdam", 51.924, 4.478),
    ("Europe/Brussels", 50.85, 4.352),
    ("Europe/Vienna", 48.208, 16.374),
    ("Europe/Zurich", 47.377, 8.542),
    ("Europe/Prague", 50.076, 14.438),
    ("Europe/Warsaw", 52.23, 21.012),
    ("Europe/Warsaw", 50.065, 19.945),
    ("Europe/Budapest", 47.498, 19.04),
    ("Europe/Copenhagen", 55.676, 12.568),
    ("Europe/Stockholm", 59.329, 18.069),
    ("Europe/Oslo", 59.914, 10.752),
    ("Europe/Helsinki", 60.17, 24.938),
    ("Europe/Dublin", 53.35, -6.26),
    ("Europe/Lisbon", 38.722, -9.139),
    ("Europe/Athens", 37.984, 23.728),
    ("Europe/Bucharest", 44.426, 26.103),
    ("Europe/Sofia", 42.698, 23.322),
    ("Europe/Zagreb", 45.815, 15.982),
    ("Europe/Belgrade", 44.787, 20.449),
    ("Europe/Riga", 56.95, 24.105),
    ("Europe/Vilnius", 54.687, 25.28),
]
SITES = 250_000
DB_NAME = "voltway_bench_discovery"


async def build_fleet(admin_url: str, rebuild: bool) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME)
        if rebuild and exists:
            await conn.execute(f'DROP DATABASE "{DB_NAME}" WITH (FORCE)')
            exists = False
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()
    url = dsn_for_database(admin_url, DB_NAME)
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        have = await conn.fetchval("SELECT count(*) FROM connectors")
        if have >= 1_000_000:
            print(f"fleet present: {have} connectors")
            await price_every_site(conn)
            return url
        t0 = time.perf_counter()
        await conn.execute("TRUNCATE sites CASCADE")
        await conn.execute("CREATE TEMP TABLE city (i int, tz text, lat float8, lon float8)")
        await conn.executemany(
            "INSERT INTO city VALUES ($1, $2, $3, $4)",
            [(i, tz, lat, lon) for i, (tz, lat, lon) in enumerate(CITIES)],
        )
        await conn.execute("SELECT setseed(0.42)")
        # Gaussian-ish scatter (sum of three uniforms), ~0.12° (≈ 10 km) around each city.
        await conn.execute(
            f"""INSERT INTO sites (external_id, name, address, lat, lon, timezone)
                SELECT 'bench-' || g, 'Bench site ' || g, 'Benchstraße ' || g,
                       c.lat + (random() + random() + random() - 1.5) * 0.16,
                       c.lon + (random() + random() + random() - 1.5) * 0.24,
                       c.tz
                FROM generate_series(1, {SITES}) g JOIN city c ON c.i = g % {len(CITIES)}"""
        )
        await conn.execute(
            """INSERT INTO chargers (site_id, charge_point_id, ocpp_password_hash)
               SELECT s.site_id, s.external_id || '-' || n, 'sha256$bench'
               FROM sites s CROSS JOIN generate_series(1, 2) n"""
        )
        await conn.execute(
            """INSERT INTO connectors (charger_id, site_id, connector_no, type, power_w, status)
               SELECT c.charger_id, c.site_id, n,
                      (ARRAY['CCS2','TYPE2','CHADEMO','CCS2','TYPE2','NACS'])[1 + floor(random() * 6)::int],
                      (ARRAY[11000, 22000, 50000, 150000, 300000])[1 + floor(random() * 5)::int],
                      (ARRAY['AVAILABLE','AVAILABLE','OCCUPIED','RESERVED','FAULTED'])[1 + floor(random() * 5)::int]
               FROM chargers c CROSS JOIN generate_series(1, 2) n"""
        )
        await conn.execute("UPDATE charger_connectivity SET state = 'online', reason = 'ok'")
        await price_every_site(conn)
        await conn.execute("ANALYZE")
        have = await conn.fetchval("SELECT count(*) FROM connectors")
        print(f"fleet built: {have} connectors in {time.perf_counter() - t0:.1f} s")
    finally:
        await conn.close()
    return url


# The positions are drawn once, when wrk starts (20,000 requests, cycled): formatting a
# request in Lua for every call would spend the load generator's CPU, which shares the
# two cores with the service, on the search side of the comparison only.
async def price_every_site(conn: asyncpg.Connection) -> None:
    """Drivers see a price on every site: publish the demo's day/night/peak tariff once
    (through the pricing service, as an admin would) and assign it to every site, so the
    search responses carry real `price` blocks with `valid_until`."""
    from datetime import UTC, datetime

    from app.core.auth import Role, StaffPrincipal
    from app.core.db import init_connection
    from app.demo.seed import DEMO_TARIFFS_FROM, demo_tariff
    from app.pricing.service import create_tariff

    if await conn.fetchval("SELECT count(*) FROM tariff_assignments") >= SITES:
        return
    actor = StaffPrincipal(
        staff_id=str(uuid.uuid4()), email="bench@voltway.test", roles=(Role.ADMIN,)
    )
    await init_connection(conn)
    body = demo_tariff("Bench", "EUR", "19", "0.4900", "0.3400", "0.6500", "6.00")
    async with conn.transaction():
        ref = await create_tariff(conn, body, actor=actor, now=datetime.now(UTC), request_id=None)
        await conn.execute(
            "INSERT INTO tariff_assignments (tariff_id, site_id, effective_from) "
            "SELECT $1::uuid, site_id, $2 FROM sites",
            ref.tariff_id,
            DEMO_TARIFFS_FROM,
        )
    print("published a day/night/peak tariff and assigned it to every site")


WRK_SCRIPT = """
local cities = {%s}
math.randomseed(42)
local types = {"", "", "", "&connector_type=CCS2", "&connector_type=TYPE2"}
local reqs = {}
for i = 1, 20000 do
  local c = cities[math.random(#cities)]
  local lat = c[1] + (math.random() - 0.5) * 0.2
  local lon = c[2] + (math.random() - 0.5) * 0.3
  local path = string.format("/v1/chargers/nearby?lat=%%.5f&lon=%%.5f&radius_m=5000&limit=20%%s",
                             lat, lon, types[math.random(#types)])
  if math.random() < 0.3 then path = path .. "&available_only=true" end
  reqs[i] = wrk.format("GET", path)
end
local n = 0
request = function()
  n = n + 1
  return reqs[(n %% 20000) + 1]
end
"""


def ensure_wrk() -> None:
    """wrk is a Debian package: install it when missing and we may (root with apt-get)."""
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package)…")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: install the Debian package `wrk`")


def run_wrk(url: str, seconds: int, script: str | None) -> dict[str, float]:
    cmd = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.MULTILINE)
        assert m, out
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": pct("50"),
        "p99": pct("99"),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def worker_rss_mb(root_pid: int) -> list[float]:
    out = subprocess.run(
        ["ps", "-o", "pid=,ppid=,rss=,args=", "-A"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split(None, 3) for line in out.splitlines() if line.strip()]
    granian = [int(r[0]) for r in rows if int(r[1]) == root_pid and "granian" in r[3]]
    return [int(r[2]) / 1024 for r in rows if granian and int(r[1]) in granian]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    ensure_wrk()
    services = Services(ROOT / ".data")
    env = services.start()
    db = asyncio.run(build_fleet(env["DATABASE_URL"], args.rebuild))
    env = {
        **env,
        "DATABASE_URL": db,
        "ACCESS_LOG": "0",
        "DISCOVERY_RATE_PER_S": "0",
        "REDIS_NAMESPACE": "bench-discovery",
    }
    try:
        with svc.running_service(env, ready_timeout_s=300) as service:
            print(f"service ready in {service.ready_after_s:.1f} s (index loaded in both workers)")
            return measure(service, args.seconds)
    finally:
        services.stop()


def measure(service: svc.RunningService, seconds: int) -> int:
    base, proc = service.base, service.proc
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT % ", ".join(f"{{{lat}, {lon}}}" for _, lat, lon in CITIES))
        script = f.name
    run_wrk(base + "/health/live", 3, None)  # warm-up
    run_wrk(base + "/", 3, script)
    hello = run_wrk(base + "/health/live", seconds, None)
    search = run_wrk(base + "/", seconds, script)
    rss = worker_rss_mb(proc.pid)
    ratio = search["rps"] / hello["rps"]
    print(
        f"hello  /health/live        {hello['rps']:9.0f} req/s  p50 {hello['p50']:.2f} ms  "
        f"p99 {hello['p99']:.2f} ms"
    )
    print(
        f"search /v1/chargers/nearby {search['rps']:9.0f} req/s  p50 {search['p50']:.2f} ms  "
        f"p99 {search['p99']:.2f} ms  non-2xx {search['errors']:.0f}"
    )
    print(
        f"ratio {ratio:.2f} (target ≥ 0.5)   p99 {search['p99']:.1f} ms (target ≤ 25)   "
        f"API worker RSS {', '.join(f'{r:.0f}' for r in rss)} MB (target ≤ 400)"
    )
    fresh = asyncio.run(freshness(service, samples=50))
    print(
        f"freshness (connectivity change → gone from / back in search, polled over both "
        f"workers): p50 {fresh[len(fresh) // 2] * 1000:.0f} ms, p99 "
        f"{fresh[int(len(fresh) * 0.99)] * 1000:.0f} ms, max {fresh[-1] * 1000:.0f} ms "
        f"over {len(fresh)} changes (target ≤ 1 s)"
    )
    ok = ratio >= 0.5 and search["p99"] <= 25 and all(r <= 400 for r in rss) and fresh[-1] <= 1
    return 0 if ok else 1


async def freshness(service: svc.RunningService, samples: int) -> list[float]:
    """Take random sites' chargers offline and back with a plain UPDATE (as the OCPP and
    connectivity code would) and poll nearby search until the change shows; both API
    workers answer the polls (a new connection each). Seconds per change, sorted."""
    import json
    import urllib.request

    conn = await asyncpg.connect(service.env["DATABASE_URL"])
    try:
        rows = await conn.fetch(
            "SELECT site_id::text, lat, lon FROM sites ORDER BY random() LIMIT $1", samples
        )
        out: list[float] = []
        for site_id, lat, lon in rows:
            url = f"{service.base}/v1/chargers/nearby?lat={lat}&lon={lon}&radius_m=50&limit=100"

            def present(url: str = url, site_id: str = site_id) -> bool:
                with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310
                    return any(i["site_id"] == site_id for i in json.load(r)["items"])

            for state, want in (("offline", False), ("online", True)):
                t0 = time.perf_counter()
                await conn.execute(
                    "UPDATE charger_connectivity h SET state = $2 FROM chargers c "
                    "WHERE c.charger_id = h.charger_id AND c.site_id = $1::uuid",
                    site_id,
                    state,
                )
                while present() != want and time.perf_counter() - t0 < 5:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                out.append(time.perf_counter() - t0)
        return sorted(out)
    finally:
        await conn.close()


if __name__ == "__main__":
    raise SystemExit(main())
