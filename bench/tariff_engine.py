"""Tariff engine throughput: bills per second for random 1–3 h sessions, in-process.

    python bench/tariff_engine.py [--seconds 3] [--sessions 20000] [--check]

Sessions start at random times over 60 days in Europe/Berlin (DST change included), last
1–3 h, have a meter sample every 5–15 min at a varying power, and cross the time-of-day
bands of a four-band tariff (ENERGY by band, TIME, PARKING_TIME with a step, FLAT).
Target (docs TARGETS.md): ≥ 50,000 bills/s. ``--check`` exits 1 below the target.

Printed beside it, from the same run: a machine-speed reference (the same sessions priced
by a plain Decimal loop at one flat kWh price — no bands, no rules) and the throughput for a
tariff whose elements also depend on energy, power and duration (the engine's slower
general path).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from app.pricing.engine import MeterSample, bill
from app.pricing.tariff import (
    PriceComponent,
    Tariff,
    TariffElement,
    TariffRestrictions,
    validate_tariff,
)

TARGET = 50_000
TZ = ZoneInfo("Europe/Berlin")

TARIFF = Tariff(
    tariff_id="bench",
    version=1,
    currency="EUR",
    vat_percent="19",
    elements=[
        TariffElement(
            price_components=[PriceComponent(type="ENERGY", price="0.2400")],
            restrictions=TariffRestrictions(start_time="00:00", end_time="07:00"),
        ),
        TariffElement(
            price_components=[
                PriceComponent(type="ENERGY", price="0.5900"),
                PriceComponent(type="TIME", price="1.2000", step_size=60),
            ],
            restrictions=TariffRestrictions(
                start_time="17:00",
                end_time="21:00",
                day_of_week=["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"],
            ),
        ),
        TariffElement(
            price_components=[PriceComponent(type="ENERGY", price="0.3200")],
            restrictions=TariffRestrictions(start_time="21:00", end_time="00:00"),
        ),
        TariffElement(
            price_components=[
                PriceComponent(type="ENERGY", price="0.3900"),
                PriceComponent(type="FLAT", price="0.50"),
                PriceComponent(type="PARKING_TIME", price="6.00", step_size=300),
            ]
        ),
    ],
)


# The same bands, plus elements that depend on the session (first kWh free, a high-power
# price, parking after 2 h): every piece of every session is evaluated against them.
SESSION_TARIFF = Tariff(
    tariff_id="bench-session",
    version=1,
    currency="EUR",
    vat_percent="19",
    elements=[
        TariffElement(
            price_components=[PriceComponent(type="ENERGY", price="0.0000")],
            restrictions=TariffRestrictions(max_kwh=1.0),
        ),
        TariffElement(
            price_components=[PriceComponent(type="ENERGY", price="0.4500")],
            restrictions=TariffRestrictions(min_power=22.0),
        ),
        TariffElement(
            price_components=[PriceComponent(type="PARKING_TIME", price="9.00")],
            restrictions=TariffRestrictions(min_duration=7200),
        ),
        *TARIFF.elements,
    ],
)

Session = tuple[list[MeterSample], datetime, datetime, datetime]


def make_sessions(n: int, seed: int = 7) -> list[Session]:
    rng = random.Random(seed)
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    out: list[Session] = []
    for _ in range(n):
        start = t0 + timedelta(seconds=rng.randrange(60 * 86_400))
        duration = timedelta(seconds=rng.randrange(3600, 3 * 3600))
        charging_end = start + duration * rng.uniform(0.7, 1.0)
        samples = [MeterSample(start, rng.randrange(0, 10_000_000))]
        t = start
        while True:
            t += timedelta(seconds=rng.randrange(300, 900))
            if t >= charging_end:
                break
            kw = rng.uniform(3, 50)
            seconds = (t - samples[-1].at).total_seconds()
            samples.append(MeterSample(t, samples[-1].energy_wh + int(kw * seconds / 3.6)))
        samples.append(MeterSample(charging_end, samples[-1].energy_wh + rng.randrange(0, 500)))
        out.append((samples, start, charging_end, start + duration))
    return out


def run(seconds: float, sessions: list[Session], tariff: Tariff = TARIFF) -> tuple[int, float]:
    done = 0
    began = time.perf_counter()
    deadline = began + seconds
    total = 0
    while True:
        for samples, start, charging_end, end in sessions:
            total += bill(
                tariff,
                TZ,
                samples,
                session_start=start,
                charging_end=charging_end,
                session_end=end,
            ).total_minor
        done += len(sessions)
        now = time.perf_counter()
        if now >= deadline:
            return done, now - began


def run_plain(seconds: float, sessions: list[Session]) -> tuple[int, float]:
    """The reference: sum Decimal energy × one price per sample interval, round once."""
    price = Decimal("0.3900")
    cent = Decimal(1)
    done = 0
    began = time.perf_counter()
    deadline = began + seconds
    while True:
        for samples, _start, _charging_end, _end in sessions:
            amount = Decimal(0)
            for a, b in itertools.pairwise(samples):
                amount += Decimal(b.energy_wh - a.energy_wh) / 1000 * price
            (amount * 100).quantize(cent, ROUND_HALF_UP)
        done += len(sessions)
        now = time.perf_counter()
        if now >= deadline:
            return done, now - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--check", action="store_true", help="exit 1 below the target")
    args = parser.parse_args()
    assert not validate_tariff(TARIFF)
    sessions = make_sessions(args.sessions)
    samples = sum(len(s[0]) for s in sessions) / len(sessions)
    run(0.3, sessions[:2000])  # warm the per-day band cache and the interpreter
    done, elapsed = run(args.seconds, sessions)
    rate = done / elapsed
    plain_done, plain_elapsed = run_plain(min(args.seconds, 1.5), sessions)
    plain = plain_done / plain_elapsed
    run(0.3, sessions[:2000], SESSION_TARIFF)
    general_done, general_elapsed = run(min(args.seconds, 1.5), sessions, SESSION_TARIFF)
    general = general_done / general_elapsed
    print(
        f"tariff engine: {rate:,.0f} bills/s ({done:,} bills in {elapsed:.2f} s, "
        f"{samples:.1f} samples/session, {len(sessions):,} distinct sessions); "
        f"target ≥ {TARGET:,}/s → {'OK' if rate >= TARGET else 'BELOW TARGET'}"
    )
    print(
        f"  reference, plain Decimal loop (one price, no bands): {plain:,.0f} sessions/s "
        f"→ engine = {rate / plain:.2f} × reference"
    )
    print(f"  energy/power/duration-restricted tariff (general path): {general:,.0f} bills/s")
    return 0 if rate >= TARGET or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
