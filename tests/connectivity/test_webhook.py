"""POST /webhooks/control-center and the operator's release, on real PostgreSQL: signature
checks, dedupe, IMEI change → quarantined (hidden) → released (shown), SIM deactivated →
offline (hidden) → activated (shown), unknown types stored."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from app.discovery.schemas import NearbyPage
from tests.connectivity.conftest import PUSH_SECRET
from tests.factories import (
    auth,
    bring_online,
    charger,
    eventually,
    import_fleet,
    site,
    staff_token,
)
from tests.standins.control_center import build_push, make_iccid, make_imei, platform_date

Client = AsyncTestClient[Litestar]
URL = "/webhooks/control-center"
ICCID = make_iccid(1)
BASE = {"lat": 52.52, "lon": 13.405}


@pytest.fixture
def token(settings: Settings) -> str:
    return staff_token(settings, roles=(Role.OPERATOR,))


async def push(
    client: Client,
    event_type: str,
    *,
    iccid: str = ICCID,
    secret: bytes = PUSH_SECRET.encode(),
    variant: str = "form",
    event_id: str | None = None,
    timestamp: str | None = None,
    fields: dict[str, str] | None = None,
) -> Any:
    content_type, body = build_push(
        event_type,
        iccid,
        secret=secret,
        variant=variant,
        event_id=event_id,
        timestamp=timestamp,
        fields=fields,
    )
    return await client.post(URL, content=body, headers={"Content-Type": content_type})


async def stored(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM connectivity_push_events"))


async def visible(client: Client) -> int:
    r = await client.get("/v1/chargers/nearby", params=BASE)
    assert r.status_code == 200, r.text
    page = msgspec.json.decode(r.content, type=NearbyPage)
    return sum(len(s.connectors) for s in page.items)


async def onboard(client: Client, token: str, db: asyncpg.Connection) -> str:
    r = await import_fleet(client, token, [site("c", chargers=[charger("CC1", iccid=ICCID)])])
    assert r.status_code == 200, r.text
    await bring_online(db)
    assert await eventually(lambda: _is(client, 2)), "charger never became visible"
    return str(await db.fetchval("SELECT charger_id FROM chargers WHERE charge_point_id='CC1'"))


async def _is(client: Client, n: int) -> bool:
    return await visible(client) == n


async def state_of(db: asyncpg.Connection) -> tuple[str, str]:
    row = await db.fetchrow(
        """SELECT h.state, h.reason FROM charger_connectivity h
           JOIN chargers c USING (charger_id) WHERE c.charge_point_id = 'CC1'"""
    )
    assert row is not None
    return row["state"], row["reason"]


@pytest.mark.parametrize("variant", ["form", "json"])
async def test_good_signature_is_accepted_and_stored(
    client: Client, db: asyncpg.Connection, variant: str
) -> None:
    r = await push(client, "SESSION_STOP", variant=variant, event_id=f"e-{variant}")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "applied"
    row = await db.fetchrow("SELECT * FROM connectivity_push_events")
    assert row is not None
    assert (row["event_id"], row["type"], row["iccid"]) == (f"e-{variant}", "SESSION_STOP", ICCID)
    assert row["processed_at"] is not None


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("bad", {"secret": b"not-the-secret"}),
        ("stale", {"timestamp": platform_date(time.time() - 600)}),
        ("future", {"timestamp": platform_date(time.time() + 600)}),
    ],
)
async def test_bad_or_stale_signature_is_refused(
    client: Client, db: asyncpg.Connection, case: str, kwargs: dict[str, Any]
) -> None:
    for variant in ("form", "json"):
        r = await push(client, "IMEI_CHANGE", variant=variant, **kwargs)
        assert r.status_code == 403, (case, variant, r.text)
        assert r.json()["code"] == "invalid_signature"
    assert await stored(db) == 0


async def test_missing_signature_is_refused(client: Client, db: asyncpg.Connection) -> None:
    ts = platform_date(time.time())
    bodies: list[tuple[str, bytes]] = [
        (
            "application/x-www-form-urlencoded",
            f"eventId=x&eventType=IMEI_CHANGE&timestamp={ts}".encode(),
        ),
        ("application/json", msgspec.json.encode({"eventId": "x", "timestamp": ts, "data": {}})),
        ("application/json", b"not json"),
        ("text/plain", b""),
    ]
    for content_type, body in bodies:
        r = await client.post(URL, content=body, headers={"Content-Type": content_type})
        assert r.status_code == 403, (content_type, body, r.text)
    assert await stored(db) == 0


async def test_duplicate_event_is_applied_once(
    client: Client, token: str, db: asyncpg.Connection
) -> None:
    await onboard(client, token, db)
    ts = platform_date(time.time())
    for _ in range(3):
        r = await push(client, "IMEI_CHANGE", event_id="dup-1", timestamp=ts)
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "duplicate"
    assert await stored(db) == 1
    assert await db.fetchval("SELECT count(*) FROM connectivity_changes") == 1
    assert await db.fetchval("SELECT count(*) FROM operator_alerts") == 1


async def test_signature_reused_by_another_event_is_refused(
    client: Client, db: asyncpg.Connection
) -> None:
    ts = platform_date(time.time())
    assert (await push(client, "SESSION_STOP", event_id="a-1", timestamp=ts)).status_code == 200
    r = await push(client, "IMEI_CHANGE", event_id="a-2", timestamp=ts)
    assert r.status_code == 403
    assert await stored(db) == 1


async def test_imei_change_quarantines_hides_and_release_brings_back(
    client: Client, token: str, db: asyncpg.Connection, settings: Settings
) -> None:
    charger_id = await onboard(client, token, db)
    new_imei = make_imei(42)
    started = time.monotonic()
    r = await push(client, "IMEI_CHANGE", fields={"newImei": new_imei})
    assert r.status_code == 200, r.text
    assert await eventually(lambda: _is(client, 0), within_s=1.0), "still visible after 1 s"
    assert time.monotonic() - started < 1.5
    assert await state_of(db) == ("quarantined", "imei_changed")
    alert = await db.fetchrow("SELECT kind, reason, acknowledged_at FROM operator_alerts")
    assert alert is not None
    assert (alert["kind"], alert["reason"]) == ("quarantine", "imei_changed")
    assert alert["acknowledged_at"] is None
    change = await db.fetchrow(
        "SELECT from_state, to_state, reason, source FROM connectivity_changes"
    )
    assert change is not None
    assert (change["from_state"], change["to_state"], change["reason"]) == (
        "online",
        "quarantined",
        "imei_changed",
    )
    assert change["source"].startswith("push:IMEI_CHANGE:")

    url = f"/admin/v1/fleet/chargers/{charger_id}/release"
    viewer = staff_token(settings, roles=(Role.VIEWER,))
    assert (await client.post(url, headers=auth(viewer))).status_code == 403
    r = await client.post(url, headers=auth(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["released"] is True
    assert body["connectivity"] == "online"
    assert body["bound_imei"] == new_imei
    assert await eventually(lambda: _is(client, 2), within_s=1.0), "not visible after release"
    assert (
        await db.fetchval("SELECT bound_imei FROM chargers WHERE charger_id = $1", charger_id)
        == new_imei
    )
    audit = await db.fetchrow(
        "SELECT action, before, after FROM audit_log WHERE action = 'charger.release'"
    )
    assert audit is not None
    assert audit["before"]["state"] == "quarantined"
    assert audit["after"]["state"] == "online"

    # The same IMEI reported again is no longer a mismatch; an older event is spent.
    old = platform_date(time.time() - 60)
    r = await push(client, "IMEI_CHANGE", timestamp=old, fields={"newImei": new_imei})
    assert r.status_code == 200
    assert await state_of(db) == ("online", "ok")


async def test_sim_deactivated_goes_offline_and_back(
    client: Client, token: str, db: asyncpg.Connection
) -> None:
    await onboard(client, token, db)
    r = await push(
        client, "SIM_STATE_CHANGE", variant="json", fields={"currentState": "DEACTIVATED"}
    )
    assert r.status_code == 200, r.text
    assert await eventually(lambda: _is(client, 0), within_s=1.0)
    assert await state_of(db) == ("offline", "sim_not_activated")
    assert await db.fetchval("SELECT sim_status FROM charger_connectivity") == "DEACTIVATED"

    r = await push(client, "SIM_STATE_CHANGE", fields={"currentState": "ACTIVATED"})
    assert r.status_code == 200, r.text
    assert await eventually(lambda: _is(client, 2), within_s=1.0)
    assert await state_of(db) == ("online", "ok")


async def test_unknown_type_is_stored_and_acknowledged(
    client: Client, token: str, db: asyncpg.Connection
) -> None:
    await onboard(client, token, db)
    r = await push(client, "SOMETHING_NEW", fields={"foo": "bar"})
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "unknown_type"
    row = await db.fetchrow("SELECT type, payload FROM connectivity_push_events")
    assert row is not None
    assert row["type"] == "SOMETHING_NEW"
    assert row["payload"]["data"]["foo"] == "bar"
    assert await state_of(db) == ("online", "test")


async def test_release_of_unknown_charger_is_404(client: Client, token: str) -> None:
    for charger_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        r = await client.post(f"/admin/v1/fleet/chargers/{charger_id}/release", headers=auth(token))
        assert r.status_code == 404, r.text
