"""Commands across OS processes: the API runs in a granian subprocess that holds the
charger's WebSocket; this test process asks through Redis only, as an arq worker does
(app.chargers.commands.CommandClient), and gets a typed answer or a timeout."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from app.chargers.commands import CommandClient, CommandError, RemoteStartResult
from app.core.auth import Role
from app.core.settings import Settings
from app.sim import SimCharger, connect
from tests.chargers.conftest import PASSWORD, fast_sim
from tests.factories import (
    charger,
    eventually,
    import_fleet,
    make_driver,
    make_held_session,
    site,
    staff_token,
)
from tests.servers import granian_app


@dataclass
class ApiProcess:
    http: httpx.AsyncClient
    ocpp_url: str


@pytest.fixture
async def api_process(settings: Settings) -> AsyncIterator[ApiProcess]:
    """The app in its own OS process (granian, one worker) on the test's DB and Redis."""
    async with (
        granian_app(
            settings.database_url,
            settings.redis_url,
            workers=1,
            env={"REDIS_NAMESPACE": settings.redis_namespace},
        ) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        token = staff_token(settings, roles=(Role.ADMIN,))
        r = await import_fleet(
            http,  # type: ignore[arg-type]
            token,
            [site("S-CP-X1", chargers=[charger("CP-X1", password=PASSWORD)])],
        )
        assert r.status_code == 200, r.text
        yield ApiProcess(http, base.replace("http://", "ws://") + "/ocpp")


@pytest.fixture
async def commands(settings: Settings) -> AsyncIterator[CommandClient]:
    """The asking side as a worker process has it: Redis only, no app, no socket."""
    client = CommandClient(settings.redis_url, settings.redis_namespace)
    yield client
    await client.close()


@pytest.fixture
async def sim(api_process: ApiProcess) -> AsyncIterator[SimCharger]:
    charger_ = await connect(
        api_process.ocpp_url, "CP-X1", PASSWORD, connectors=[1, 2], options=fast_sim()
    )
    yield charger_
    await charger_.close()


async def test_remote_start_and_stop_from_another_os_process(
    api_process: ApiProcess,
    sim: SimCharger,
    commands: CommandClient,
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    driver = await make_driver(db, settings)
    id_tag = await db.fetchval(
        "SELECT id_tag FROM drivers WHERE driver_id = $1::uuid", driver["driver_id"]
    )
    # The app's start left a STARTING session with its hold in place (app/sessions).
    await make_held_session(db, driver_id=driver["driver_id"], charge_point_id="CP-X1")
    result = await commands.remote_start("CP-X1", id_tag=id_tag, connector_id=2, timeout_s=5)
    assert result == RemoteStartResult(status="Accepted")
    assert ("RemoteStartTransaction", {"id_tag": id_tag, "connector_id": 2}) in sim.calls_received

    # The charger then starts the transaction, which the API process records.
    async def session() -> asyncpg.Record | None:
        return await db.fetchrow(
            "SELECT transaction_id, status, driver_id FROM charging_sessions "
            "WHERE connector_no = 2 AND ended_at IS NULL"
        )

    row = await eventually(session, within_s=5)
    assert row is not None
    assert (row["status"], str(row["driver_id"])) == ("CHARGING", driver["driver_id"])

    stop = await commands.remote_stop("CP-X1", transaction_id=row["transaction_id"], timeout_s=5)
    assert stop.status == "Accepted"

    async def closed() -> bool:
        return bool(
            await db.fetchval(
                "SELECT status = 'COMPLETED' AND ended_at IS NOT NULL FROM charging_sessions "
                "WHERE transaction_id = $1",
                row["transaction_id"],
            )
        )

    assert await eventually(closed, within_s=5)


async def test_a_charger_that_does_not_answer_times_out_across_processes(
    api_process: ApiProcess, sim: SimCharger, commands: CommandClient
) -> None:
    sim.stop_answering("RemoteStartTransaction")
    started = time.monotonic()
    with pytest.raises(CommandError) as caught:
        await commands.remote_start("CP-X1", id_tag="DRIVER1", connector_id=1, timeout_s=1)
    assert caught.value.code == "Timeout"
    assert 0.9 < time.monotonic() - started < 3
    # The charger stays usable: the next command gets its answer.
    sim.resume_answering()
    result = await commands.cancel_reservation("CP-X1", reservation_id=99, timeout_s=5)
    assert result.status == "Rejected"  # no such reservation on the charger
