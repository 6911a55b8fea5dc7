"""A BootNotification naming another SIM than the registered one, from a simulated charger
over a real WebSocket: quarantined (hidden from search, an operator alert), and the
operator's release registers the new SIM and brings the charger back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.core.auth import Role
from app.core.settings import Settings
from app.sim import connect
from tests.chargers.conftest import PASSWORD, Server, fast_sim, onboard, running_server
from tests.factories import auth, charger, eventually, import_fleet, site, staff_token
from tests.standins.control_center import make_iccid

NEAR = {"lat": 52.52, "lon": 13.405, "radius_m": 5000}
REGISTERED = make_iccid(31)
OTHER = make_iccid(32)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Server]:
    async with running_server(settings) as srv:
        yield srv


async def shown(srv: Server, cpid: str = "CP-T1") -> int:
    r = await srv.http.get("/v1/chargers/nearby", params=NEAR)
    assert r.status_code == 200, r.text
    return sum(len(s["connectors"]) for s in r.json()["items"] if s["name"] == f"Site S-{cpid}")


async def health(db: asyncpg.Connection, cpid: str = "CP-T1") -> tuple[str, str]:
    row = await db.fetchrow(
        """SELECT h.state, h.reason FROM charger_connectivity h
           JOIN chargers c USING (charger_id) WHERE c.charge_point_id = $1""",
        cpid,
    )
    assert row is not None
    return row["state"], row["reason"]


async def decided_again(db: asyncpg.Connection, cpid: str = "CP-T1", times: int = 2) -> None:
    """Wait until the central system has handled `times` more messages of the charger: each
    heartbeat touches `last_seen_at` and re-decides the state in the same transaction, so
    what the state is afterwards is what those messages made of it."""
    seen: list[object] = []

    async def advanced() -> bool:
        at = await db.fetchval(
            """SELECT h.last_seen_at FROM charger_connectivity h
               JOIN chargers c USING (charger_id) WHERE c.charge_point_id = $1""",
            cpid,
        )
        if not seen or at != seen[-1]:
            seen.append(at)
        return len(seen) > times

    assert await eventually(advanced, within_s=5), "the charger's heartbeats were not handled"


async def test_iccid_mismatch_quarantines_alerts_and_release_brings_back(
    server: Server, db: asyncpg.Connection
) -> None:
    await onboard(server, iccid=REGISTERED)
    token = staff_token(server.settings, roles=(Role.OPERATOR,))
    sim = await connect(
        server.ocpp_url,
        "CP-T1",
        PASSWORD,
        connectors=[1, 2],
        iccid=OTHER,
        heartbeat_override=0.1,
        options=fast_sim(),
        timeout_s=10,
    )
    try:
        assert await health(db) == ("quarantined", "iccid_mismatch")
        assert await shown(server) == 0
        await sim.send_meter_values(1, energy_wh=10)
        await decided_again(db)  # heartbeats from the charger change nothing
        assert await health(db) == ("quarantined", "iccid_mismatch")

        r = await server.http.get(
            "/admin/v1/alerts", params={"kind": "quarantine"}, headers=auth(token)
        )
        assert r.status_code == 200, r.text
        [alert] = r.json()["items"]
        assert (alert["charge_point_id"], alert["reason"]) == ("CP-T1", "iccid_mismatch")
        change = await db.fetchrow(
            "SELECT to_state, reason, source FROM connectivity_changes ORDER BY id DESC"
        )
        assert change is not None
        assert tuple(change.values()) == ("quarantined", "iccid_mismatch", "ocpp")

        charger_id = await db.fetchval(
            "SELECT charger_id FROM chargers WHERE charge_point_id = 'CP-T1'"
        )
        r = await server.http.post(
            f"/admin/v1/fleet/chargers/{charger_id}/release", headers=auth(token)
        )
        assert r.status_code == 200, r.text
        assert (r.json()["released"], r.json()["connectivity"]) == (True, "online")
        assert await eventually(lambda: _shown_is(server, 2), within_s=1.0), "not back in 1 s"
        assert await db.fetchval(
            "SELECT iccid FROM chargers WHERE charger_id = $1", charger_id
        ) == (OTHER)
        audit = await db.fetchrow(
            "SELECT before, after FROM audit_log WHERE action = 'charger.release'"
        )
        assert audit is not None
        assert (audit["before"]["iccid"], audit["after"]["iccid"]) == (REGISTERED, OTHER)
        await decided_again(db)  # heartbeats keep it online
        assert await health(db) == ("online", "ok")
    finally:
        await sim.close()


async def test_a_sim_registered_to_another_charger_quarantines_and_cannot_be_released_onto_it(
    server: Server, db: asyncpg.Connection
) -> None:
    """CP-T1 has no SIM registered and boots with CP-T2's: quarantined; releasing it would
    register one SIM twice, so the release is refused (409) and the quarantine stays."""
    await onboard(server)
    token = staff_token(server.settings, roles=(Role.ADMIN,))
    r = await import_fleet(
        server.http,  # type: ignore[arg-type]
        token,
        [site("S-CP-T2", chargers=[charger("CP-T2", password=PASSWORD, iccid=OTHER)])],
    )
    assert r.status_code == 200, r.text
    sim = await connect(
        server.ocpp_url, "CP-T1", PASSWORD, connectors=[1, 2], iccid=OTHER, options=fast_sim()
    )
    try:
        assert await health(db) == ("quarantined", "iccid_mismatch")
        charger_id = await db.fetchval(
            "SELECT charger_id FROM chargers WHERE charge_point_id = 'CP-T1'"
        )
        r = await server.http.post(
            f"/admin/v1/fleet/chargers/{charger_id}/release", headers=auth(token)
        )
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "iccid_in_use"
        assert await health(db) == ("quarantined", "iccid_mismatch")
        assert await shown(server) == 0
    finally:
        await sim.close()


async def _shown_is(srv: Server, n: int) -> bool:
    return await shown(srv) == n
