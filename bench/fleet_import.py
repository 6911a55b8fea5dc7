"""Fleet onboarding bench: POST /admin/v1/fleet/import with 10,000 chargers / 30,000
connectors in one call against the real service (`python -m app run`, APP_DEMO=0, 2 API
workers, real PostgreSQL and Redis), timed end to end, twice (create, then idempotent
re-import), with the API workers' peak RSS.

    make bench-import            # or: .venv/bin/python bench/fleet_import.py --chargers 10000

Uses DATABASE_URL / REDIS_URL when set (a fresh database `voltway_bench_import` is created
on that server), else the embedded servers. Target (TARGETS.md): ≤ 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.embedded import Services  # noqa: E402
from bench import _service as svc  # noqa: E402

CITIES = [
    (52.52, 13.405, "Europe/Berlin"),
    (48.8566, 2.3522, "Europe/Paris"),
    (41.9028, 12.4964, "Europe/Rome"),
    (40.4168, -3.7038, "Europe/Madrid"),
    (52.3676, 4.9041, "Europe/Amsterdam"),
    (50.0755, 14.4378, "Europe/Prague"),
]


def fleet(chargers: int, per_site: int = 2, seed: int = 1) -> dict[str, object]:
    rng = random.Random(seed)
    sites = []
    n_sites = chargers // per_site
    for s in range(n_sites):
        lat0, lon0, tz = rng.choice(CITIES)
        sites.append(
            {
                "external_id": f"bench-{s:06d}",
                "name": f"Bench site {s}",
                "address": f"Benchstraße {s}",
                "lat": round(lat0 + rng.gauss(0, 0.08), 6),
                "lon": round(lon0 + rng.gauss(0, 0.12), 6),
                "timezone": tz,
                "chargers": [
                    {
                        "charge_point_id": f"BENCH-{s:06d}-{c}",
                        "ocpp_password": f"bench-password-{s:06d}-{c}",
                        "iccid": f"8949{s:08d}{c:02d}00000",
                        "connectors": [
                            {"connector_no": 1, "type": "CCS2", "power_kw": 150},
                            {"connector_no": 2, "type": "CCS2", "power_kw": 150},
                            {"connector_no": 3, "type": "TYPE2", "power_kw": 22},
                        ],
                    }
                    for c in range(per_site)
                ],
            }
        )
    return {"sites": sites}


def rss_mb(pid: int) -> float:
    """RSS of a process and its children (granian workers), in MB."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(
            ["ps", "-o", "pid=,ppid=,rss=", "-A"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return 0.0
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    children = {p for p, pp, _ in rows if pp == pid}
    grandchildren = {p for p, pp, _ in rows if pp in children}
    pids += list(children | grandchildren)
    total = sum(r for p, _, r in rows if p in pids)
    return total / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chargers", type=int, default=10_000)
    args = parser.parse_args()

    services = Services(ROOT / ".data")
    env = services.start()
    db = asyncio.run(svc.reset_database(env["DATABASE_URL"], "voltway_bench_import"))
    env = {**env, "DATABASE_URL": db, "REDIS_NAMESPACE": "bench-import"}
    secret = svc.create_admin(env)
    try:
        with svc.running_service(env) as service:
            return measure(service, args.chargers, secret)
    finally:
        services.stop()


def measure(service: svc.RunningService, chargers: int, secret: str) -> int:
    base, proc = service.base, service.proc
    body = json.dumps(fleet(chargers)).encode()
    with httpx.Client(base_url=base, timeout=120) as http:
        token = svc.admin_token(http, secret)
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        rows = []
        for label in ("create", "re-import (idempotent)"):
            t0 = time.perf_counter()
            r = http.post("/admin/v1/fleet/import", content=body, headers=headers)
            elapsed = time.perf_counter() - t0
            r.raise_for_status()
            result = r.json()
            rows.append(
                (label, elapsed, result["created"], result["updated"], len(result["failed"]))
            )
    peak = rss_mb(proc.pid)
    print(
        f"fleet import: {chargers} chargers, {chargers * 3} connectors, "
        f"{len(body) / 1e6:.1f} MB JSON"
    )
    for label, elapsed, created, updated, failed in rows:
        verdict = "PASS" if elapsed <= 10 else "FAIL"
        print(
            f"  {label:24s} {elapsed:6.2f} s  created={created} updated={updated} "
            f"failed={failed}  [{verdict} ≤ 10 s]"
        )
    print(f"  RSS of the service tree after the imports: {peak:.0f} MB")
    return 0 if all(r[1] <= 10 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
