"""OCPP scale bench: 10,000 simulated chargers on ONE API process (granian, 1 worker).

    make bench-ocpp      # or: .venv/bin/python bench/ocpp_load.py [--chargers 10000]
                         #     [--rate 3000] [--seconds 30] [--sim-processes 2]

1. A fresh database `voltway_bench_ocpp` (DATABASE_URL / REDIS_URL when set, else the
   embedded servers), the real service (`python -m app run`, APP_DEMO=0, APP_WORKERS=1).
2. Onboarding through the fleet import API (staff admin created with the CLI, password +
   TOTP login), chargers `SIM-000001`… with the simulator's password scheme.
3. `python -m app.sim --mode load` in `--sim-processes` processes, each with its share of
   the chargers and of the rate (StatusNotification / MeterValues half and half, one CALL
   outstanding per charger, as OCPP wants).
4. Once every charger is online: the server's own count of handled StatusNotification +
   MeterValues (`ocpp_messages_total` on /metrics) over `--seconds`, the API worker's CPU
   share and RSS, and the simulators' call round trip (p50/p99) over their load phase.

The soft RLIMIT_NOFILE is raised to the hard limit for this process and its children
(10,000 sockets on each side). `--check` exits 1 below the target rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.embedded import Services  # noqa: E402
from bench import _service as svc  # noqa: E402

DATABASE = "voltway_bench_ocpp"
PASSWORD_TEMPLATE = "simpass-{n:08d}"  # the simulator's default (app/sim/fleet.py)
COUNTED = ("StatusNotification", "MeterValues")


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fleet(chargers: int, per_site: int = 2) -> dict[str, Any]:
    """Sites of `per_site` chargers with two connectors each, as app.sim generates them."""
    sites = []
    for s in range(0, chargers, per_site):
        numbers = range(s + 1, min(s + per_site, chargers) + 1)
        sites.append(
            {
                "external_id": f"ocpp-bench-{s // per_site:06d}",
                "name": f"OCPP bench site {s // per_site}",
                "lat": 52.0 + (s % 1000) / 1000,
                "lon": 13.0 + (s // 1000) / 100,
                "timezone": "Europe/Berlin",
                "chargers": [
                    {
                        "charge_point_id": f"SIM-{n:06d}",
                        "ocpp_password": PASSWORD_TEMPLATE.format(n=n),
                        "iccid": f"8988230{n:013d}",
                        "connectors": [
                            {"connector_no": 1, "type": "CCS2", "power_kw": 150},
                            {"connector_no": 2, "type": "TYPE2", "power_kw": 22},
                        ],
                    }
                    for n in numbers
                ],
            }
        )
    return {"sites": sites}


def onboard(service: svc.RunningService, chargers: int, secret: str) -> float:
    with httpx.Client(base_url=service.base, timeout=300) as http:
        token = svc.admin_token(http, secret)
        t0 = time.perf_counter()
        r = http.post(
            "/admin/v1/fleet/import",
            json=fleet(chargers),
            headers={"authorization": f"Bearer {token}"},
        )
        r.raise_for_status()
        result = r.json()
        if result["failed"]:
            raise SystemExit(f"import failed: {result['failed'][:3]}")
        return time.perf_counter() - t0


def handled(base: str) -> dict[str, float]:
    """ocpp_messages_total by action and the writer's batch sums, from /metrics."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ocpp_messages_total{"):
            labels, _, value = line.rpartition(" ")
            action = labels.split('action="', 1)[1].split('"', 1)[0]
            out[action] = out.get(action, 0.0) + float(value)
        elif line.startswith(("ocpp_write_batch_size_", "ocpp_write_batch_seconds_")):
            name, _, value = line.rpartition(" ")
            if name.split("{")[0].endswith(("_sum", "_count")):
                out[name] = out.get(name, 0.0) + float(value)
    return out


def batches(before: dict[str, float], after: dict[str, float]) -> str:
    parts = []
    for kind in ("status", "meter"):
        label = '{kind="' + kind + '"}'
        n = after.get(f"ocpp_write_batch_size_count{label}", 0) - before.get(
            f"ocpp_write_batch_size_count{label}", 0
        )
        if n <= 0:
            continue
        size = after.get(f"ocpp_write_batch_size_sum{label}", 0) - before.get(
            f"ocpp_write_batch_size_sum{label}", 0
        )
        took = after.get(f"ocpp_write_batch_seconds_sum{label}", 0) - before.get(
            f"ocpp_write_batch_seconds_sum{label}", 0
        )
        parts.append(
            f"{kind}: {n:.0f} batches, {size / n:.1f} msgs and {took / n * 1000:.1f} ms each"
        )
    return "; ".join(parts)


def process_rows() -> list[tuple[int, int, int, str]]:
    out = subprocess.run(
        ["ps", "-o", "pid=,ppid=,rss=,args=", "-A"], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4:
            rows.append((int(parts[0]), int(parts[1]), int(parts[2]), parts[3]))
    return rows


def api_workers(root_pid: int) -> list[int]:
    """The granian worker processes under `python -m app run` (granian's children)."""
    rows = process_rows()
    granian = [p for p, pp, _, args in rows if pp == root_pid and "granian" in args]
    return [p for p, pp, _, _ in rows if pp in granian] or granian


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sim:
    """One `python -m app.sim` process; its stderr lines are watched for 'all N online'."""

    def __init__(
        self, url: str, first: int, count: int, rate: float, duration: float, nice: int
    ) -> None:
        self.count = count
        self.online = threading.Event()
        self.lines: list[tuple[float, str]] = []  # (time received, stderr line)
        self.proc = subprocess.Popen(
            [
                *(["nice", "-n", str(nice)] if nice else []),
                sys.executable,
                "-m",
                "app.sim",
                "--url",
                url,
                "--count",
                str(count),
                "--first",
                str(first),
                "--mode",
                "load",
                "--rate",
                str(rate),
                "--duration",
                str(duration),
                "--no-cars",
                "--concurrency",
                "100",
                "--ramp-timeout",
                "240",
                "--report-every",
                "5",
                "--json",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip()))
            if "online after" in line or "online at ramp end" in line:
                self.online.set()

    def window_latency(self, start: float, end: float) -> list[tuple[float, float]]:
        """(p50, p99) in ms of the periodic report lines that fall inside [start, end]."""
        out = []
        for at, line in self.lines:
            if start <= at <= end and " p50 " in line:
                tail = line.split(" p50 ", 1)[1].split()
                out.append((float(tail[0]), float(tail[3])))
        return out

    def summary(self, timeout_s: float) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=timeout_s)
        last = [line for line in out.splitlines() if line.startswith("{")]
        if not last:
            tail = "\n".join(line for _, line in self.lines[-20:])
            raise SystemExit("simulator ended without a summary:\n" + tail)
        summary: dict[str, Any] = json.loads(last[-1])
        return summary


def run(service: svc.RunningService, args: argparse.Namespace) -> int:
    url = service.base.replace("http://", "ws://") + "/ocpp"
    workers = api_workers(service.proc.pid)
    per = args.chargers // args.sim_processes
    ramp_budget = 240.0
    # Each sim ramps, then loads for long enough to cover the measured window.
    duration = args.seconds + args.warmup + 60
    t0 = time.monotonic()
    sims = [
        Sim(
            url,
            1 + i * per,
            per if i < args.sim_processes - 1 else args.chargers - i * per,
            args.rate / args.sim_processes,
            duration,
            args.sim_nice,
        )
        for i in range(args.sim_processes)
    ]
    for sim in sims:
        if not sim.online.wait(ramp_budget):
            raise SystemExit("simulators did not finish ramping up")
    ramp_s = time.monotonic() - t0
    rss_connected = {p: rss_mb(p) for p in workers}
    time.sleep(args.warmup)
    sim_pids = [sim.proc.pid for sim in sims]
    watched = workers + sim_pids
    before, cpu0, at0 = handled(service.base), {p: cpu_s(p) for p in watched}, time.monotonic()
    rss_peak = {p: rss_mb(p) for p in workers}
    end = at0 + args.seconds
    while time.monotonic() < end:
        time.sleep(1)
        for p in workers:
            rss_peak[p] = max(rss_peak[p], rss_mb(p))
    after, cpu1, at1 = handled(service.base), {p: cpu_s(p) for p in watched}, time.monotonic()
    seconds = at1 - at0
    rate = sum(after.get(a, 0) - before.get(a, 0) for a in COUNTED) / seconds
    by_action = {
        a: round((after.get(a, 0) - before.get(a, 0)) / seconds)
        for a in after
        if not a.startswith("ocpp_")
    }
    summaries = [sim.summary(duration + ramp_budget) for sim in sims]
    # Each report line covers the 5 s before it: the lines of the measured window.
    windows = [w for sim in sims for w in sim.window_latency(at0 + 5, at1 + 0.5)]

    print(
        f"OCPP load: {args.chargers} chargers over {args.sim_processes} simulator processes "
        f"(nice {args.sim_nice}), 1 API process; offered {args.rate:g} msg/s"
    )
    print(f"  ramp-up (all online): {ramp_s:.1f} s")
    for i, s in enumerate(summaries):
        lat = s.get("latency_ms") or {}
        print(
            f"  sim {i}: online {s.get('online_after_ramp')}/{s['chargers']}, answered "
            f"{s.get('results_per_s')}/s over its whole load phase, p50 {lat.get('p50')} ms, "
            f"p99 {lat.get('p99')} ms, "
            f"timeouts {s.get('timeouts')}, errors {s.get('call_errors')}, "
            f"skipped (charger busy) {s.get('load_skipped')}"
        )
    if windows:
        p50s = sorted(w[0] for w in windows)
        print(
            f"  round trip seen by the simulators in the measured window ({len(windows)} "
            f"5-s reports): p50 {p50s[len(p50s) // 2]:.1f} ms (median), "
            f"p99 {max(w[1] for w in windows):.1f} ms (worst 5 s)"
        )
    print(f"  server-side handled/s over {seconds:.0f} s: {by_action}")
    print(f"  group commit: {batches(before, after)}")
    print(
        f"  StatusNotification+MeterValues handled: {rate:,.0f} msg/s = "
        f"{rate / args.target:.2f} × the {args.target:g} msg/s target"
    )
    for p in workers:
        share = (cpu1[p] - cpu0[p]) / seconds
        print(
            f"  API worker pid {p}: CPU {share:.0%} of one core; RSS {rss_connected[p]:.0f} MB "
            f"with every charger connected (before the load), peak {rss_peak[p]:.0f} MB"
        )
        if share > 0:
            print(
                f"    = {rate / share:,.0f} msg/s per CPU-second of the API process "
                "(what one fully available core would carry)"
            )
    shares = ", ".join(f"{(cpu1[p] - cpu0[p]) / seconds:.0%}" for p in sim_pids)
    print(f"  simulator processes: CPU {shares} of one core each ({os.cpu_count()} cores here)")
    return 1 if args.check and rate < args.target else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chargers", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=3000.0, help="offered msg/s in total")
    parser.add_argument("--target", type=float, default=3000.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--sim-processes", type=int, default=2)
    parser.add_argument(
        "--sim-nice",
        type=int,
        default=10,
        help="niceness of the simulators: on a small machine the load generator must not "
        "take the CPU the system under test needs (0 = same priority)",
    )
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    limit = raise_fd_limit()
    if limit < args.chargers + 1000:
        print(f"RLIMIT_NOFILE is {limit}: too low for {args.chargers} sockets", file=sys.stderr)
        return 1

    services = Services(ROOT / ".data")
    env = services.start()
    db = asyncio.run(svc.reset_database(env["DATABASE_URL"], DATABASE))
    env = {
        **env,
        "DATABASE_URL": db,
        "REDIS_NAMESPACE": "bench-ocpp",
        "APP_WORKERS": "1",
        "ACCESS_LOG": "0",
        "DISCOVERY_RATE_PER_S": "0",
        # Its own data dir: `python -m app run` clears <data>/prometheus at start, and
        # another service started meanwhile must not wipe this one's metric files.
        "APP_DATA_DIR": tempfile.mkdtemp(prefix="voltway-bench-ocpp-"),
    }
    secret = svc.create_admin(env)
    try:
        with svc.running_service(env) as service:
            took = onboard(service, args.chargers, secret)
            print(f"onboarded {args.chargers} chargers through the fleet import in {took:.1f} s")
            return run(service, args)
    finally:
        services.stop()
        shutil.rmtree(env["APP_DATA_DIR"], ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
