"""Commands reach the charger from any API process (Redis pub/sub), with a timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from app.chargers.central import CommandRouter
from app.chargers.commands import CommandClient, CommandError
from app.core.settings import Settings
from app.sim import SimCharger, connect
from tests.chargers.conftest import PASSWORD, Server, fast_sim, onboard, running_server


@pytest.fixture
async def other(settings: Settings) -> AsyncIterator[Server]:
    """A second API process on the same database and Redis namespace."""
    async with running_server(settings) as srv:
        yield srv


@pytest.fixture
async def sim(server: Server) -> AsyncIterator[SimCharger]:
    await onboard(server)
    charger = await connect(
        server.ocpp_url, "CP-T1", PASSWORD, connectors=[1, 2], options=fast_sim(), timeout_s=10
    )
    yield charger
    await charger.close()


def _router(srv: Server) -> CommandRouter:
    router: CommandRouter = srv.app.state.ocpp_commands
    return router


async def test_commands_from_another_process_reach_the_charger(
    server: Server, other: Server, sim: SimCharger
) -> None:
    router = _router(other)  # the socket is held by `server`, not by `other`
    expiry = (datetime.now(UTC) + timedelta(minutes=15)).isoformat()
    reserve = {"connectorId": 2, "expiryDate": expiry, "idTag": "DRIVER1", "reservationId": 7}
    result = await router.send("CP-T1", "ReserveNow", reserve, timeout_s=5)
    assert result == {"status": "Accepted"}
    await sim.wait_status(2, "Reserved", 5)
    result = await router.send("CP-T1", "CancelReservation", {"reservationId": 7}, timeout_s=5)
    assert result == {"status": "Accepted"}
    result = await router.send(
        "CP-T1", "RemoteStartTransaction", {"connectorId": 1, "idTag": "DRIVER1"}, timeout_s=5
    )
    assert result == {"status": "Accepted"}
    assert ("RemoteStartTransaction", {"connector_id": 1, "id_tag": "DRIVER1"}) in [
        (action, {k: v for k, v in payload.items() if k in ("connector_id", "id_tag")})
        for action, payload in sim.calls_received
    ]


async def test_a_command_the_charger_does_not_answer_times_out(
    server: Server, other: Server, sim: SimCharger
) -> None:
    sim.stop_answering("RemoteStopTransaction")
    with pytest.raises(CommandError) as caught:
        await _router(other).send(
            "CP-T1", "RemoteStopTransaction", {"transactionId": 1234}, timeout_s=0.5
        )
    assert caught.value.code == "Timeout"


async def test_a_command_to_a_charger_nobody_holds_times_out(server: Server) -> None:
    await onboard(server)
    with pytest.raises(CommandError) as caught:
        await _router(server).send(
            "CP-T1", "CancelReservation", {"reservationId": 1}, timeout_s=0.3
        )
    assert caught.value.code == "Timeout"


async def test_without_redis_a_command_fails_at_once_with_a_typed_error() -> None:
    client = CommandClient("redis://127.0.0.1:1/0", "t-unreachable")
    try:
        with pytest.raises(CommandError) as caught:
            await client.remote_start("CP-T1", id_tag="DRIVER1", timeout_s=3)
        assert caught.value.code == "Unreachable"
    finally:
        await client.close()
