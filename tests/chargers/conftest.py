"""The app under a real HTTP server (uvicorn on a free port): the simulator speaks OCPP to
it over real WebSockets, and the API is called over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar

from app.core.auth import Role
from app.core.settings import Settings
from app.main import create_app
from app.sim import SimOptions
from tests.factories import charger, import_fleet, site, staff_token

PASSWORD = "charger-password-0001"


@dataclass
class Server:
    http: httpx.AsyncClient
    ocpp_url: str
    settings: Settings
    app: Litestar


def fast_sim(**overrides: object) -> SimOptions:
    options = SimOptions(
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
        response_timeout_s=5.0,
        tx_retry_interval_s=0.05,
        remote_start_plan=None,
    )
    for key, value in overrides.items():
        setattr(options, key, value)
    return options


@contextlib.asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[Server]:
    """One API process: the app under uvicorn on a free port of 127.0.0.1."""
    cfg = msgspec.structs.replace(settings, ocpp_offline_grace_s=0.3)
    app = create_app(cfg, run_migrations=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", ws="websockets-sansio", access_log=False
    )
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not uv.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            yield Server(http, f"ws://127.0.0.1:{port}/ocpp", cfg, app)
    finally:
        uv.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Server]:
    async with running_server(settings) as srv:
        yield srv


async def onboard(
    srv: Server, cpid: str = "CP-T1", *, iccid: str | None = None, lat: float = 52.52
) -> None:
    """One site with one charger (connectors 1: CCS2 150 kW, 2: TYPE2 22 kW)."""
    token = staff_token(srv.settings, roles=(Role.ADMIN,))
    r = await import_fleet(
        srv.http,  # type: ignore[arg-type]
        token,
        [site(f"S-{cpid}", lat=lat, chargers=[charger(cpid, password=PASSWORD, iccid=iccid)])],
    )
    assert r.status_code == 200, r.text
