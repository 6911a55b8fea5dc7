"""Reservations against the real thing: the app under uvicorn (real HTTP and OCPP
WebSockets), simulated chargers from `app.sim`, real PostgreSQL and Redis, and — where a
test needs jobs — an arq worker running in this process with the production job list."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker

from app.chargers.commands import CommandClient
from app.core import outbox
from app.core.auth import Role
from app.core.db import create_pool
from app.core.settings import Settings
from app.notifications import tasks as notification_tasks
from app.notifications.tasks import close_sender
from app.reservations import tasks as reservation_tasks
from app.reservations.service import ReservationsConfig
from app.sim import SimCharger, connect
from tests.chargers.conftest import PASSWORD, Server, fast_sim, running_server
from tests.factories import auth, charger, import_fleet, make_driver, site, staff_token
from tests.notifications.sms_fixtures import twilio as twilio
from tests.notifications.sms_fixtures import with_twilio as with_twilio

TEST_CONFIG = ReservationsConfig(charger_timeout_s=1.0)

# One site, three chargers: A and B are twins (CCS2 150 kW + TYPE2 22 kW), C has a weaker
# CCS2 (50 kW: never a twin of A's 150 kW connector).
CHARGERS: dict[str, list[dict[str, Any]]] = {
    "CP-A": [
        {"connector_no": 1, "type": "CCS2", "power_kw": 150},
        {"connector_no": 2, "type": "TYPE2", "power_kw": 22},
    ],
    "CP-B": [
        {"connector_no": 1, "type": "CCS2", "power_kw": 150},
        {"connector_no": 2, "type": "TYPE2", "power_kw": 22},
    ],
    "CP-C": [{"connector_no": 1, "type": "CCS2", "power_kw": 50}],
}


@dataclass
class Fleet:
    srv: Server
    db: asyncpg.Connection
    site_id: str
    connectors: dict[tuple[str, int], str]  # (charge point id, connector no) → connector id
    sims: dict[str, SimCharger] = field(default_factory=dict)

    @property
    def http(self) -> httpx.AsyncClient:
        return self.srv.http

    def connector(self, cpid: str, no: int = 1) -> str:
        return self.connectors[(cpid, no)]

    async def driver(self, i: int = 0) -> dict[str, str]:
        """A logged-in driver (distinct per `i`); returns ids and an access token."""
        return await make_driver(self.db, self.srv.settings, phone=f"+49151{i:08d}")

    async def reserve(
        self, token: str, connector_id: str, *, headers: Any = None, **body: Any
    ) -> httpx.Response:
        """POST /v1/reservations with `body` (start_at, duration_min) as this driver."""
        return await self.http.post(
            "/v1/reservations",
            json={"connector_id": connector_id, **body},
            headers={**auth(token), **(headers or {})},
        )

    async def slot(
        self, token: str, connector_id: str, start_at: datetime, *, duration_min: int | None = None
    ) -> httpx.Response:
        """Reserve a future slot from `start_at` (its length from the vehicle unless given)."""
        body: dict[str, Any] = {"start_at": start_at.isoformat()}
        if duration_min is not None:
            body["duration_min"] = duration_min
        return await self.reserve(token, connector_id, **body)

    async def status_of(self, connector_id: str) -> str:
        return str(
            await self.db.fetchval(
                "SELECT status FROM connectors WHERE connector_id = $1", connector_id
            )
        )

    async def nearby_status(self, connector_id: str) -> str | None:
        """The connector's status as nearby search shows it (None: not shown)."""
        r = await self.http.get("/v1/chargers/nearby", params={"lat": 52.52, "lon": 13.405})
        assert r.status_code == 200, r.text
        for s in r.json()["items"]:
            for c in s["connectors"]:
                if c["connector_id"] == connector_id:
                    return str(c["status"])
        return None


async def onboard(srv: Server, chargers: dict[str, list[dict[str, Any]]]) -> None:
    token = staff_token(srv.settings, roles=(Role.ADMIN,))
    r = await import_fleet(
        srv.http,  # type: ignore[arg-type]
        token,
        [
            site(
                "S-RESV",
                chargers=[
                    charger(cpid, password=PASSWORD, connectors=connectors)
                    for cpid, connectors in chargers.items()
                ],
            )
        ],
    )
    assert r.status_code == 200, r.text


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # the suite's per-client discovery limit would throttle a test that polls search
    return msgspec.structs.replace(settings, discovery_rate_per_s=0)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Server]:
    async with running_server(settings) as srv:
        srv.app.state.reservations_config = TEST_CONFIG
        yield srv


@pytest.fixture
async def fleet(server: Server, db: asyncpg.Connection) -> AsyncIterator[Fleet]:
    """The site above with every charger connected over OCPP and online."""
    await onboard(server, CHARGERS)
    rows = await db.fetch(
        """SELECT c.charge_point_id, k.connector_no, k.connector_id::text AS connector_id,
                  k.site_id::text AS site_id
             FROM connectors k JOIN chargers c USING (charger_id)"""
    )
    fleet = Fleet(
        server,
        db,
        rows[0]["site_id"],
        {(r["charge_point_id"], r["connector_no"]): r["connector_id"] for r in rows},
    )
    try:
        for cpid, connectors in CHARGERS.items():
            fleet.sims[cpid] = await connect(
                server.ocpp_url,
                cpid,
                PASSWORD,
                connectors=[c["connector_no"] for c in connectors],
                options=fast_sim(),
                timeout_s=10,
            )
        await _wait_all_available(db)
        yield fleet
    finally:
        for sim in fleet.sims.values():
            await sim.close()


async def _wait_all_available(db: asyncpg.Connection) -> None:
    async with asyncio.timeout(10):
        while True:
            ready = await db.fetchval(
                """SELECT bool_and(h.state = 'online' AND k.status = 'AVAILABLE')
                     FROM connectors k JOIN charger_connectivity h USING (charger_id)"""
            )
            if ready:
                return
            await asyncio.sleep(0.02)


# ------------------------------------------------------------------- SMS + worker
# The Twilio stand-in (`twilio`) and `with_twilio` are tests/notifications/sms_fixtures.py's.


@contextlib.asynccontextmanager
async def running_worker(settings: Settings) -> AsyncIterator[Worker]:
    """An arq worker in this process: the production reservation jobs, the SMS job, the
    relay (every 5 s, as in workers/main.py) and both listeners (vw_reservations, and the
    notifications domain's own start-up, which sends new SMS at once)."""

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["settings"] = settings
        ctx["pool"] = await create_pool(settings)
        ctx["ocpp_commands"] = CommandClient(settings.redis_url, settings.redis_namespace)
        ctx["reservations_config"] = TEST_CONFIG
        await reservation_tasks.start_listener(ctx)
        await notification_tasks.start_listener(ctx)  # as workers/main.py: SMS sent at once

    async def shutdown(ctx: dict[str, Any]) -> None:
        await reservation_tasks.stop_listener(ctx)
        await notification_tasks.stop_listener(ctx)
        await close_sender(ctx)
        await ctx["ocpp_commands"].close()
        await ctx["pool"].close()

    worker = Worker(
        functions=[
            outbox.relay_outbox,
            notification_tasks.send_sms_job,
            *reservation_tasks.FUNCTIONS,
        ],
        cron_jobs=[
            cron(outbox.relay_outbox, second=set(range(0, 60, 5)), unique=True),
        ],
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        queue_name=outbox.queue_name(settings),
        on_startup=startup,
        on_shutdown=shutdown,
        handle_signals=False,
        poll_delay=0.05,
        max_jobs=20,
        keep_result=60,
    )
    task = asyncio.create_task(worker.async_run())
    try:
        async with asyncio.timeout(10):
            while "reservations_listener" not in worker.ctx:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            listener, _ = worker.ctx["reservations_listener"]
            await listener.ready.wait()
        yield worker
    finally:
        # no new jobs, let running ones finish: cancelling one mid-pipeline breaks arq's close
        worker.allow_pick_jobs = False
        running = [t for t in worker.tasks.values() if not t.done()]
        if running:
            await asyncio.wait(running, timeout=10)
        with warnings.catch_warnings():  # arq 0.28 closes its pool with redis's old close()
            warnings.simplefilter("ignore", DeprecationWarning)
            await worker.close()
        with contextlib.suppress(asyncio.CancelledError):
            await task
