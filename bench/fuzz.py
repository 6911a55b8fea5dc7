"""`make fuzz`: schemathesis over the committed OpenAPI document, every operation, every
check, against the app in granian (2 API workers) on a fresh database, with a staff admin
(password + TOTP), two drivers, localstripe and a geocoder stand-in — the harness of the
bounded run in `make test` (tests/security/fuzzing.py), at a larger count.

    make fuzz                                   # or: .venv/bin/python bench/fuzz.py
    .venv/bin/python bench/fuzz.py --max-examples 200 --seed 7

Uses DATABASE_URL / REDIS_URL when set (a fresh database `voltway_fuzz_<random>` is created
on that server and dropped after), else the embedded servers. Exit 1 on any failure or when
fewer than `--min-requests` (5,000) requests were generated. Target (TARGETS.md): 0 5xx and
0 responses that break the spec over ≥ 5,000 generated requests.
"""

from __future__ import annotations

import argparse
import asyncio
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
from tests.security.fuzzing import (  # noqa: E402
    run_schemathesis,
    seed_service,
    service_peers,
)
from tests.servers import granian_app  # noqa: E402


async def main(args: argparse.Namespace) -> int:
    services = Services(ROOT / ".data", database="voltway")
    env = services.start()
    admin_url = env["DATABASE_URL"]
    name = f"voltway_fuzz_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    db_url = dsn_for_database(admin_url, name)
    work = Path(tempfile.mkdtemp(prefix="voltway-fuzz-"))
    try:
        await migrate(db_url)
        extra = {"REDIS_NAMESPACE": f"fz{uuid.uuid4().hex[:8]}", "DRIVER_ACCESS_TTL_S": "21600"}
        with service_peers(work) as peers:
            async with granian_app(
                db_url, env["REDIS_URL"], workers=args.api_workers, env={**extra, **peers}
            ) as base:
                creds = await seed_service(db_url, base)
                t0 = time.monotonic()
                run = await asyncio.to_thread(
                    run_schemathesis,
                    base,
                    creds,
                    work,
                    max_examples=args.max_examples,
                    seed=args.seed,
                    workers=args.workers,
                    timeout_s=args.timeout_s,
                )
                wall = time.monotonic() - t0
        ops = run.report.get("operations", {})
        print("\n".join(run.output.splitlines()[-40:]))
        print(
            f"\nfuzz: {run.requests} generated requests over {ops.get('tested')} operations "
            f"in {wall:.0f} s ({run.requests / max(wall, 1e-9):.0f} req/s), seed {args.seed}, "
            f"--max-examples {args.max_examples}; failures: {len(run.failures)}; "
            f"exit {run.exit_code}; output and report in {work}"
        )
        if run.exit_code != 0 or run.failures:
            return 1
        if run.requests < args.min_requests:
            print(f"fewer than {args.min_requests} requests: raise --max-examples")
            return 1
        return 0
    finally:
        conn = await asyncpg.connect(admin_url)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
        services.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 1_000_000)
    parser.add_argument("--workers", type=int, default=1, help="schemathesis workers")
    parser.add_argument("--api-workers", type=int, default=2)
    parser.add_argument("--min-requests", type=int, default=5000)
    parser.add_argument("--timeout-s", type=float, default=3600)
    sys.exit(asyncio.run(main(parser.parse_args())))
