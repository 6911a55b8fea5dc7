"""Soak: the whole driver journey for `--minutes` (10) from many simulated drivers and
chargers against the real service, then the invariants that must hold after it.

The service runs as `make run` runs it (`python -m app run`: 2 granian API workers + the
arq worker, demo mode so localstripe plays Stripe and the demo SMS sink sends the texts),
with its demo chargers off (`DEMO_SIMULATOR=0`), on a fresh database
`voltway_bench_soak`, its own data dir and Redis namespace. The bench imports its own
fleet (`--chargers` chargers × 2 connectors, 50 kW, at one city) through the admin API,
publishes a tariff, and connects every charger over OCPP (`app.sim`; each RemoteStart
brings a car that charges 30× faster than physics with real timestamps and MeterValues
every 10 s; some cars finish and unplug themselves, the rest are stopped by their driver).

Each of `--drivers` drivers loops over the journey:

    POST /v1/auth/otp → the code from the demo sink (GET /dev/sms) → POST /v1/auth/token
    (again every 8th journey; POST /v1/auth/refresh every 4th), a card once
    (POST /v1/me/payment-methods), then per journey
    GET /v1/chargers/nearby (available only) → POST /v1/reservations (a hold now; a lost
    race is a 409 and the driver searches again; 1 in 10 cancels, DELETE) →
    POST /v1/sessions with the reservation → GET /v1/sessions/{id} every 3 s while the car
    charges → POST /v1/sessions/{id}/stop after 20–90 s unless the car finished →
    COMPLETED with its receipt; now and then GET /v1/sessions and GET /v1/me/notifications.

When the time is up the drivers finish their journey, the worker's queue drains
(captures, SMS), and the bench checks:

- no double booking: no two drivers held one connector at the same time (each driver's
  certain hold, as the client saw it: from its reservation's 201 to the last answer showing
  its session still running, or to its DELETE), and no two sessions on one connector
  overlap (the charger's own Start/StopTransaction timestamps);
- every completed session billed and captured exactly once for its receipt total (one
  capture decision per PaymentIntent, all succeeded, captured = `receipt.total_minor` in
  the database, in `GET /v1/sessions/{id}` and at localstripe);
- every due alert sent once: each completed session has its `session_started` and
  `session_complete` alert, no SMS is left unsent, and the sink printed each sent message
  exactly once (its stdout is counted per number);
- no 5xx answer to any request; no error line in the service's log;
- RSS flat: each process's RSS over the last third of the run vs the second third.

It prints a latency table per route (client side, ms) and writes `.data/soak/result.json`.

    make soak                        # = .venv/bin/python bench/soak.py --minutes 10
    .venv/bin/python bench/soak.py --minutes 2 --drivers 20 --chargers 8

Uses DATABASE_URL / REDIS_URL when set, else the embedded servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.embedded import Services  # noqa: E402
from app.payments.localstripe import DEMO_SECRET_KEY  # noqa: E402
from app.payments.stripe_client import Gateway  # noqa: E402
from app.sim import CallStats, SessionPlan, SimCharger, SimOptions  # noqa: E402
from bench import _service as svc  # noqa: E402
from bench._service import pct_ms as pct  # noqa: E402
from tests.factories import energy_tariff  # noqa: E402

DB_NAME = "voltway_bench_soak"
PASSWORD = "soak-charger-password-0001"
LAT, LON, TZ = 60.1699, 24.9384, "Europe/Helsinki"  # far from the demo fleet
TARIFF = energy_tariff("Soak", vat="24", energy="0.39")
CODE = re.compile(r"\b([0-9]{6})\b")
SINK_LINE = re.compile(r"^\[demo SMS sink\] to (\+[0-9]+): ")
ENDED = {"COMPLETED", "FAILED"}


# ----------------------------------------------------------------------------- service


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path
    stripe_base: str


@contextlib.contextmanager
def soak_service(env: dict[str, str], log_path: Path) -> Iterator[Service]:
    """`python -m app run` with its output in `log_path` (the sink prints there)."""
    with svc.running_service(env, log_path=log_path, ready_timeout_s=120, stop_wait_s=60) as run:
        found = re.search(r"localstripe \(a fake Stripe\) at (http://\S+)", log_path.read_text())
        if not found:
            raise RuntimeError(f"no localstripe line in {log_path}")
        yield Service(run.proc, run.base, log_path, found[1])


def fleet(chargers: int) -> dict[str, Any]:
    sites = []
    for s in range(0, chargers, 4):  # four chargers a site, sites 300 m apart
        sites.append(
            {
                "external_id": f"soak-{s:04d}",
                "name": f"Soak site {s // 4}",
                "address": "Soak street 1",
                "lat": LAT + (s // 4 % 5) * 0.003,
                "lon": LON + (s // 20) * 0.005,
                "timezone": TZ,
                "chargers": [
                    {
                        "charge_point_id": f"SOAK-{c:04d}",
                        "ocpp_password": PASSWORD,
                        "connectors": [
                            {"connector_no": 1, "type": "CCS2", "power_kw": 50},
                            {"connector_no": 2, "type": "CCS2", "power_kw": 50},
                        ],
                    }
                    for c in range(s, min(s + 4, chargers))
                ],
            }
        )
    return {"sites": sites}


# ----------------------------------------------------------------------------- client


@dataclass
class Stats:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    codes: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    server_errors: list[str] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)
    journeys: Counter[str] = field(default_factory=Counter)
    otp_to_sms: list[float] = field(default_factory=list)
    sessions: list[tuple[str, str]] = field(default_factory=list)  # (driver token, id)
    # (connector, driver, from, to): times (monotonic) the driver certainly held the
    # connector: from its hold's 201 arriving to the last answer showing its session still
    # running (sent time) or to sending its DELETE
    held: list[tuple[str, int, float, float]] = field(default_factory=list)


class Api:
    """httpx with a per-route record of every answer (route = method + template)."""

    def __init__(self, http: httpx.AsyncClient, stats: Stats) -> None:
        self.http, self.stats = http, stats

    async def call(
        self, method: str, route: str, url: str, *, record: bool = True, **kw: Any
    ) -> httpx.Response | None:
        name = f"{method} {route}"
        t0 = time.perf_counter()
        try:
            r = await self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            self.stats.transport_errors[f"{name}: {type(exc).__name__}"] += 1
            return None
        took = time.perf_counter() - t0
        if record:
            self.stats.latency[name].append(took)
            self.stats.codes[name][r.status_code] += 1
        if r.status_code >= 500:
            self.stats.server_errors.append(f"{name} {r.status_code} {r.text[:300]}")
        return r


@dataclass
class Driver:
    n: int
    api: Api
    rng: random.Random
    phone: str = ""
    token: str = ""
    refresh: str = ""
    journeys: int = 0

    def __post_init__(self) -> None:
        self.phone = f"+4915190{self.n:06d}"

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    async def login(self) -> bool:
        asked = time.time()
        r = await self.api.call("POST", "/v1/auth/otp", "/v1/auth/otp", json={"phone": self.phone})
        if r is None or r.status_code != 202:
            return False
        challenge = r.json()["challenge_id"]
        code = None
        t0 = time.monotonic()
        while code is None and time.monotonic() - t0 < 60:
            await asyncio.sleep(0.3)
            r = await self.api.call(
                "GET", "/dev/sms", "/dev/sms", params={"to": self.phone, "limit": 1}
            )
            if r is None or r.status_code != 200:
                continue
            for item in r.json()["items"]:
                sent = item.get("sent_at")
                if item["purpose"] == "otp":
                    found = CODE.search(item["body"])
                    if found and sent and _epoch(sent) >= asked - 1:
                        code = found[1]
        if code is None:
            return False
        self.api.stats.otp_to_sms.append(time.monotonic() - t0)
        r = await self.api.call(
            "POST",
            "/v1/auth/token",
            "/v1/auth/token",
            json={"challenge_id": challenge, "code": code},
        )
        if r is None or r.status_code != 200:
            return False
        body = r.json()
        self.token, self.refresh = body["access_token"], body["refresh_token"]
        return True

    async def refresh_tokens(self) -> None:
        r = await self.api.call(
            "POST", "/v1/auth/refresh", "/v1/auth/refresh", json={"refresh_token": self.refresh}
        )
        if r is not None and r.status_code == 200:
            body = r.json()
            self.token, self.refresh = body["access_token"], body["refresh_token"]

    async def add_card(self) -> bool:
        r = await self.api.call(
            "POST",
            "/v1/me/payment-methods",
            "/v1/me/payment-methods",
            json={"payment_method_id": "pm_card_visa"},
            headers=self.auth,
        )
        return r is not None and r.status_code == 201

    async def run(self, until: float) -> None:
        await asyncio.sleep(self.rng.uniform(0, 10))  # staggered arrivals
        if not await self.login() or not await self.add_card():
            self.api.stats.journeys["driver could not sign up"] += 1
            return
        while time.monotonic() < until:
            self.journeys += 1
            if self.journeys % 8 == 0:
                await self.login()
            elif self.journeys % 4 == 0:
                await self.refresh_tokens()
            outcome = await self.journey()
            self.api.stats.journeys[outcome] += 1
            if self.journeys % 3 == 0:
                await self.api.call("GET", "/v1/sessions", "/v1/sessions", headers=self.auth)
                await self.api.call(
                    "GET", "/v1/me/notifications", "/v1/me/notifications", headers=self.auth
                )
            await asyncio.sleep(self.rng.uniform(2, 8))

    async def journey(self) -> str:
        reservation = await self.reserve()
        if reservation is None:
            return "no connector free"
        connector_id, reservation_id, held_from = reservation

        def held_until(t: float) -> None:
            self.api.stats.held.append((connector_id, self.n, held_from, t))

        async def cancel() -> None:
            held_until(time.monotonic())
            await self.api.call(
                "DELETE",
                "/v1/reservations/{id}",
                f"/v1/reservations/{reservation_id}",
                headers=self.auth,
            )

        if self.rng.random() < 0.1:
            await cancel()
            return "reserved, then cancelled"
        await asyncio.sleep(self.rng.uniform(1, 4))  # walking to the car
        r = await self.api.call(
            "POST",
            "/v1/sessions",
            "/v1/sessions",
            json={"connector_id": connector_id, "reservation_id": reservation_id},
            headers=self.auth,
        )
        if r is None or r.status_code != 201:
            code = "none" if r is None else f"{r.status_code} {r.json().get('code')}"
            await cancel()
            return f"start refused ({code})"
        session_id = r.json()["session_id"]
        self.api.stats.sessions.append((self.token, session_id))
        running_at = time.monotonic()  # the reservation still holds it at least until here
        stop_after = time.monotonic() + self.rng.uniform(20, 90)
        stopped = False
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            await asyncio.sleep(3)
            sent = time.monotonic()
            r = await self.api.call(
                "GET", "/v1/sessions/{id}", f"/v1/sessions/{session_id}", headers=self.auth
            )
            if r is None or r.status_code != 200:
                continue
            status = r.json()["status"]
            if status in ENDED:
                held_until(running_at)
                if status == "FAILED":
                    return "session failed"
                return "completed (driver stopped)" if stopped else "completed (car finished)"
            running_at = sent
            if not stopped and status != "STARTING" and time.monotonic() > stop_after:
                r = await self.api.call(
                    "POST",
                    "/v1/sessions/{id}/stop",
                    f"/v1/sessions/{session_id}/stop",
                    headers=self.auth,
                )
                stopped = r is not None and r.status_code == 202
        held_until(running_at)
        return "session never ended"

    async def reserve(self) -> tuple[str, str, float] | None:
        for _ in range(10):
            r = await self.api.call(
                "GET",
                "/v1/chargers/nearby",
                "/v1/chargers/nearby",
                params={"lat": LAT, "lon": LON, "radius_m": 5000, "available_only": "true"},
            )
            if r is None or r.status_code != 200:
                await asyncio.sleep(2)
                continue
            free = [
                k["connector_id"]
                for s in r.json()["items"]
                for k in s["connectors"]
                if k["status"] == "AVAILABLE"
            ]
            if not free:
                await asyncio.sleep(self.rng.uniform(3, 8))
                continue
            connector_id = self.rng.choice(free)
            r = await self.api.call(
                "POST",
                "/v1/reservations",
                "/v1/reservations",
                json={"connector_id": connector_id},
                headers=self.auth,
            )
            if r is not None and r.status_code == 201:
                return connector_id, r.json()["reservation_id"], time.monotonic()
            await asyncio.sleep(self.rng.uniform(0.2, 1.5))  # lost the race
        return None


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# ----------------------------------------------------------------------------- chargers


def car_plan(rng: random.Random) -> SessionPlan:
    finishes = rng.random() < 0.4  # these cars reach their target and unplug
    return SessionPlan(
        battery_kwh=rng.choice([40.0, 60.0, 77.0]),
        start_soc=rng.uniform(40, 70) if finishes else rng.uniform(10, 40),
        target_soc=rng.uniform(80, 90) if finishes else 100.0,
        car_max_power_w=rng.choice([50_000.0, 100_000.0]),
        when_done="stop",
    )


async def connect_chargers(base: str, n: int, stats: CallStats, seed: int) -> list[SimCharger]:
    rng = random.Random(seed)
    options = SimOptions(
        max_power_w=50_000.0,
        charge_factor=30.0,
        meter_interval_s=10.0,
        response_timeout_s=30.0,
        reconnect_min_s=0.5,
        reconnect_max_s=5.0,
        remote_start_plan=lambda: car_plan(rng),
    )
    sims = [
        SimCharger(
            base.replace("http://", "ws://") + "/ocpp",
            f"SOAK-{c:04d}",
            PASSWORD,
            connectors=[1, 2],
            options=options,
            stats=stats,
        )
        for c in range(n)
    ]
    for sim in sims:
        sim.start()
    await asyncio.gather(*(sim.wait_online(60) for sim in sims))
    return sims


# ----------------------------------------------------------------------------- RSS


@dataclass
class RssSampler:
    root_pid: int
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))

    def label(self, p: psutil.Process) -> str:
        cmd = " ".join(p.cmdline())
        if "granian" in cmd:
            parent = p.parent()
            if parent is not None and "granian" in " ".join(parent.cmdline()):
                return f"api worker {p.pid}"
            return "granian main"
        if "arq" in cmd:
            return "arq worker"
        if "localstripe" in cmd:
            return "localstripe"
        if "connectivity" in cmd:
            return "platform stand-in"
        return f"other {p.pid}"

    def sample(self, t: float) -> None:
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process(self.root_pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.samples[self.label(p)].append((t, p.memory_info().rss / 2**20))

    async def run(self, every_s: float, stop: asyncio.Event) -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            self.sample(time.monotonic() - t0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    def verdicts(self, total_s: float) -> list[dict[str, Any]]:
        out = []
        for name, points in sorted(self.samples.items()):
            mid = [v for t, v in points if total_s / 3 <= t < 2 * total_s / 3]
            last = [v for t, v in points if t >= 2 * total_s / 3]
            if not mid or not last:
                continue
            a, b = statistics.median(mid), statistics.median(last)
            growth = b - a
            flat = growth <= max(20.0, 0.10 * a)
            out.append(
                {
                    "process": name,
                    "first_mb": round(points[0][1], 1),
                    "middle_third_mb": round(a, 1),
                    "last_third_mb": round(b, 1),
                    "max_mb": round(max(v for _, v in points), 1),
                    "growth_mb": round(growth, 1),
                    "flat": flat,
                }
            )
        return out


# ----------------------------------------------------------------------------- checks


DOUBLE_SESSIONS = """
SELECT a.session_id AS a, b.session_id AS b
  FROM charging_sessions a JOIN charging_sessions b
    ON a.charger_id = b.charger_id AND a.connector_no = b.connector_no
   AND a.session_id < b.session_id
 WHERE a.status <> 'FAILED' AND b.status <> 'FAILED'
   AND tstzrange(a.started_at, coalesce(a.ended_at, now()), '[)')
    && tstzrange(b.started_at, coalesce(b.ended_at, now()), '[)')
"""
CAPTURES = """
SELECT s.session_id, s.total_minor, s.receipt IS NOT NULL AS has_receipt,
       coalesce(sum(c.amount_minor) FILTER (WHERE p.kind = 'hold'), 0)
         + coalesce(max(x.amount_minor), 0) AS decided_minor,
       coalesce(sum(p.captured_minor), 0) AS captured_minor,
       count(c.*) FILTER (WHERE p.kind = 'hold') AS decisions,
       count(p.*) FILTER (WHERE p.kind = 'hold') AS holds,
       bool_and(c.status = 'succeeded') FILTER (WHERE p.kind = 'hold') AS all_done,
       max(x.status) AS extra_status
  FROM charging_sessions s
  LEFT JOIN payments p ON p.session_id = s.session_id
  LEFT JOIN payment_captures c ON c.payment_intent_id = p.payment_intent_id
  LEFT JOIN payment_extras x ON x.session_id = s.session_id
 WHERE s.status = 'COMPLETED'
 GROUP BY s.session_id, s.total_minor, s.receipt
"""
ALERTS = """
SELECT s.session_id,
       count(*) FILTER (WHERE n.kind = 'session_started') AS started,
       count(*) FILTER (WHERE n.kind = 'session_complete') AS complete,
       count(n.*) - count(DISTINCT n.kind) AS repeated
  FROM charging_sessions s LEFT JOIN notifications n ON n.session_id = s.session_id
 WHERE s.status = 'COMPLETED' AND s.energy_wh > 0
 GROUP BY s.session_id
"""


def overlapping_holds(held: list[tuple[str, int, float, float]]) -> list[dict[str, Any]]:
    """Pairs of drivers whose certain holds of one connector overlap in time."""
    by_connector: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for connector, driver, t0, t1 in held:
        by_connector[connector].append((t0, t1, driver))
    out = []
    for connector, spans in by_connector.items():
        spans.sort()
        for i, (a0, a1, da) in enumerate(spans):
            for b0, b1, db in spans[i + 1 :]:
                if b0 >= a1:
                    break
                if da != db and b0 < a1 and a0 < b1:
                    out.append({"connector": connector, "drivers": (da, db), "overlap_s": a1 - b0})
    return out


async def drained(conn: asyncpg.Connection) -> dict[str, int]:
    return {
        "outbox due": await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE done_at IS NULL AND available_at <= now()"
        ),
        "sms unsent": await conn.fetchval(
            "SELECT count(*) FROM sms_messages WHERE status IN ('queued', 'sending')"
        ),
        "captures open": await conn.fetchval(
            "SELECT count(*) FROM payment_captures WHERE status IN ('pending', 'failed')"
        ),
        "sessions open": await conn.fetchval(
            "SELECT count(*) FROM charging_sessions WHERE status NOT IN ('COMPLETED', 'FAILED')"
        ),
    }


async def check(
    db_url: str, service: Service, stats: Stats, http: httpx.AsyncClient
) -> dict[str, Any]:
    conn = await asyncpg.connect(db_url)
    results: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        left = await drained(conn)
        while any(left.values()) and time.monotonic() - t0 < 180:
            await asyncio.sleep(2)
            left = await drained(conn)
        results["drain_s"] = round(time.monotonic() - t0, 1)
        results["left after drain"] = left

        sessions = await conn.fetch(DOUBLE_SESSIONS)
        overlaps = overlapping_holds(stats.held)
        results["double booking"] = {
            "connector holds (reservation → end of its session)": len(stats.held),
            "two drivers holding one connector at once": len(overlaps),
            "overlapping sessions on one connector (charger clock)": len(sessions),
            "examples": [*overlaps[:5], *[dict(r) for r in sessions[:5]]],
        }
        results["reservations"] = dict(
            await conn.fetch("SELECT status, count(*) FROM reservations GROUP BY 1")
        )
        results["sessions"] = dict(
            await conn.fetch("SELECT status, count(*) FROM charging_sessions GROUP BY 1")
        )
        if results["sessions"].get("FAILED"):
            results["failure reasons"] = dict(
                await conn.fetch(
                    "SELECT coalesce(failure_reason, '?'), count(*) FROM charging_sessions "
                    "WHERE status = 'FAILED' GROUP BY 1"
                )
            )

        bad_captures = []
        rows = await conn.fetch(CAPTURES)
        for r in rows:
            ok = (
                r["has_receipt"]
                and r["total_minor"] is not None
                and r["decided_minor"] == r["total_minor"]
                and r["captured_minor"] == r["total_minor"]
                and r["decisions"] == r["holds"]
                and r["all_done"] is not False
                and r["extra_status"] in (None, "succeeded")
            )
            if not ok:
                bad_captures.append({k: (str(v) if k == "session_id" else v) for k, v in r.items()})
        # the driver's view and localstripe's
        api_mismatch = []
        for token, sid in stats.sessions:
            r = await http.get(f"/v1/sessions/{sid}", headers={"authorization": f"Bearer {token}"})
            if r.status_code != 200:
                continue
            view = r.json()
            if view["status"] == "COMPLETED":
                total = (view.get("receipt") or {}).get("total_minor")
                if view["payment"]["captured_minor"] != total:
                    api_mismatch.append(
                        {"session_id": sid, "view": view["payment"], "total": total}
                    )
        gateway = Gateway(DEMO_SECRET_KEY, api_base=service.stripe_base)
        stripe_mismatch = []
        try:
            for p in await conn.fetch(
                "SELECT p.payment_intent_id, p.captured_minor, c.amount_minor AS decided "
                "FROM payments p JOIN payment_captures c USING (payment_intent_id)"
            ):
                pi = await gateway.v1.payment_intents.retrieve_async(p["payment_intent_id"])
                want = "succeeded" if p["decided"] > 0 else "canceled"
                if pi.status != want:
                    stripe_mismatch.append({"pi": pi.id, "status": pi.status, "want": want})
        finally:
            await gateway.aclose()
        results["captures"] = {
            "completed sessions": len(rows),
            "billed total EUR": round(sum(r["total_minor"] or 0 for r in rows) / 100, 2),
            "wrong in the database": len(bad_captures),
            "wrong in GET /v1/sessions/{id}": len(api_mismatch),
            "wrong at localstripe": len(stripe_mismatch),
            "examples": [*bad_captures, *api_mismatch, *stripe_mismatch][:5],
        }

        alerts = await conn.fetch(ALERTS)
        missing = [str(r["session_id"]) for r in alerts if r["started"] != 1 or r["complete"] != 1]
        repeated = [str(r["session_id"]) for r in alerts if r["repeated"]]
        sent_rows = Counter(
            {
                r["to_phone"]: r["n"]
                for r in await conn.fetch(
                    "SELECT to_phone, count(*) AS n FROM sms_messages "
                    "WHERE status IN ('sent', 'delivered') GROUP BY 1"
                )
            }
        )
        printed: Counter[str] = Counter()
        for line in service.log_path.read_text(errors="replace").splitlines():
            m = SINK_LINE.match(line)
            if m:
                printed[m[1]] += 1
        twice = {p: (printed[p], sent_rows[p]) for p in printed if printed[p] > sent_rows[p]}
        never = {p: (printed[p], sent_rows[p]) for p in sent_rows if printed[p] < sent_rows[p]}
        results["alerts"] = {
            "sessions checked": len(alerts),
            "kinds": dict(
                await conn.fetch("SELECT kind, count(*) FROM notifications GROUP BY 1 ORDER BY 1")
            ),
            "missing started/complete": len(missing),
            "a kind twice for a session": len(repeated),
            "SMS sent": sum(sent_rows.values()),
            "SMS printed by the sink": sum(printed.values()),
            "numbers texted more often than sent": len(twice),
            "numbers sent but not printed": len(never),
            "examples": [*missing[:3], *repeated[:3], *list(twice.items())[:3]],
        }
    finally:
        await conn.close()
    errors = [
        line[:400]
        for line in service.log_path.read_text(errors="replace").splitlines()
        if '"level": "error"' in line or "Traceback" in line
    ]
    results["service error log lines"] = {"count": len(errors), "examples": errors[:5]}
    return results


# ----------------------------------------------------------------------------- report


def latency_table(stats: Stats) -> str:
    lines = [
        "| route | requests | p50 ms | p95 ms | p99 ms | max ms | answers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for route in sorted(stats.latency, key=lambda r: (r.split(" ", 1)[1], r)):
        v = stats.latency[route]
        codes = ", ".join(f"{c}×{n}" for c, n in sorted(stats.codes[route].items()))
        lines.append(
            f"| `{route}` | {len(v)} | {pct(v, 0.5):.0f} | {pct(v, 0.95):.0f} | "
            f"{pct(v, 0.99):.0f} | {max(v) * 1000:.0f} | {codes} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


async def soak(
    service: Service, db_url: str, secret: str, args: argparse.Namespace
) -> dict[str, Any]:
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    limits = httpx.Limits(max_connections=args.drivers + 20)
    async with httpx.AsyncClient(base_url=service.base, timeout=60, limits=limits) as http:
        token = await asyncio.to_thread(svc.admin_token_at, service.base, secret)
        admin = {"authorization": f"Bearer {token}"}
        await svc.import_priced_fleet(http, admin, db_url, fleet(args.chargers), TARIFF)

        ocpp = CallStats(keep_latencies=True)
        sims = await connect_chargers(service.base, args.chargers, ocpp, args.seed)
        print(f"{len(sims)} chargers online; {args.drivers} drivers for {args.minutes} min")

        stats = Stats()
        api = Api(http, stats)
        stop_rss = asyncio.Event()
        rss = RssSampler(service.proc.pid)
        sampler = asyncio.create_task(rss.run(15.0, stop_rss))
        started = time.monotonic()
        until = started + args.minutes * 60
        rng = random.Random(args.seed)
        drivers = [Driver(i, api, random.Random(rng.random())) for i in range(args.drivers)]

        async def progress() -> None:
            while True:
                await asyncio.sleep(60)
                done = sum(stats.journeys.values())
                print(
                    f"  {(time.monotonic() - started) / 60:4.1f} min: {done} journeys "
                    f"{dict(stats.journeys)}; 5xx {len(stats.server_errors)}",
                    flush=True,
                )

        reporter = asyncio.create_task(progress())
        await asyncio.gather(*(d.run(until) for d in drivers))
        ran_s = time.monotonic() - started
        reporter.cancel()
        ocpp_latencies = ocpp.take_latencies()
        results = await check(db_url, service, stats, http)
        stop_rss.set()
        await sampler
        for sim in sims:
            await sim.close()

    results = {
        "minutes": round(ran_s / 60, 1),
        "drivers": args.drivers,
        "chargers": args.chargers,
        "connectors": 2 * args.chargers,
        "journeys": dict(stats.journeys),
        "5xx": len(stats.server_errors),
        "5xx examples": stats.server_errors[:5],
        "transport errors": dict(stats.transport_errors),
        "OTP → code in the sink s (p50/p99)": [
            round(pct(stats.otp_to_sms, 0.5) / 1000, 2),
            round(pct(stats.otp_to_sms, 0.99) / 1000, 2),
        ],
        "OCPP CALL round trip ms (p50/p99, n)": [
            round(pct(ocpp_latencies, 0.5), 1),
            round(pct(ocpp_latencies, 0.99), 1),
            len(ocpp_latencies),
        ],
        **results,
        "rss": rss.verdicts(ran_s),
        "latency_table": latency_table(stats),
        "load average at the start": load_at_start,
        "load average at the end": [round(x, 2) for x in os.getloadavg()],
    }
    return results


def verdict(results: dict[str, Any]) -> list[tuple[str, bool]]:
    db = results["double booking"]
    cap = results["captures"]
    al = results["alerts"]
    return [
        (
            "no double booking",
            db["connector holds (reservation → end of its session)"] > 0
            and db["two drivers holding one connector at once"] == 0
            and db["overlapping sessions on one connector (charger clock)"] == 0,
        ),
        (
            "every completed session captured once for its receipt total",
            cap["completed sessions"] > 0
            and cap["wrong in the database"] == 0
            and cap["wrong in GET /v1/sessions/{id}"] == 0
            and cap["wrong at localstripe"] == 0,
        ),
        (
            "every due alert sent once",
            al["missing started/complete"] == 0
            and al["a kind twice for a session"] == 0
            and al["numbers texted more often than sent"] == 0
            and al["numbers sent but not printed"] == 0
            and not any(results["left after drain"].values()),
        ),
        ("no 5xx", results["5xx"] == 0),
        ("RSS flat", all(r["flat"] for r in results["rss"])),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--drivers", type=int, default=50)
    parser.add_argument("--chargers", type=int, default=16, help="2 connectors each")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()

    services = Services(ROOT / ".data")
    env = services.start()
    db_url = asyncio.run(svc.reset_database(env["DATABASE_URL"], DB_NAME))
    out_dir = ROOT / ".data" / "soak"
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = tempfile.mkdtemp(prefix="voltway-soak-")
    env, _ = svc.bench_env(
        env,
        db_url,
        "soak",
        APP_DATA_DIR=data_dir,  # its own metrics dir, secrets and localstripe log
        APP_DEMO="1",  # localstripe and the demo SMS sink, as `make run`
        DEMO_SIMULATOR="0",  # the bench brings its own chargers
        LOG_LEVEL="WARNING",
        # Sign-in limits are per number, per source address and per prefix: every driver
        # signs in from 127.0.0.1 with numbers of one prefix, several times.
        OTP_IP_MAX="100000",
        OTP_PREFIX_MAX="100000",
        OTP_PHONE_MAX="1000",
        OTP_RESEND_AFTER_S="0",
        SMS_HOURLY_BUDGET="100000",
        SMS_RATE_PER_SENDER="0",
    )
    for key in ("STRIPE_SECRET_KEY", "STRIPE_API_BASE", "TWILIO_ACCOUNT_SID"):
        os.environ.pop(key, None)  # demo mode's own localstripe and sink
    secret = svc.create_admin(env)
    try:
        with soak_service(env, out_dir / "service.log") as service:
            results = asyncio.run(soak(service, db_url, secret, args))
    finally:
        services.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    checks = verdict(results)
    results["verdicts"] = {name: ok for name, ok in checks}
    (out_dir / "result.json").write_text(json.dumps(results, indent=2, default=str))
    table = results.pop("latency_table")
    print(json.dumps(results, indent=2, default=str))
    print("\nlatency per route (client side):\n" + table)
    print()
    for name, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
