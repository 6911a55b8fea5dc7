"""SMS alert bench: the real service (`python -m app run`, APP_DEMO=0, 2 API workers + the
arq worker, real PostgreSQL and Redis) with a local Twilio stand-in and simulated chargers
over OCPP.

The Twilio peer is a lean local stand-in on a real port (`TimedStandIn`: the tests' wire
format, straight on aiohttp, stamping arrivals).

1. Latency (TARGETS.md: ≤ 1 s p99): N sessions charge at 70 % SoC; then, one charger
   after another at `--rate` per second, a MeterValues reports 80.4 %. Measured from just
   before that MeterValues is sent to the moment the `soc_80` request reaches the Twilio
   stand-in (MeterValues → group commit → alert rules → notification + outbox row →
   NOTIFY → relay → arq → send_sms → Twilio). Then the same as one burst (all at once).
   Pacing is off here (a short code / Messaging Service; a long code sends 1/s whatever
   we do).
2. Throughput (TARGETS.md: ≥ 500 messages/s through the worker): `--messages` alerts
   queued in PostgreSQL in one commit; first to last request at the stand-in, pacing off.
3. Pacing on (`SMS_RATE_PER_SENDER=--paced-rate`, a fresh service): `--paced-messages`
   alerts; the mean rate and the most requests seen in any 1 s and 5 s window (slots are
   1/rate apart; a request that leaves a few ms late puts two slots closer together at
   the stand-in), and none may be lost.

    .venv/bin/python bench/alerts.py       # --sessions 100 --rate 20 --messages 5000

Uses DATABASE_URL / REDIS_URL when set (a fresh database `voltway_bench_alerts` on that
server), else the embedded servers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import psutil
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.db import init_connection  # noqa: E402
from app.core.embedded import Services  # noqa: E402
from app.notifications.alerts import queue_alert  # noqa: E402
from app.sim import SimCharger, SimOptions, connect  # noqa: E402
from app.sim.state import Transaction  # noqa: E402
from bench import _service as svc  # noqa: E402
from tests.standins.twilio import ACCOUNT_SID, AUTH_TOKEN, FROM  # noqa: E402

DB_NAME = "voltway_bench_alerts"
PASSWORD = "bench-alerts-password-01"


class TimedStandIn:
    """A lean Twilio Messages endpoint for the bench: the wire format of
    `tests/standins/twilio.py` (Basic auth, form in, 201 with a Message resource out)
    straight on aiohttp, stamping when each message arrived. The tests' recording stand-in
    goes through an ASGI adapter and tops out near 330 requests/s here, below what the
    worker sends; this one does ~800-950/s, so the figure is the worker's."""

    def __init__(self) -> None:
        self.account_sid = ACCOUNT_SID
        self.auth_token = AUTH_TOKEN
        self.url = ""
        self.arrivals: list[tuple[float, str, str]] = []  # (time, to, body)
        self._auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()

    async def messages(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self._auth:
            return web.json_response(
                {"code": 20003, "message": "Authenticate", "status": 401}, status=401
            )
        form = await request.post()
        to, body = str(form.get("To", "")), str(form.get("Body", ""))
        self.arrivals.append((time.time(), to, body))
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC))
        payload = {
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "api_version": "2010-04-01",
            "status": "queued",
            "to": to,
            "from": form.get("From"),
            "body": body,
            "direction": "outbound-api",
            "num_segments": "1",
            "num_media": "0",
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
        }
        return web.Response(
            body=msgspec.json.encode(payload), status=201, content_type="application/json"
        )

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_post(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json", self.messages)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            yield self.url
        finally:
            await runner.cleanup()


def fleet(chargers: int) -> dict[str, Any]:
    return svc.grid_fleet(
        chargers, per_site=10, tag="BA", name="Hafen", lat=53.54, lon=9.98, password=PASSWORD
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    ordered = sorted(times)
    return max(
        (bisect.bisect_right(ordered, t + window_s - 1e-9) - i for i, t in enumerate(ordered)),
        default=0,
    )


async def open_sessions(db_url: str, n: int) -> list[dict[str, Any]]:
    """N drivers, each with a paid CHARGING session on its own charger (as after a
    StartTransaction with a hold in place)."""
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            """WITH d AS (
                   INSERT INTO drivers (phone, id_tag, vehicle_battery_wh, vehicle_max_ac_w,
                                        vehicle_max_dc_w)
                   SELECT '+447700' || lpad(i::text, 6, '0'), 'BA' || i, 64000, 11000, 150000
                   FROM generate_series(0, $1 - 1) AS i
                   RETURNING driver_id, id_tag, phone),
               c AS (
                   SELECT c.charger_id, c.charge_point_id, k.connector_id,
                          row_number() OVER (ORDER BY c.charge_point_id) - 1 AS i
                   FROM chargers c JOIN connectors k USING (charger_id)),
               s AS (
                   INSERT INTO charging_sessions (charger_id, connector_id, connector_no,
                       id_tag, id_tag_status, driver_id, status, meter_start_wh, started_at,
                       origin, preauth_minor, holds, currency)
                   SELECT c.charger_id, c.connector_id, 1, d.id_tag, 'Accepted', d.driver_id,
                          'CHARGING', 0, now() - interval '30 minutes', 'charger', 5000, 1,
                          'EUR'
                   FROM d JOIN c ON c.i = substr(d.id_tag, 3)::int
                   RETURNING session_id, transaction_id, charger_id, driver_id, id_tag,
                             started_at)
               SELECT s.*, d.phone, c.charge_point_id
               FROM s JOIN d USING (driver_id) JOIN c USING (charger_id)""",
            n,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def connect_chargers(base: str, sessions: list[dict[str, Any]]) -> list[SimCharger]:
    options = SimOptions(response_timeout_s=30, reconnect_min_s=0.2, remote_start_plan=None)
    ws = base.replace("http://", "ws://") + "/ocpp"
    sims: list[SimCharger] = []
    gate = asyncio.Semaphore(20)

    async def one(s: dict[str, Any]) -> SimCharger:
        async with gate:
            sim = await connect(
                ws, s["charge_point_id"], PASSWORD, connectors=[1], options=options, timeout_s=60
            )
        sim._connector(1).transaction = Transaction(
            transaction_id=s["transaction_id"],
            connector_id=1,
            id_tag=s["id_tag"],
            id_tag_status="Accepted",
            meter_start_wh=0,
            started_at=s["started_at"],
        )
        return sim

    sims = list(await asyncio.gather(*(one(s) for s in sessions)))
    return sims


async def wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.01)


async def latency(
    base: str, db_url: str, twilio: TimedStandIn, n: int, rate: float
) -> dict[str, Any]:
    sessions = await open_sessions(db_url, n)
    sims = await connect_chargers(base, sessions)
    phone_of = {s["charge_point_id"]: s["phone"] for s in sessions}
    # 70 %: the session_started alerts go out; wait for them
    await asyncio.gather(
        *(sim.send_meter_values(1, energy_wh=30_000, power_w=50_000, soc=70.0) for sim in sims)
    )
    await wait_for(lambda: len(twilio.arrivals) >= n, 60, "session_started alerts")

    def soc80_arrivals() -> dict[str, float]:
        return {to: t for t, to, body in twilio.arrivals if "your car is at 80%" in body}

    out: dict[str, Any] = {}
    half = n // 2
    # steady: one crossing every 1/rate s
    sent_at: dict[str, float] = {}

    async def cross(sim: SimCharger) -> None:
        sent_at[phone_of[sim.charge_point_id]] = time.time()
        await sim.send_meter_values(1, energy_wh=41_000, power_w=48_000, soc=80.4)

    tasks = []
    for sim in sims[:half]:
        tasks.append(asyncio.create_task(cross(sim)))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*tasks)
    await wait_for(lambda: len(soc80_arrivals()) >= half, 60, "steady soc_80 alerts")
    arrived = soc80_arrivals()
    steady = [(arrived[p] - sent_at[p]) * 1000 for p in sent_at]
    out["steady"] = steady
    # burst: the other half at once
    burst_sent: dict[str, float] = {}

    async def cross_burst(sim: SimCharger) -> None:
        burst_sent[phone_of[sim.charge_point_id]] = time.time()
        await sim.send_meter_values(1, energy_wh=41_000, power_w=48_000, soc=80.4)

    await asyncio.gather(*(cross_burst(sim) for sim in sims[half:]))
    await wait_for(lambda: len(soc80_arrivals()) >= n, 60, "burst soc_80 alerts")
    arrived = soc80_arrivals()
    out["burst"] = [(arrived[p] - burst_sent[p]) * 1000 for p in burst_sent]
    await asyncio.gather(*(sim.close() for sim in sims))
    return out


async def queue_many(db_url: str, m: int, phone: str) -> float:
    """M alerts (reservation_expiring of M reservations of one driver) in one commit."""
    conn = await asyncpg.connect(db_url)
    await init_connection(conn)
    try:
        driver_id = await conn.fetchval(
            "INSERT INTO drivers (phone, id_tag) VALUES ($1, $2) "
            "ON CONFLICT (phone) DO UPDATE SET phone = EXCLUDED.phone RETURNING driver_id",
            phone,
            "BQ" + secrets.token_hex(4).upper(),
        )
        now = datetime.now(UTC)
        async with conn.transaction():
            for _ in range(m):
                await queue_alert(
                    conn,
                    kind="reservation_expiring",
                    driver_id=driver_id,
                    now=now,
                    reservation_id=uuid.uuid4(),
                    facts={
                        "site_name": "Hafen",
                        "timezone": "Europe/Berlin",
                        "at": now + timedelta(minutes=5),
                    },
                )
        return time.time()  # committed
    finally:
        await conn.close()


def arq_workers(service_pid: int) -> list[psutil.Process]:
    """The service's arq worker process(es)."""
    return [
        p
        for p in psutil.Process(service_pid).children(recursive=True)
        if any("arq" in part for part in p.cmdline()[:2])
    ]


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


async def throughput(
    db_url: str, twilio: TimedStandIn, m: int, phone: str, workers: list[psutil.Process]
) -> dict[str, float]:
    before = len(twilio.arrivals)
    cpu_before = cpu_s(workers)
    committed = await queue_many(db_url, m, phone)
    await wait_for(lambda: len(twilio.arrivals) - before >= m, 600, f"{m} messages")
    cpu = cpu_s(workers) - cpu_before
    times = [t for t, to, _ in twilio.arrivals[before:] if to == phone]
    return {
        "worker_cpu_ms_per_msg": cpu * 1000 / m,
        "messages": float(len(times)),
        "first_after_commit_ms": (min(times) - committed) * 1000,
        "span_s": max(times) - min(times),
        "rate": (len(times) - 1) / (max(times) - min(times)),
        "all_after_commit_s": max(times) - committed,
    }


async def run_phase(
    env: dict[str, str],
    db_url: str,
    twilio: TimedStandIn,
    secret: str,
    args: argparse.Namespace,
    paced: bool,
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with svc.running_service(env) as service:
        if not paced:
            token = svc.admin_token_at(service.base, secret)
            async with httpx.AsyncClient(base_url=service.base, timeout=120) as http:
                r = await http.post(
                    "/admin/v1/fleet/import",
                    json=fleet(args.sessions),
                    headers={"Authorization": f"Bearer {token}"},
                )
                r.raise_for_status()
            result["latency"] = await latency(
                service.base, db_url, twilio, args.sessions, args.rate
            )
            workers = arq_workers(service.proc.pid)
            extra = [start_worker(service.env) for _ in range(args.extra_workers)]
            try:
                await asyncio.sleep(3 if extra else 0)  # let the extra workers start
                result["throughput"] = await throughput(
                    db_url,
                    twilio,
                    args.messages,
                    "+447700900001",
                    workers + [psutil.Process(p.pid) for p in extra],
                )
            finally:
                for p in extra:
                    p.send_signal(signal.SIGTERM)
                    p.wait(20)
        else:
            before = len(twilio.arrivals)
            result["throughput"] = await throughput(
                db_url, twilio, args.paced_messages, "+447700900002", arq_workers(service.proc.pid)
            )
            times = [t for t, _, _ in twilio.arrivals[before:]]
            result["max_per_1s"] = max_in_window(times)
            result["max_per_5s"] = max_in_window(times, 5.0)
    return result


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """One more arq worker on the same queue (the way to scale sending out)."""
    arq = str(Path(sys.executable).parent / "arq")
    return subprocess.Popen(
        [arq, "workers.main.WorkerSettings"],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100, help="latency: sessions")
    parser.add_argument("--rate", type=float, default=20.0, help="latency: crossings/s")
    parser.add_argument("--messages", type=int, default=5000, help="throughput, pacing off")
    parser.add_argument(
        "--extra-workers", type=int, default=0, help="throughput: more arq workers beside"
    )
    parser.add_argument("--paced-rate", type=float, default=50.0, help="msgs/s per sender")
    parser.add_argument("--paced-messages", type=int, default=500)
    args = parser.parse_args()

    services = Services(ROOT / ".data")
    env = services.start()
    db_url = asyncio.run(svc.reset_database(env["DATABASE_URL"], DB_NAME))

    async def with_standin() -> int:
        twilio = TimedStandIn()
        async with twilio.serve() as url:
            base_env = {
                **env,
                "DATABASE_URL": db_url,
                "REDIS_NAMESPACE": f"bench-alerts-{uuid.uuid4().hex[:6]}",
                "JWT_SECRET": secrets.token_urlsafe(32),
                "ACCESS_LOG": "0",
                "DISCOVERY_RATE_PER_S": "0",
                "TWILIO_ACCOUNT_SID": twilio.account_sid,
                "TWILIO_AUTH_TOKEN": twilio.auth_token,
                "TWILIO_FROM": FROM,
                "TWILIO_API_BASE": url,
                "DB_POOL_MAX": os.environ.get("DB_POOL_MAX", "10"),
            }
            secret = svc.create_admin(base_env)
            off = await run_phase(
                {**base_env, "SMS_RATE_PER_SENDER": "0"}, db_url, twilio, secret, args, False
            )
            on = await run_phase(
                {**base_env, "SMS_RATE_PER_SENDER": str(args.paced_rate)},
                db_url,
                twilio,
                secret,
                args,
                True,
            )
        report(args, off, on)
        return 0

    try:
        with contextlib.suppress(ImportError):  # the stand-in and the simulators: faster loop
            import uvloop

            return uvloop.run(with_standin())
        return asyncio.run(with_standin())
    finally:
        services.stop()


def report(args: argparse.Namespace, off: dict[str, Any], on: dict[str, Any]) -> None:
    print(f"SMS alerts bench ({os.cpu_count()} cores; real service, local Twilio stand-in)")
    for name, label in (("steady", f"steady, {args.rate:g} crossings/s"), ("burst", "one burst")):
        values = off["latency"][name]
        print(
            f"  SoC 80 % MeterValues → Twilio request ({label}, n={len(values)}): "
            f"p50 {pct(values, 0.5):6.0f} ms  p99 {pct(values, 0.99):6.0f} ms  "
            f"max {max(values):6.0f} ms"
        )
    t = off["throughput"]
    print(
        f"  throughput, pacing off, {1 + args.extra_workers} worker(s): {t['messages']:.0f} "
        f"messages, {t['rate']:.0f} msg/s (first {t['first_after_commit_ms']:.0f} ms after "
        f"the commit, all {t['all_after_commit_s']:.1f} s); worker CPU "
        f"{t['worker_cpu_ms_per_msg']:.2f} ms/msg = {1000 / t['worker_cpu_ms_per_msg']:.0f} "
        "msg/s per busy core"
    )
    p = on["throughput"]
    print(
        f"  pacing on at {args.paced_rate:g} msg/s per sender: {p['messages']:.0f} messages, "
        f"{p['rate']:.1f} msg/s; most in any 1 s window {on['max_per_1s']}, in any 5 s "
        f"window {on['max_per_5s']} (slots {args.paced_rate:g}/s; arrival jitter of a few ms "
        "can put one slot more into a 1 s window)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
