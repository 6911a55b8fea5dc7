"""Many simulated chargers in one process: the demo fleet, the OCPP scale bench, a CLI.

    python -m app.sim --url ws://127.0.0.1:8000/ocpp --count 10000 --mode load --rate 3000

Chargers come from ``--count`` (ids ``SIM-000001``…, passwords from a template) or from a
JSON file (``--chargers``). Connection set-up is limited to ``--concurrency`` handshakes at
a time, also when the whole fleet reconnects after a server restart. Every second a line
reports chargers online and CALLs sent / answered per second; ``--json`` ends with one JSON
summary line on stdout for bench scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import msgspec

from app.core.clock import Clock
from app.sim import library
from app.sim.charge_point import SimCharger
from app.sim.options import ConnectorSpec, SessionPlan, SimOptions
from app.sim.state import AVAILABLE, PREPARING
from app.sim.transport import CallStats

__all__ = [
    "ChargerSpec",
    "Fleet",
    "generate_chargers",
    "load_chargers",
    "main",
    "random_session_plan",
]

log = logging.getLogger("app.sim.fleet")


@dataclass(frozen=True, slots=True)
class ChargerSpec:
    """One charger of the fleet as the central system knows it."""

    charge_point_id: str
    password: str | None
    connectors: tuple[int | ConnectorSpec, ...] = (1,)
    iccid: str | None = None
    imsi: str | None = None
    max_power_w: float | None = None  # per connector; None → SimOptions.max_power_w


def generate_chargers(
    count: int,
    *,
    prefix: str = "SIM-",
    password_template: str = "simpass-{n:08d}",  # noqa: S107 - simulated chargers only
    connectors: int = 2,
    first: int = 1,
) -> list[ChargerSpec]:
    """Chargers ``{prefix}000001``…; the template sees ``{n}`` (number) and ``{id}``.

    The default password (16 characters) meets the 16-40 of OCPP security profile 1;
    a bench seeds the central system with the same scheme.
    """
    specs = []
    for n in range(first, first + count):
        charge_point_id = f"{prefix}{n:06d}"
        specs.append(
            ChargerSpec(
                charge_point_id,
                password_template.format(n=n, id=charge_point_id),
                tuple(range(1, connectors + 1)),
                iccid=f"8988230{n:013d}",
                imsi=f"2620{n:011d}",
            )
        )
    return specs


class _ConnectorEntry(msgspec.Struct):
    connector_id: int
    max_power_w: float | None = None


class _ChargerEntry(msgspec.Struct):
    id: str
    password: str | None = None
    connectors: int | list[int | _ConnectorEntry] = 1
    iccid: str | None = None
    imsi: str | None = None
    max_power_w: float | None = None


class _ChargerFile(msgspec.Struct):
    chargers: list[_ChargerEntry]


def load_chargers(path: str | Path) -> list[ChargerSpec]:
    """Read chargers from JSON: a list (or ``{"chargers": [...]}``) of
    ``{"id", "password", "connectors": 2 | [1, 2] | [{"connector_id", "max_power_w"}],
    "iccid", "imsi", "max_power_w"}``; other fields are ignored."""
    raw = Path(path).read_bytes()
    try:
        entries = msgspec.json.decode(raw, type=list[_ChargerEntry])
    except msgspec.ValidationError:
        entries = msgspec.json.decode(raw, type=_ChargerFile).chargers
    specs = []
    for entry in entries:
        connectors: tuple[int | ConnectorSpec, ...]
        if isinstance(entry.connectors, int):
            connectors = tuple(range(1, entry.connectors + 1))
        else:
            connectors = tuple(
                c if isinstance(c, int) else ConnectorSpec(c.connector_id, c.max_power_w)
                for c in entry.connectors
            )
        specs.append(
            ChargerSpec(
                entry.id,
                entry.password,
                connectors,
                entry.iccid,
                entry.imsi,
                entry.max_power_w,
            )
        )
    return specs


def random_session_plan(rng: random.Random) -> Callable[[], SessionPlan]:
    """Cars of all sizes for the demo: 40-100 kWh, 10-60 % on arrival, 11-250 kW."""

    def plan() -> SessionPlan:
        return SessionPlan(
            battery_kwh=rng.choice((40.0, 52.0, 58.0, 64.0, 77.0, 82.0, 100.0)),
            start_soc=round(rng.uniform(10.0, 60.0), 1),
            target_soc=rng.choice((80.0, 90.0, 100.0)),
            car_max_power_w=rng.choice((11_000.0, 50_000.0, 135_000.0, 170_000.0, 250_000.0)),
        )

    return plan


def _percentile(sorted_values: Sequence[float], share: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


class Fleet:
    """Run many SimChargers concurrently, with a bounded connection ramp-up."""

    def __init__(
        self,
        url_base: str,
        chargers: Sequence[ChargerSpec],
        *,
        options: SimOptions | None = None,
        concurrency: int = 200,
        heartbeat_override: float | None = None,
        clock: Clock | None = None,
        seed: int = 0,
    ) -> None:
        base = options or SimOptions()
        self.stats = CallStats(keep_latencies=True)
        self.rng = random.Random(seed)  # one for all: a Random per charger costs 2.5 KB
        gate = asyncio.Semaphore(concurrency)
        self.chargers: list[SimCharger] = []
        for spec in chargers:
            charger_options = dataclasses.replace(base)  # ChangeConfiguration mutates it
            if spec.max_power_w is not None:
                charger_options.max_power_w = spec.max_power_w
            self.chargers.append(
                SimCharger(
                    url_base,
                    spec.charge_point_id,
                    spec.password,
                    connectors=spec.connectors,
                    iccid=spec.iccid,
                    imsi=spec.imsi,
                    heartbeat_override=heartbeat_override,
                    options=charger_options,
                    clock=clock,
                    stats=self.stats,
                    connect_gate=gate,
                    rng=self.rng,
                )
            )
        self.by_id = {c.charge_point_id: c for c in self.chargers}
        self.load_skipped = 0  # load messages not sent: every online charger was busy
        self._load_tasks: set[asyncio.Task[None]] = set()

    @property
    def online(self) -> int:
        return sum(1 for c in self.chargers if c.online)

    def start(self) -> None:
        for charger in self.chargers:
            charger.start()

    async def wait_online(self, count: int | None = None, timeout_s: float = 60.0) -> float:
        """Wait until ``count`` (default: all) chargers are online; returns seconds taken."""
        wanted = len(self.chargers) if count is None else count
        started = time.monotonic()
        async with asyncio.timeout(timeout_s):
            while self.online < wanted:  # noqa: ASYNC110 - one poll beats 10,000 waiters
                await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def run_load(
        self,
        rate: float,
        duration_s: float,
        *,
        status_share: float = 0.5,
        statuses: Sequence[str] = (AVAILABLE, PREPARING),
        tick_s: float = 0.01,
    ) -> None:
        """Send StatusNotification/MeterValues at ``rate`` messages/s in total, spread
        round robin over online chargers, each with at most one CALL outstanding."""
        chargers = self.chargers
        if not chargers or rate <= 0:
            await asyncio.sleep(duration_s)
            return
        index = 0
        owed = 0.0
        last = time.monotonic()
        end = last + duration_s
        while (now := time.monotonic()) < end:
            owed += rate * (now - last)
            last = now
            budget = int(owed)
            owed -= budget
            scanned = 0
            while budget > 0 and scanned < len(chargers):
                charger = chargers[index]
                index = (index + 1) % len(chargers)
                scanned += 1
                if charger.begin_load_tick(status_share=status_share, statuses=statuses):
                    budget -= 1
            self.load_skipped += budget
            await asyncio.sleep(tick_s)

    async def wait_load_answered(self, timeout_s: float = 5.0) -> None:
        """Wait until no load message is waiting for its answer."""
        async with asyncio.timeout(timeout_s):
            while any(c.load_busy for c in self.chargers):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.chargers))


# ---------------------------------------------------------------------------- CLI


class _Reporter:
    """Once a second: chargers online, CALLs sent/answered per second, latency."""

    def __init__(self, fleet: Fleet, out: TextIO) -> None:
        self.fleet = fleet
        self.out = out
        self.started = time.monotonic()
        self.online_peak = 0
        self.window: list[float] | None = None  # latencies kept while measuring load
        self._previous = fleet.stats.snapshot()
        self._previous_at = self.started

    def line(self) -> None:
        stats = self.fleet.stats
        now = stats.snapshot()
        at = time.monotonic()
        seconds = max(at - self._previous_at, 1e-3)
        rate = {k: round((now[k] - self._previous[k]) / seconds) for k in now}
        delta = {k: now[k] - self._previous[k] for k in now}
        self._previous, self._previous_at = now, at
        latencies = sorted(stats.take_latencies())
        if self.window is not None:
            self.window.extend(latencies)
        online = self.fleet.online
        self.online_peak = max(self.online_peak, online)
        p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
        latency = (
            ""
            if p50 is None or p99 is None
            else (f" | p50 {p50 * 1000:.1f} ms p99 {p99 * 1000:.1f} ms")
        )
        print(
            f"{time.monotonic() - self.started:7.1f}s online {online}/{len(self.fleet.chargers)}"
            f" | sent {rate['calls_sent']}/s results {rate['call_results']}/s"
            f" errors {rate['call_errors']}/s timeouts {rate['timeouts']}/s"
            f" | connects {delta['connections']} failed {delta['connect_failures']}"
            f"{latency}",
            file=self.out,
            flush=True,
        )

    async def run(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            self.line()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app.sim", description="Simulated OCPP 1.6J chargers."
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8000/ocpp", help="OCPP base URL")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--count", type=int, default=10, help="generate N chargers")
    source.add_argument("--chargers", type=Path, help="JSON file of chargers")
    parser.add_argument("--prefix", default="SIM-", help="id prefix of generated chargers")
    parser.add_argument("--first", type=int, default=1, help="number of the first one")
    parser.add_argument(
        "--password-template",
        default="simpass-{n:08d}",
        help="password of generated chargers; {n} = number, {id} = charge point id",
    )
    parser.add_argument("--connectors", type=int, default=2, help="per generated charger")
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes at a time")
    parser.add_argument("--mode", choices=("idle", "load"), default="idle")
    parser.add_argument("--rate", type=float, default=3000.0, help="load: messages/s total")
    parser.add_argument(
        "--status-share", type=float, default=0.5, help="load: share of StatusNotification"
    )
    parser.add_argument("--duration", type=float, help="seconds to run (default: until ^C)")
    parser.add_argument(
        "--ramp-timeout", type=float, default=300.0, help="seconds to wait for all online"
    )
    parser.add_argument("--heartbeat", type=float, help="override the CS heartbeat interval")
    parser.add_argument("--speedup", type=float, default=1.0, help="simulated time factor")
    parser.add_argument(
        "--meter-interval", type=float, default=60.0, help="simulated s between MeterValues"
    )
    parser.add_argument(
        "--charge-factor",
        type=float,
        default=1.0,
        help="demo: cars charge N times faster (timestamps stay real)",
    )
    parser.add_argument("--response-timeout", type=float, default=30.0)
    parser.add_argument("--validate", action="store_true", help="schema-check our own CALLs")
    parser.add_argument("--no-cars", action="store_true", help="RemoteStart without a car")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="final JSON summary on stdout")
    parser.add_argument(
        "--no-uvloop", action="store_true", help="plain asyncio loop even if uvloop is there"
    )
    parser.add_argument("--report-every", type=float, default=1.0, help="seconds; 0 = quiet")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


def _raise_fd_limit() -> None:
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    if args.chargers is not None:
        specs = load_chargers(args.chargers)
    else:
        specs = generate_chargers(
            args.count,
            prefix=args.prefix,
            password_template=args.password_template,
            connectors=args.connectors,
            first=args.first,
        )
    options = SimOptions(
        speedup=args.speedup,
        meter_interval_s=args.meter_interval,
        charge_factor=args.charge_factor,
        response_timeout_s=args.response_timeout,
        validate_messages=args.validate,
    )
    fleet = Fleet(
        args.url,
        specs,
        options=options,
        concurrency=args.concurrency,
        heartbeat_override=args.heartbeat,
        seed=args.seed,
    )
    plan = None if args.no_cars else random_session_plan(fleet.rng)
    for charger in fleet.chargers:
        charger.options.remote_start_plan = plan

    out = sys.stderr if args.json else sys.stdout
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)

    reporter = _Reporter(fleet, out)
    reporting = asyncio.create_task(
        reporter.run(args.report_every) if args.report_every > 0 else asyncio.Event().wait()
    )
    summary: dict[str, Any] = {"chargers": len(specs), "url": args.url, "mode": args.mode}
    started = time.monotonic()
    fleet.start()
    try:
        waiting = asyncio.create_task(fleet.wait_online(timeout_s=args.ramp_timeout))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
            summary["ramp_s"] = round(waiting.result(), 2)
            print(f"all {len(specs)} online after {summary['ramp_s']} s", file=out, flush=True)
        else:
            waiting.cancel()
            summary["ramp_s"] = None
            print(f"{fleet.online}/{len(specs)} online at ramp end", file=out, flush=True)
        summary["online_after_ramp"] = fleet.online

        if not stop.is_set():
            fleet.stats.take_latencies()  # boot traffic is not part of the measurement
            reporter.window = []
            before = fleet.stats.snapshot()
            measured_from = time.monotonic()
            duration = args.duration if args.duration is not None else float("inf")
            if args.mode == "load":
                work = asyncio.create_task(
                    fleet.run_load(args.rate, duration, status_share=args.status_share)
                )
            else:
                work = asyncio.create_task(asyncio.sleep(duration))
            await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
            work.cancel()
            await asyncio.wait({work})
            elapsed = time.monotonic() - measured_from
            at_end = fleet.stats.snapshot()
            with contextlib.suppress(TimeoutError):  # answers still on their way
                await fleet.wait_load_answered(timeout_s=min(5.0, args.response_timeout))
            reporter.line()
            window = sorted(reporter.window)
            after = fleet.stats.snapshot()
            answered = at_end["call_results"] - before["call_results"]
            summary.update(
                measured_s=round(elapsed, 2),
                rate_target=args.rate if args.mode == "load" else None,
                results_per_s=round(answered / elapsed, 1) if elapsed else None,
                load_skipped=fleet.load_skipped,
                online_end=fleet.online,
                latency_ms={
                    name: None if (v := _percentile(window, q)) is None else round(v * 1000, 2)
                    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
                },
                **{k: after[k] - before[k] for k in after},
            )
        stopping.cancel()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        reporting.cancel()
        summary["online_peak"] = reporter.online_peak
        summary["connections_total"] = fleet.stats.connections
        summary["connect_failures_total"] = fleet.stats.connect_failures
        summary["offline_sample"] = [
            {
                "id": c.charge_point_id,
                "last_error": f"{type(c.last_error).__name__}: {c.last_error}",
            }
            for c in fleet.chargers
            if not c.online
        ][:10]
        summary["total_s"] = round(time.monotonic() - started, 2)
        await fleet.close()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    for name in ("ocpp", "app.sim.ocpp", "websockets"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    if not args.validate:
        # Nothing else runs in this process: keep the ocpp library's schema checks (still
        # applied to the CS's commands) on the event loop instead of a thread pool hop.
        import ocpp.messages

        ocpp.messages.ASYNC_VALIDATION = False
    # The same compiled schema checks as the central system (same verdicts, ~20× faster).
    library.prepare()
    _raise_fd_limit()
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        summary = runner.run(_run(args))
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0
