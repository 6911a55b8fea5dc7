"""Ctrl-C on `python -m app run` (what `make run` runs) with chargers connected over OCPP
stops every process cleanly: no Rust panic from granian (its multi-threaded runtime
panicked once per worker, granian issues #799/#884), no Python traceback, no worker left
behind, exit 0. The chargers here are not the demo's: they stay connected until the
server ends their connections, as real ones would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from app.core.auth import Role
from app.core.embedded import free_port
from app.core.settings import ROOT, Settings
from app.sim import SimCharger, SimOptions
from tests.conftest import TEST_JWT_SECRET
from tests.factories import charger, import_fleet, site, staff_token
from tests.servers import wait_ready

PASSWORD = "charger-password-0001"
# Enough open sockets for granian's teardown to panic every time without the drain
# (app/run.py `_stop`): with 8 it did not, with 200 it did in each of 4 runs.
CHARGERS = 200


async def test_ctrl_c_with_connected_chargers_stops_cleanly(
    settings: Settings, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
        "JWT_SECRET": TEST_JWT_SECRET,
        "APP_DEMO": "0",
        "APP_PORT": str(port),
        "APP_WORKERS": "2",
        "APP_DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    log_path = tmp_path / "run.log"
    chargers: list[SimCharger] = []
    with log_path.open("wb") as log:
        # Its own process group, so the SIGINT below reaches every process as a terminal's
        # Ctrl-C does (the runner, granian and its workers, the arq worker).
        proc = subprocess.Popen(  # noqa: ASYNC220 - a thread would only hide the same call
            [sys.executable, "-m", "app", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base, lambda: proc.poll() is None, within_s=45)
        token = staff_token(settings, roles=(Role.ADMIN,))
        cpids = [f"CP-STOP-{i}" for i in range(CHARGERS)]
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            r = await import_fleet(
                http,  # type: ignore[arg-type]
                token,
                [site("S-STOP", chargers=[charger(c, password=PASSWORD) for c in cpids])],
            )
            assert r.status_code == 200, r.text
        # No reconnect during the stop: a charger's next attempt is 30 s away.
        options = SimOptions(reconnect_min_s=30.0, reconnect_max_s=30.0, response_timeout_s=5.0)
        for cpid in cpids:
            sim = SimCharger(f"ws://127.0.0.1:{port}/ocpp", cpid, PASSWORD, options=options)
            sim.start()
            chargers.append(sim)
        for sim in chargers:  # connections spread over both workers
            await sim.wait_online(15)

        before_stop = log_path.stat().st_size
        os.killpg(proc.pid, signal.SIGINT)
        returncode = await asyncio.to_thread(proc.wait, 30)
        # Every charger saw its connection end, as at a real stop.
        for sim in chargers:
            await sim.wait_until(lambda s=sim: not s.online, 5)  # type: ignore[misc]
    finally:
        for sim in chargers:
            await sim.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = log_path.read_text(errors="replace")
    stop = out[before_stop:]
    assert "panicked" not in out, out
    assert "Traceback" not in stop, stop
    assert "Unexpected exit" not in stop, stop
    assert returncode == 0, stop
    assert "stopped." in stop
    assert "did not stop" not in stop, stop  # granian's workers exited by themselves
