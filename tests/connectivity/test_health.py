"""One decider (`settle`) across every signal, on real PostgreSQL: missed heartbeats and a
socket down past the grace found by the link sweep (a controllable clock), long outages
alerted once, flapping, degraded events, out-of-order pushes, and `GET /admin/v1/alerts`."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.chargers import service as chargers
from app.connectivity import alerts
from app.connectivity import service as connectivity
from app.connectivity.tasks import sweep_links
from app.core.auth import Role
from app.core.clock import FixedClock
from app.core.db import create_pool
from app.core.settings import Settings
from tests.connectivity.test_webhook import _is, onboard, push, state_of, visible
from tests.factories import all_pages, auth, charger, eventually, import_fleet, site, staff_token
from tests.standins.control_center import make_iccid, platform_date

Client = AsyncTestClient[Litestar]
ICCID = make_iccid(21)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings)
    connectivity.register(pool, settings)
    yield pool
    connectivity.unregister(pool)
    await pool.close()


@pytest.fixture
def token(settings: Settings) -> str:
    return staff_token(settings, roles=(Role.OPERATOR,))


def at(settings: Settings, pool: asyncpg.Pool, when: datetime) -> dict[str, Any]:
    """An arq job context whose clock says `when`."""
    return {"settings": settings, "pool": pool, "clock": FixedClock(when)}


async def booted(
    client: Client, token: str, db: asyncpg.Connection, pool: asyncpg.Pool, now: datetime
) -> chargers.ChargerIdentity:
    """Onboard H1 and record, through the OCPP handlers' own functions, a socket and a
    BootNotification at `now`."""
    r = await import_fleet(client, token, [site("h", chargers=[charger("H1", iccid=ICCID)])])
    assert r.status_code == 200, r.text
    await db.execute("UPDATE connectors SET status = 'AVAILABLE'")
    charger_id = await db.fetchval("SELECT charger_id FROM chargers WHERE charge_point_id = 'H1'")
    ident = chargers.ChargerIdentity(charger_id, "H1", ICCID)
    await chargers.connected(pool, ident, uuid.uuid4())
    state = await chargers.boot(
        pool, ident, {"charge_point_vendor": "V", "charge_point_model": "M", "iccid": ICCID}, now
    )
    assert state == "online"
    assert await eventually(lambda: _is(client, 2), within_s=1.0), "never visible"
    return ident


async def health(db: asyncpg.Connection) -> tuple[str, str]:
    row = await db.fetchrow("SELECT state, reason FROM charger_connectivity")
    assert row is not None
    return row["state"], row["reason"]


async def test_missed_heartbeats_go_offline_come_back_and_a_long_outage_alerts_once(
    client: Client,
    token: str,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    t0 = datetime.now(UTC)
    ident = await booted(client, token, db, pool, t0)
    # 2.5 × the 60 s interval = 150 s without a heartbeat
    assert (await sweep_links(at(settings, pool, t0 + timedelta(seconds=149))))["changed"] == 0
    assert await health(db) == ("online", "ok")

    t1 = t0 + timedelta(seconds=151)
    result = await sweep_links(at(settings, pool, t1))
    assert (result["due"], result["changed"]) == (1, 1)
    assert await health(db) == ("offline", "heartbeat_missed")
    assert await eventually(lambda: _is(client, 0), within_s=1.0), "still shown after 1 s"
    change = await db.fetchrow(
        "SELECT at, from_state, to_state, reason, source FROM connectivity_changes ORDER BY id DESC"
    )
    assert change is not None
    assert (change["at"], change["from_state"], change["to_state"]) == (t1, "online", "offline")
    assert (change["reason"], change["source"]) == ("heartbeat_missed", "sweep:link")

    # OFFLINE_ALERT_AFTER_S (15 min) into the outage: one alert, however often the sweep runs
    after = settings.offline_alert_after_s
    late = t1 + timedelta(seconds=after - 1)
    assert (await sweep_links(at(settings, pool, late)))["alerts"] == 0
    for extra in (1, 60, 600):
        when = t1 + timedelta(seconds=after + extra)
        result = await sweep_links(at(settings, pool, when))
        assert result["alerts"] == (1 if extra == 1 else 0)
    r = await client.get("/admin/v1/alerts", params={"kind": "offline"}, headers=auth(token))
    assert r.status_code == 200, r.text
    [alert] = r.json()["items"]
    assert (alert["charge_point_id"], alert["kind"], alert["reason"]) == (
        "H1",
        "offline",
        "heartbeat_missed",
    )
    assert alert["delivered_at"] is None
    metrics = (await client.get("/metrics")).text
    assert 'operator_alerts_raised_total{kind="offline"}' in metrics
    assert "operator_alerts_open 1.0" in metrics

    # the next heartbeat brings it back; a new outage later alerts again
    await chargers.heartbeat(pool, ident, t1 + timedelta(seconds=after + 700))
    assert await health(db) == ("online", "ok")
    assert await eventually(lambda: _is(client, 2), within_s=1.0), "not back after 1 s"
    t2 = t1 + timedelta(seconds=after + 700 + 151)
    assert (await sweep_links(at(settings, pool, t2)))["changed"] == 1
    result = await sweep_links(at(settings, pool, t2 + timedelta(seconds=after + 1)))
    assert result["alerts"] == 1
    assert await db.fetchval("SELECT count(*) FROM operator_alerts WHERE kind = 'offline'") == 2


async def test_heartbeat_factor_and_interval_are_configurable(
    client: Client,
    token: str,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    t0 = datetime.now(UTC)
    await booted(client, token, db, pool, t0)
    quick = msgspec.structs.replace(
        settings, ocpp_heartbeat_interval_s=10, connectivity_heartbeat_factor=2.0
    )
    assert (await sweep_links(at(quick, pool, t0 + timedelta(seconds=19))))["changed"] == 0
    assert (await sweep_links(at(quick, pool, t0 + timedelta(seconds=21))))["changed"] == 1
    assert await health(db) == ("offline", "heartbeat_missed")


async def test_socket_down_past_the_grace_is_found_by_the_sweep(
    client: Client,
    token: str,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    """The process holding the socket died before its grace timer fired: the sweep
    settles the charger offline once the grace (60 s) has passed."""
    t0 = datetime.now(UTC)
    ident = await booted(client, token, db, pool, t0)
    link = uuid.uuid4()
    await chargers.connected(pool, ident, link)
    assert await chargers.disconnected(pool, ident, link)
    down = await db.fetchval("SELECT disconnected_at FROM ocpp_links")
    grace = settings.ocpp_offline_grace_s
    assert (await sweep_links(at(settings, pool, down + timedelta(seconds=grace - 1))))[
        "changed"
    ] == 0
    assert await health(db) == ("online", "ok")
    assert (await sweep_links(at(settings, pool, down + timedelta(seconds=grace + 1))))[
        "changed"
    ] == 1
    assert await health(db) == ("offline", "socket_down")
    assert await eventually(lambda: _is(client, 0), within_s=1.0)
    # the charger reconnects: its first heartbeat brings it back
    await chargers.connected(pool, ident, uuid.uuid4())
    await chargers.heartbeat(pool, ident, datetime.now(UTC))
    assert await health(db) == ("online", "ok")


async def test_a_link_signal_never_lifts_a_platform_verdict(
    client: Client,
    token: str,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
) -> None:
    """A heartbeat settles from every signal: a deactivated SIM keeps the charger offline."""
    ident = await booted(client, token, db, pool, datetime.now(UTC))
    r = await push(client, "SIM_STATE_CHANGE", iccid=ICCID, fields={"currentState": "DEACTIVATED"})
    assert r.status_code == 200, r.text
    assert await health(db) == ("offline", "sim_not_activated")
    await chargers.heartbeat(pool, ident, datetime.now(UTC))
    assert await health(db) == ("offline", "sim_not_activated")
    assert not await visible(client)


async def test_flapping_connections_raise_one_alert_per_window(
    client: Client,
    token: str,
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    ident = await booted(client, token, db, pool, datetime.now(UTC))  # 1 connection
    for _ in range(settings.connectivity_flap_threshold + 3):
        await chargers.connected(pool, ident, uuid.uuid4())
    rows = await db.fetch("SELECT kind, reason, detail FROM operator_alerts")
    assert [(r["kind"], r["reason"]) for r in rows] == [("flapping", "reconnects")]
    assert rows[0]["detail"]["connections"] == settings.connectivity_flap_threshold
    assert await health(db) == ("online", "ok")  # an alert, not a verdict


async def test_data_usage_event_degrades_keeps_it_shown_and_alerts(
    client: Client, token: str, db: asyncpg.Connection
) -> None:
    await onboard(client, token, db)
    r = await push(client, "CTD_SESSION_USAGE_EXCEEDED", fields={"dataUsage": "987654321"})
    assert r.status_code == 200, r.text
    assert await state_of(db) == ("degraded", "data_usage_exceeded")
    assert await visible(client) == 2  # degraded stays visible
    r = await client.get("/admin/v1/alerts", params={"kind": "degraded"}, headers=auth(token))
    [alert] = r.json()["items"]
    assert alert["reason"] == "data_usage_exceeded"
    assert alert["detail"]["event_type"] == "CTD_SESSION_USAGE_EXCEEDED"


async def test_out_of_order_events_do_not_undo_newer_ones(
    client: Client, token: str, db: asyncpg.Connection
) -> None:
    await onboard(client, token, db)
    now = time.time()
    r = await push(
        client,
        "SIM_STATE_CHANGE",
        timestamp=platform_date(now),
        fields={"currentState": "DEACTIVATED"},
    )
    assert r.json()["outcome"] == "state_changed"
    # an older ACTIVATED delivered late: recorded, but the newer DEACTIVATED stands
    r = await push(
        client,
        "SIM_STATE_CHANGE",
        timestamp=platform_date(now - 30),
        fields={"currentState": "ACTIVATED"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "recorded"
    assert await state_of(db) == ("offline", "sim_not_activated")
    assert await visible(client) == 0
    r = await push(
        client,
        "SIM_STATE_CHANGE",
        timestamp=platform_date(now + 1),
        fields={"currentState": "ACTIVATED"},
    )
    assert r.json()["outcome"] == "state_changed"
    assert await state_of(db) == ("online", "ok")

    # sessions: a late SESSION_START older than the SESSION_STOP leaves the session ended
    ended = platform_date(now - 3600)
    assert ended is not None
    r = await push(
        client,
        "SESSION_STOP",
        timestamp=platform_date(now + 2),
        fields={"dateSessionEnded": ended},
    )
    assert r.status_code == 200, r.text
    assert await state_of(db) == ("offline", "no_data_session")  # ended > OFFLINE_AFTER ago
    r = await push(client, "SESSION_START", timestamp=platform_date(now - 5))
    assert r.json()["outcome"] == "recorded"
    assert await state_of(db) == ("offline", "no_data_session")
    r = await push(client, "SESSION_START", timestamp=platform_date(now + 3))
    assert r.json()["outcome"] == "state_changed"
    assert await state_of(db) == ("online", "ok")
    assert await eventually(lambda: _is(client, 2), within_s=1.0)


async def test_alert_listing_pages_and_filters(
    client: Client, token: str, db: asyncpg.Connection
) -> None:
    charger_id = uuid.UUID(await onboard(client, token, db))
    now = datetime.now(UTC)
    for i, kind in enumerate(("quarantine", "offline", "flapping")):
        assert await alerts.raise_alert(
            db, charger_id, kind, "r", dedupe_key=f"k{i}", at=now + timedelta(seconds=i)
        )
    assert not await alerts.raise_alert(db, charger_id, "offline", "r", dedupe_key="k1", at=now)
    items = await all_pages(client, "/admin/v1/alerts", headers=auth(token))
    assert [a["kind"] for a in items] == ["flapping", "offline", "quarantine"]  # newest first

    await db.execute("UPDATE operator_alerts SET acknowledged_at = now() WHERE kind = 'offline'")
    r = await client.get("/admin/v1/alerts", params={"open": "true"}, headers=auth(token))
    assert [a["kind"] for a in r.json()["items"]] == ["flapping", "quarantine"]
    for bad in ({"kind": "nonsense"}, {"cursor": "not-a-cursor"}, {"limit": 0}):
        r = await client.get("/admin/v1/alerts", params=bad, headers=auth(token))
        assert r.status_code == 422, (bad, r.text)
