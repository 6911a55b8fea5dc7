"""Start the real service (`python -m app run`, APP_DEMO=0, 2 API workers) for a bench,
wait until `/health/ready` answers 200, and stop it (SIGINT, as Ctrl-C would); beside it
what the benches share: a fresh database, the staff admin, drivers, a fleet to import."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.core.embedded import dsn_for_database, free_port  # noqa: E402
from app.core.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    import httpx


@dataclass
class RunningService:
    proc: subprocess.Popen[bytes]
    base: str
    env: dict[str, str]
    ready_after_s: float


@contextmanager
def running_service(
    env: dict[str, str],
    *,
    ready_timeout_s: float = 60,
    log_path: Path | None = None,
    stop_wait_s: float = 30,
) -> Iterator[RunningService]:
    """`python -m app run` (APP_DEMO=0 unless `env` says otherwise) until `/health/ready`
    answers 200; its output in `log_path` (else discarded). Stopped with SIGINT."""
    port = free_port()
    child_env = {
        **os.environ,
        "APP_DEMO": "0",
        "LOG_LEVEL": "WARNING",
        **env,
        "APP_PORT": str(port),
    }
    log: IO[bytes] | None = log_path.open("wb") if log_path is not None else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run"],
        env=child_env,
        cwd=ROOT,
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(base + "/health/ready", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() - t0 > ready_timeout_s or proc.poll() is not None:
                    where = f"; see {log_path}" if log_path is not None else ""
                    raise RuntimeError(f"the service did not start{where}") from None
                time.sleep(0.3)
        yield RunningService(proc, base, child_env, time.monotonic() - t0)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(stop_wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log is not None:
            log.close()


def bench_env(
    env: dict[str, str], db_url: str, namespace: str, **extra: str
) -> tuple[dict[str, str], Settings]:
    """The service's environment for a bench on `db_url` (its own Redis namespace, a new
    JWT secret, no access log, no search rate limit) and the Settings that sign its
    tokens."""
    jwt_secret = secrets.token_urlsafe(32)
    full = {
        **env,
        **extra,
        "DATABASE_URL": db_url,
        "REDIS_NAMESPACE": f"{namespace}-{uuid.uuid4().hex[:6]}",
        "JWT_SECRET": jwt_secret,
        "ACCESS_LOG": "0",
        "DISCOVERY_RATE_PER_S": "0",
        "DB_POOL_MAX": os.environ.get("DB_POOL_MAX", "10"),
    }
    settings = Settings(database_url=db_url, redis_url=full["REDIS_URL"], jwt_secret=jwt_secret)
    return full, settings


def grid_fleet(
    chargers: int,
    *,
    per_site: int,
    tag: str,
    name: str,
    lat: float,
    lon: float,
    password: str,
    per_charger: int = 1,
) -> dict[str, Any]:
    """A fleet import body: chargers `{tag}-00000`… with OCPP password `password` and
    `per_charger` CCS2 150 kW connectors each, `per_site` to a site; sites `{name} 0`… in
    Europe/Berlin on a grid of 0.001° from (`lat`, `lon`)."""
    sites = []
    for s in range(0, chargers, per_site):
        sites.append(
            {
                "external_id": f"bench-{tag}-{s:05d}",
                "name": f"{name} {s // per_site}",
                "address": "Benchstraße 1",
                "lat": lat + (s % 100) * 0.001,
                "lon": lon + (s // 100) * 0.001,
                "timezone": "Europe/Berlin",
                "chargers": [
                    {
                        "charge_point_id": f"{tag}-{c:05d}",
                        "ocpp_password": password,
                        "connectors": [
                            {"connector_no": n, "type": "CCS2", "power_kw": 150}
                            for n in range(1, per_charger + 1)
                        ],
                    }
                    for c in range(s, min(s + per_site, chargers))
                ],
            }
        )
    return {"sites": sites}


BENCH_ADMIN = ("bench@example.com", "bench password 1")


def create_admin(env: dict[str, str]) -> str:
    """A staff admin for the bench, made with the CLI as an operator would; returns its
    TOTP secret (log in with `admin_token`)."""
    import pyotp

    secret = pyotp.random_base32()
    email, password = BENCH_ADMIN
    subprocess.run(
        [
            *(sys.executable, "-m", "app", "admin", "create-user"),
            *("--email", email, "--password", password),
            *("--role", "admin", "--totp-secret", secret),
        ],
        env={**os.environ, **env},
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return secret


def admin_token(http: Any, secret: str) -> str:
    """Log the bench admin in (password + TOTP) with an httpx client on the service."""
    import pyotp

    email, password = BENCH_ADMIN
    r = http.post(
        "/admin/v1/auth/login",
        json={"email": email, "password": password, "totp_code": pyotp.TOTP(secret).now()},
    )
    r.raise_for_status()
    token: str = r.json()["access_token"]
    return token


def admin_token_at(base: str, secret: str) -> str:
    """`admin_token` over a client of its own on `base` (for a thread beside an event loop)."""
    import httpx

    with httpx.Client(base_url=base, timeout=30) as http:
        return admin_token(http, secret)


async def import_priced_fleet(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    db_url: str,
    fleet: dict[str, Any],
    tariff: dict[str, Any],
) -> None:
    """Import `fleet` through the admin API, publish `tariff` and assign it to each of the
    fleet's sites from 2020 on (`admin`: the staff admin's headers)."""
    import asyncpg

    r = await http.post("/admin/v1/fleet/import", json=fleet, headers=admin)
    r.raise_for_status()
    r = await http.post("/admin/v1/tariffs", json=tariff, headers=admin)
    r.raise_for_status()
    tariff_id = r.json()["tariff_id"]
    conn = await asyncpg.connect(db_url)
    try:
        site_ids = await conn.fetch(
            "SELECT site_id::text AS id FROM sites WHERE external_id = ANY($1::text[])",
            [site["external_id"] for site in fleet["sites"]],
        )
    finally:
        await conn.close()
    for site_id in site_ids:
        r = await http.post(
            "/admin/v1/tariff-assignments",
            json={
                "tariff_id": tariff_id,
                "site_id": site_id["id"],
                "effective_from": "2020-01-01T00:00:00Z",
            },
            headers=admin,
        )
        r.raise_for_status()


async def reset_database(url: str, name: str) -> str:
    """A new empty database `name` on the server of `url` (dropped first); its DSN."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return dsn_for_database(url, name)


async def make_drivers(
    db_url: str, settings: Settings, n: int, *, prefix: str
) -> list[dict[str, str]]:
    """`n` drivers with a live login each, straight in the database (numbers `prefix` +
    8 digits): ids, idTag and `access_token` (tests/factories.py `make_driver`)."""
    import asyncpg

    from tests.factories import make_driver

    conn = await asyncpg.connect(db_url)
    try:
        return [await make_driver(conn, settings, phone=f"{prefix}{i:08d}") for i in range(n)]
    finally:
        await conn.close()


async def wait_available(db_url: str, n: int) -> None:
    """Until `n` connectors are AVAILABLE on chargers the service sees online (60 s)."""
    import asyncio

    import asyncpg

    conn = await asyncpg.connect(db_url)
    try:
        async with asyncio.timeout(60):
            while True:
                ready = await conn.fetchval(
                    """SELECT count(*) FROM connectors k JOIN charger_connectivity h USING (charger_id)
                        WHERE h.state = 'online' AND k.status = 'AVAILABLE'"""
                )
                if ready >= n:
                    return
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


def pct_ms(values: list[float], q: float) -> float:
    """The q-quantile (0..1, nearest rank) of durations in seconds, in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
