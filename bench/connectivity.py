"""Ingest 100,000 SIM records from the Control Center stand-in's REST API (issue 4: ≤ 10 s).

    .venv/bin/python bench/connectivity.py [--devices 100000] [--page-size 1000] [--rate 20]

The stand-in runs in-process behind httpx.ASGITransport (no sockets), so the figure is the
client's paging, pacing and decoding plus the stand-in's own work; it does not include
writing the records to PostgreSQL. `--check` exits 1 above 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.connectivity.client import ClientConfig, ControlCenterClient
from tests.standins.control_center import ControlCenterStandIn


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
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
    return 1 if args.check and elapsed > 10.0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
