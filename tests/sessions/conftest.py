"""A charging site the whole journey can run on: the app under a real HTTP server with
localstripe behind it (tests/payments/fixtures.py), a site with a published tariff, a
simulated charger connected over OCPP, drivers with and without cards, and the worker's
jobs run on demand (capture, extra charge, the hold check) with an arq-like context."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from app.chargers.commands import CommandClient
from app.core.auth import Role
from app.core.db import create_pool
from app.core.settings import Settings
from app.payments.tasks import capture_payment, charge_extra_payment, close_stripe
from app.sessions.tasks import session_hold_low
from app.sim import SessionPlan, SimCharger, SimOptions
from tests.chargers.conftest import PASSWORD, Server, fast_sim, running_server
from tests.factories import (
    auth,
    charger,
    driver_on,
    eventually,
    import_fleet,
    session_view,
    site,
    staff_token,
)
from tests.payments.fixtures import gateway, localstripe, settings

__all__ = ["gateway", "localstripe", "settings"]

CPID = "CP-S1"
JOBS: dict[str, Any] = {
    "capture_payment": capture_payment,
    "charge_extra_payment": charge_extra_payment,
    "session_hold_low": session_hold_low,
}
# Day (07:00–22:00 Berlin) and night energy, a flat fee, parking after charging.
TARIFF: dict[str, Any] = {
    "name": "Sessions test",
    "currency": "EUR",
    "vat_percent": "19",
    "elements": [
        {
            "price_components": [{"type": "ENERGY", "price": "0.29", "step_size": 1}],
            "restrictions": {"start_time": "22:00", "end_time": "07:00"},
        },
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.49", "step_size": 1},
                {"type": "FLAT", "price": "0.50", "step_size": 1},
                {"type": "PARKING_TIME", "price": "6.00", "step_size": 1},
            ]
        },
    ],
}


def charging_sim(**overrides: Any) -> SimOptions:
    """A fast charger: 50 kW per connector, a car that charges 60 simulated seconds per
    0.05 s of real time (MeterValues each step) from 20 % to 100 %."""
    options = fast_sim(
        max_power_w=50_000.0,
        speedup=1200.0,
        meter_interval_s=60.0,
        remote_start_plan=SessionPlan(battery_kwh=60.0, start_soc=20.0, target_soc=100.0),
    )
    for key, value in overrides.items():
        setattr(options, key, value)
    return options


@dataclass
class Site:
    """One site (Europe/Berlin) with one charger `CP-S1` (1: CCS2 150 kW, 2: TYPE2 22 kW)
    and a tariff in force; `admin` is a staff token."""

    srv: Server
    db: asyncpg.Connection
    settings: Settings
    admin: str
    site_id: str
    tariff_id: str
    connectors: dict[int, str]
    sims: list[SimCharger] = field(default_factory=list)
    phones: int = 0

    @property
    def http(self) -> httpx.AsyncClient:
        return self.srv.http

    async def use_tariff(self, elements: list[dict[str, Any]], *, vat: str = "0") -> str:
        """Publish a tariff and put it in force at the site from now; returns its id."""
        body = {"name": "Test", "currency": "EUR", "vat_percent": vat, "elements": elements}
        r = await self.http.post("/admin/v1/tariffs", json=body, headers=auth(self.admin))
        assert r.status_code == 201, r.text
        tariff_id: str = r.json()["tariff_id"]
        now = await self.db.fetchval("SELECT now() - interval '1 second'")
        r = await self.http.post(
            "/admin/v1/tariff-assignments",
            json={
                "tariff_id": tariff_id,
                "site_id": self.site_id,
                "effective_from": now.isoformat(),
            },
            headers=auth(self.admin),
        )
        assert r.status_code == 201, r.text
        return tariff_id

    async def connect(self, options: SimOptions | None = None) -> SimCharger:
        sim = SimCharger(
            self.srv.ocpp_url, CPID, PASSWORD, connectors=[1, 2], options=options or charging_sim()
        )
        sim.start()
        await sim.wait_online(10)
        self.sims.append(sim)

        async def online() -> bool:
            return bool(
                await self.db.fetchval(
                    """SELECT h.state = 'online' FROM charger_connectivity h
                       JOIN chargers c USING (charger_id) WHERE c.charge_point_id = $1""",
                    CPID,
                )
            )

        assert await eventually(online, within_s=5)
        return sim

    async def driver(self, *, card: str | None = "pm_card_visa") -> dict[str, Any]:
        """A driver (token, id, idTag), with a saved default card unless `card` is None."""
        self.phones += 1
        phone = f"+49151777{self.phones:05d}"
        return await driver_on(self.http, self.db, self.settings, phone=phone, card=card)

    async def start(self, driver: dict[str, Any], connector_no: int = 1) -> httpx.Response:
        return await self.http.post(
            "/v1/sessions",
            json={"connector_id": self.connectors[connector_no]},
            headers=driver["headers"],
        )

    async def session(self, driver: dict[str, Any], session_id: str) -> dict[str, Any]:
        return await session_view(self.http, driver, session_id)

    async def until(
        self,
        driver: dict[str, Any],
        session_id: str,
        check: Callable[[dict[str, Any]], bool],
        *,
        within_s: float = 10.0,
        jobs: bool = False,
    ) -> dict[str, Any]:
        """Poll the session (running the worker's jobs in between when `jobs`) until
        `check` holds; returns the last view either way."""
        last: dict[str, Any] = {}

        async def probe() -> bool:
            nonlocal last
            if jobs:
                await self.run_jobs()
            last = await self.session(driver, session_id)
            return check(last)

        await eventually(probe, within_s=within_s, interval=0.05)
        return last

    async def run_jobs(self, *names: str) -> list[str]:
        """Run every pending outbox row of these jobs now (default: all of JOBS), as the
        worker would; returns their results."""
        wanted = list(names or JOBS)
        out: list[str] = []
        async with _job_context(self.settings) as ctx:
            for _ in range(5):  # jobs may queue further jobs (a capture after a decision)
                rows = await self.db.fetch(
                    "SELECT outbox_id, job, args FROM outbox WHERE job = ANY($1::text[]) "
                    "AND done_at IS NULL AND available_at <= now() ORDER BY outbox_id",
                    wanted,
                )
                if not rows:
                    break
                for r in rows:
                    out.append(str(await JOBS[r["job"]](ctx, r["outbox_id"], **r["args"])))
        return out


@contextlib.asynccontextmanager
async def _job_context(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    pool = await create_pool(settings)
    commands = CommandClient(settings.redis_url, settings.redis_namespace)
    ctx: dict[str, Any] = {
        "pool": pool,
        "settings": settings,
        "job_try": 1,
        "ocpp_commands": commands,
    }
    try:
        yield ctx
    finally:
        await close_stripe(ctx)
        await commands.close()
        await pool.close()


def session_settings(settings: Settings, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "session_remote_start_timeout_s": 2.0,
        "session_charger_hold_timeout_s": 5.0,
    }
    return msgspec.structs.replace(settings, **{**base, **overrides})


@contextlib.asynccontextmanager
async def charging_site(
    settings: Settings, db: asyncpg.Connection, **overrides: Any
) -> AsyncIterator[Site]:
    cfg = session_settings(settings, **overrides)
    async with running_server(cfg) as srv:
        admin = staff_token(srv.settings, roles=(Role.ADMIN,))
        r = await import_fleet(
            srv.http,  # type: ignore[arg-type]
            admin,
            [site("S-SESSIONS", chargers=[charger(CPID, password=PASSWORD)])],
        )
        assert r.status_code == 200, r.text
        rows = await db.fetch(
            """SELECT k.connector_no, k.connector_id::text AS connector_id, k.site_id::text AS site_id
               FROM connectors k JOIN chargers c USING (charger_id) WHERE c.charge_point_id = $1""",
            CPID,
        )
        site_id = rows[0]["site_id"]
        r = await srv.http.post("/admin/v1/tariffs", json=TARIFF, headers=auth(admin))
        assert r.status_code == 201, r.text
        tariff_id = r.json()["tariff_id"]
        r = await srv.http.post(
            "/admin/v1/tariff-assignments",
            json={
                "tariff_id": tariff_id,
                "site_id": site_id,
                "effective_from": "2020-01-01T00:00:00Z",
            },
            headers=auth(admin),
        )
        assert r.status_code == 201, r.text
        world = Site(
            srv=srv,
            db=db,
            settings=srv.settings,
            admin=admin,
            site_id=site_id,
            tariff_id=tariff_id,
            connectors={r["connector_no"]: r["connector_id"] for r in rows},
        )
        try:
            yield world
        finally:
            for sim in world.sims:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sim.close(), 5)
            await srv.app.state.sessions.drain(2.0)


@pytest.fixture
async def world(settings: Settings, db: asyncpg.Connection) -> AsyncIterator[Site]:
    async with charging_site(settings, db) as w:
        yield w
