"""`make bench`: every benchmark of bench/README.md, one after another, each in its own
process (they start and stop their own service), then a summary.

    make bench                     # full runs (~20 min on 2 cores, more the first time:
                                   # discovery builds its 1M-connector database once)
    make bench QUICK=1             # smaller fleets and shorter windows (~6 min): a smoke
                                   # test of every bench, not figures for the README
    .venv/bin/python bench/all.py --only discovery,ocpp --quick

Figures for bench/README.md come from full runs on a quiet machine; each bench prints its
own in-run reference (hello-world route, plain Decimal loop, offered rate).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    quick: tuple[str, ...]  # arguments of the quick mode
    full: tuple[str, ...] = ()


BENCHES = (
    Bench("tariff", "tariff_engine.py", ("--seconds", "1", "--sessions", "5000")),
    Bench("import", "fleet_import.py", ("--chargers", "2000")),
    Bench("discovery", "discovery.py", ("--seconds", "5")),
    Bench(
        "ocpp",
        "ocpp_load.py",
        (
            *("--chargers", "2000", "--rate", "1000", "--target", "1000"),
            *("--seconds", "10", "--warmup", "5"),
        ),
    ),
    Bench("connectivity", "connectivity.py", ("--devices", "20000", "--pushes", "50")),
    Bench("reservations", "reservations.py", ("--seconds", "5")),
    Bench("sessions", "sessions.py", ("--drivers", "10", "--rounds", "1", "--sequential", "10")),
    Bench(
        "alerts",
        "alerts.py",
        ("--sessions", "20", "--messages", "500", "--paced-messages", "100"),
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small fleets, short windows")
    parser.add_argument(
        "--only", default="", help="comma-separated names: " + ",".join(b.name for b in BENCHES)
    )
    parser.add_argument("--skip", default="", help="comma-separated names to leave out")
    args = parser.parse_args(argv)
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    unknown = (only | skip) - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    results: list[tuple[str, str, float]] = []
    for bench in BENCHES:
        if (only and bench.name not in only) or bench.name in skip:
            continue
        path = ROOT / "bench" / bench.script
        if not path.exists():
            results.append((bench.name, "missing", 0.0))
            continue
        argv_ = [sys.executable, str(path), *(bench.quick if args.quick else bench.full)]
        print(f"\n=== {bench.name}: {' '.join(argv_[1:])}", flush=True)
        started = time.monotonic()
        code = subprocess.run(argv_, cwd=ROOT, check=False).returncode
        results.append(
            (bench.name, "ok" if code == 0 else f"exit {code}", time.monotonic() - started)
        )
    print("\n=== summary" + (" (quick mode: not README figures)" if args.quick else ""))
    for name, outcome, seconds in results:
        print(f"  {name:<13} {outcome:<8} {seconds:6.0f} s")
    return 0 if all(outcome == "ok" for _, outcome, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
