"""Fleet onboarding: idempotent by external_id / charge_point_id, per-site errors,
JSON and CSV, hashed OCPP passwords, listings."""

from __future__ import annotations

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from app.fleet.service import verify_ocpp_password
from tests.factories import all_pages, auth, charger, import_fleet, site, staff_token


@pytest.fixture
def token(settings: Settings) -> str:
    return staff_token(settings, roles=(Role.OPERATOR,))


async def test_import_creates_then_reimport_changes_nothing(
    client: AsyncTestClient[Litestar], token: str, db: asyncpg.Connection
) -> None:
    sites = [site("s1"), site("s2", chargers=[charger("CP-a"), charger("CP-b")])]
    r = await import_fleet(client, token, sites)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "created": {"sites": 2, "chargers": 3, "connectors": 6},
        "updated": {"sites": 0, "chargers": 0, "connectors": 0},
        "failed": [],
    }
    r = await import_fleet(client, token, sites)
    assert r.json()["created"] == {"sites": 0, "chargers": 0, "connectors": 0}
    assert r.json()["updated"] == {"sites": 0, "chargers": 0, "connectors": 0}
    assert await db.fetchval("SELECT count(*) FROM connectors") == 6
    # every new charger starts offline / never_connected, so it is hidden from drivers
    states = await db.fetch("SELECT state, reason FROM charger_connectivity")
    assert {(s["state"], s["reason"]) for s in states} == {("offline", "never_connected")}


async def test_changes_are_updates(
    client: AsyncTestClient[Litestar], token: str, db: asyncpg.Connection
) -> None:
    await import_fleet(client, token, [site("s1")])
    changed = site(
        "s1",
        name="Renamed",
        chargers=[
            charger(
                "CP-s1",
                connectors=[
                    {"connector_no": 1, "type": "CCS2", "power_kw": 300},
                    {"connector_no": 2, "type": "TYPE2", "power_kw": 22},
                    {"connector_no": 3, "type": "CHADEMO", "power_kw": 50},
                ],
            )
        ],
    )
    r = await import_fleet(client, token, [changed])
    assert r.json()["created"] == {"sites": 0, "chargers": 0, "connectors": 1}
    assert r.json()["updated"] == {"sites": 1, "chargers": 0, "connectors": 1}
    assert await db.fetchval("SELECT name FROM sites WHERE external_id = 's1'") == "Renamed"
    assert await db.fetchval("SELECT power_w FROM connectors WHERE connector_no = 1") == 300_000


async def test_bad_sites_are_reported_and_good_ones_applied(
    client: AsyncTestClient[Litestar], token: str, db: asyncpg.Connection
) -> None:
    sites = [
        site("good-1"),
        site("bad-lat", lat=123.0),
        site("bad-tz", timezone="Mars/Olympus"),
        site(
            "bad-type",
            chargers=[
                charger("CP-x", connectors=[{"connector_no": 1, "type": "SCHUKO", "power_kw": 3.7}])
            ],
        ),
        site("dup-cp", chargers=[charger("CP-good-1")]),  # CP-good-1 is good-1's charger
        site("short-pw", chargers=[charger("CP-y", password="short")]),
        site(
            "dup-conn",
            chargers=[
                charger(
                    "CP-z",
                    connectors=[
                        {"connector_no": 1, "type": "CCS2", "power_kw": 50},
                        {"connector_no": 1, "type": "CCS2", "power_kw": 50},
                    ],
                )
            ],
        ),
        site("good-2"),
    ]
    r = await import_fleet(client, token, sites)
    assert r.status_code == 200
    body = r.json()
    assert body["created"]["sites"] == 2
    failed = {f["index"]: f for f in body["failed"]}
    assert sorted(failed) == [1, 2, 3, 4, 5, 6]
    assert failed[1]["external_id"] == "bad-lat"
    assert failed[1]["errors"][0]["field"] == "lat"
    assert failed[2]["errors"] == [{"field": "timezone", "message": "not an IANA time zone name"}]
    assert failed[3]["errors"][0]["field"] == "chargers[0].connectors[0].type"
    assert failed[4]["errors"][0]["field"] == "chargers[0].charge_point_id"
    assert failed[5]["errors"][0]["field"] == "chargers[0].ocpp_password"
    assert failed[6]["errors"][0]["field"] == "chargers[0].connectors[1].connector_no"
    names = {r["external_id"] for r in await db.fetch("SELECT external_id FROM sites")}
    assert names == {"good-1", "good-2"}


async def test_iccid_of_another_charger_is_refused(
    client: AsyncTestClient[Litestar], token: str
) -> None:
    iccid = "8949010000000000001"
    await import_fleet(client, token, [site("s1", chargers=[charger("CP-1", iccid=iccid)])])
    r = await import_fleet(client, token, [site("s2", chargers=[charger("CP-2", iccid=iccid)])])
    assert r.json()["failed"][0]["errors"][0]["field"] == "iccid"
    # the same charger keeping its own SIM is fine
    r = await import_fleet(client, token, [site("s1", chargers=[charger("CP-1", iccid=iccid)])])
    assert r.json()["failed"] == []


async def test_malformed_envelope_is_422(client: AsyncTestClient[Litestar], token: str) -> None:
    r = await client.post("/admin/v1/fleet/import", json={"sitez": []}, headers=auth(token))
    assert r.status_code == 422
    r = await client.post(
        "/admin/v1/fleet/import",
        content=b"[",
        headers={**auth(token), "content-type": "application/json"},
    )
    assert r.status_code == 422
    r = await client.post(
        "/admin/v1/fleet/import",
        content=b"x",
        headers={**auth(token), "content-type": "application/xml"},
    )
    assert r.status_code == 415


async def test_passwords_are_stored_hashed(
    client: AsyncTestClient[Litestar], token: str, db: asyncpg.Connection
) -> None:
    await import_fleet(client, token, [site("s1", chargers=[charger("CP-1", password="p" * 20)])])
    stored = await db.fetchval("SELECT ocpp_password_hash FROM chargers")
    assert "p" * 20 not in stored
    assert verify_ocpp_password("CP-1", "p" * 20, stored)
    assert not verify_ocpp_password("CP-1", "q" * 20, stored)
    assert not verify_ocpp_password("CP-2", "p" * 20, stored)


CSV = """external_id,name,address,lat,lon,timezone,charge_point_id,ocpp_password,iccid,connector_no,type,power_kw
c1,CSV One,Main St 1,48.85,2.35,Europe/Paris,CSV-1,csv-password-000001,,1,CCS2,150
c1,CSV One,Main St 1,48.85,2.35,Europe/Paris,CSV-1,csv-password-000001,,2,TYPE2,22
c1,CSV One,Main St 1,48.85,2.35,Europe/Paris,CSV-2,csv-password-000002,89330100000000000001,1,CCS2,50
c2,CSV Bad,Main St 2,north,2.35,Europe/Paris,CSV-3,csv-password-000003,,1,CCS2,50
"""


async def test_csv_import(
    client: AsyncTestClient[Litestar], token: str, db: asyncpg.Connection
) -> None:
    r = await client.post(
        "/admin/v1/fleet/import",
        content=CSV.encode(),
        headers={**auth(token), "content-type": "text/csv"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] == {"sites": 1, "chargers": 2, "connectors": 3}
    assert [(f["index"], f["external_id"], f["errors"][0]["field"]) for f in body["failed"]] == [
        (1, "c2", "lat")
    ]
    assert await db.fetchval("SELECT iccid FROM chargers WHERE charge_point_id = 'CSV-2'") == (
        "89330100000000000001"
    )


async def test_listing_sites_and_chargers(client: AsyncTestClient[Litestar], token: str) -> None:
    await import_fleet(client, token, [site(f"s{i}") for i in range(5)])
    r = await client.get("/admin/v1/fleet/sites?external_id=s3", headers=auth(token))
    items = r.json()["items"]
    assert [i["external_id"] for i in items] == ["s3"]
    assert items[0]["chargers"][0]["charge_point_id"] == "CP-s3"
    assert [c["connector_no"] for c in items[0]["chargers"][0]["connectors"]] == [1, 2]
    assert items[0]["chargers"][0]["connectors"][0]["power_kw"] == 150
    # keyset pagination walks every site once
    every = await all_pages(client, "/admin/v1/fleet/sites", headers=auth(token))
    assert [i["external_id"] for i in every] == [f"s{i}" for i in range(5)]
    r = await client.get("/admin/v1/fleet/chargers?connectivity=offline", headers=auth(token))
    assert len(r.json()["items"]) == 5
    assert r.json()["items"][0]["connectivity_reason"] == "never_connected"
    r = await client.get("/admin/v1/fleet/chargers?connectivity=online", headers=auth(token))
    assert r.json()["items"] == []
    r = await client.get("/admin/v1/fleet/sites?cursor=not-a-cursor", headers=auth(token))
    assert r.status_code == 422


async def test_import_is_audited(client: AsyncTestClient[Litestar], token: str) -> None:
    await import_fleet(client, token, [site("s1")])
    r = await client.get("/admin/v1/audit-log?entity_type=fleet", headers=auth(token))
    entry = r.json()["items"][0]
    assert entry["action"] == "fleet.import"
    assert entry["actor_type"] == "staff"
    assert entry["after"]["created"]["sites"] == 1
