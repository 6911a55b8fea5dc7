"""An API worker `kill -9`ed while chargers are connected to it (granian, 2 workers, run as
`make run` runs it: a worker that dies is respawned). Its chargers see the socket die,
reconnect (to the other worker or the respawned one), and commands still reach them:
a session start (RemoteStartTransaction, then billed at the stop) and a hold now
(ReserveNow) on every charger, from requests landing on either worker. The server itself
stays up, `/health/ready` answers on every worker.

The arq worker `kill -9`ed in the middle of a batch is tests/notifications/
test_worker_faults.py (`test_kill_9_in_the_middle_of_100_alerts_loses_none_and_doubles_at_most_one`)."""

from __future__ import annotations

import os
import signal
import time

import asyncpg
import pytest

from app.core.settings import Settings
from app.payments.localstripe import LocalStripe
from tests.faults.helpers import service_env, stripe_env, until
from tests.faults.test_redis import reserve_and_cancel, start_and_stop
from tests.faults.world import world_served
from tests.servers import worker_pids

pytestmark = pytest.mark.timeout(150)

CHARGERS = ["CP-K1", "CP-K2", "CP-K3", "CP-K4"]


async def test_chargers_of_a_killed_api_worker_reconnect_and_commands_reach_them(
    db: asyncpg.Connection, settings: Settings, localstripe: LocalStripe
) -> None:
    env = service_env(settings, **stripe_env(localstripe.api_base))
    async with world_served(env, db, settings) as (world, api, probe):
        await world.open(CHARGERS)
        holders = await world.spread(api)
        workers = set(worker_pids(api))
        assert set(holders.values()) == workers, (holders, workers)
        drivers = [await world.driver() for _ in CHARGERS]

        victim = holders[CHARGERS[0]]
        assert victim is not None
        orphans = [cpid for cpid, pid in holders.items() if pid == victim]
        counts = {cpid: world.sims[cpid].connection_count for cpid in orphans}

        # --- kill -9 the worker holding CHARGERS[0] (and maybe others)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()

        async def reconnected() -> bool:
            return all(
                world.sims[c].online and world.sims[c].connection_count > counts[c] for c in orphans
            )

        await until(reconnected, within_s=20, what=f"{orphans} reconnected", log=api)
        reconnect_s = time.monotonic() - killed_at
        assert api.alive(), api.output()  # granian did not go down with its worker

        async def respawned() -> bool:
            pids = set(worker_pids(api))
            return len(pids) == 2 and victim not in pids

        await until(respawned, within_s=20, what="the worker respawned", log=api)
        await world.wait_online(CHARGERS)

        # --- commands reach every charger, wherever it is now
        now_held = world.holders(api)
        assert victim not in now_held.values(), now_held
        started_at = time.monotonic()
        for i, cpid in enumerate(CHARGERS):
            await start_and_stop(world, drivers[i], cpid)
            await reserve_and_cancel(world, drivers[i], cpid)
        commands_s = time.monotonic() - started_at

        ready = [(await probe.get("/health/ready")).status_code for _ in range(10)]
        assert ready == [200] * 10
        print(
            f"\nkilled worker {victim} holding {orphans}: reconnected after "
            f"{reconnect_s:.2f} s; {len(CHARGERS)} sessions (RemoteStart/Stop) and "
            f"{len(CHARGERS)} holds (ReserveNow/CancelReservation) in {commands_s:.1f} s"
        )
