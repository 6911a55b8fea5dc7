"""`GET/PATCH /v1/me`: profile, vehicle, SMS alerts, the OCPP idTag."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.settings import Settings
from tests.factories import auth, make_driver

VEHICLE = {"battery_kwh": 77.4, "max_ac_kw": 11, "max_dc_kw": 135, "connector_types": ["CCS2"]}


@pytest.fixture
async def driver(db: asyncpg.Connection, settings: Settings) -> dict[str, str]:
    return await make_driver(db, settings, phone="+4915112345678")


async def patch(client: AsyncTestClient[Litestar], driver: dict[str, str], body: Any) -> Any:
    return await client.patch("/v1/me", json=body, headers=auth(driver["access_token"]))


async def test_profile_of_a_new_driver(
    client: AsyncTestClient[Litestar], driver: dict[str, str]
) -> None:
    r = await client.get("/v1/me", headers=auth(driver["access_token"]))
    assert r.status_code == 200
    me = r.json()
    assert me["driver_id"] == driver["driver_id"]
    assert me["phone"] == "+4915112345678"
    assert me["name"] is None
    assert me["email"] is None
    assert me["vehicle"] is None
    assert me["sms_alerts"] is True
    assert me["sms_opted_out"] is False
    assert re.fullmatch(r"VW[0-9A-F]{18}", me["id_tag"])


async def test_update_vehicle_and_the_rest(
    client: AsyncTestClient[Litestar], driver: dict[str, str], db: asyncpg.Connection
) -> None:
    body = {
        "name": "Ada",
        "email": "ada@example.com",
        "vehicle": {**VEHICLE, "connector_types": ["CCS2", "TYPE2", "CCS2"]},
        "sms_alerts": False,
    }
    r = await patch(client, driver, body)
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["name"] == "Ada"
    assert me["email"] == "ada@example.com"
    assert me["vehicle"] == {**VEHICLE, "max_ac_kw": 11.0, "max_dc_kw": 135.0,
                             "connector_types": ["CCS2", "TYPE2"]}  # fmt: skip
    assert me["sms_alerts"] is False
    row = await db.fetchrow(
        "SELECT vehicle_battery_wh, vehicle_max_ac_w, vehicle_max_dc_w FROM drivers"
    )
    assert tuple(row) == (77_400, 11_000, 135_000)  # integers inside (Wh, W)
    r = await client.get("/v1/me", headers=auth(driver["access_token"]))
    assert r.json() == me


async def test_only_given_fields_change_and_null_clears(
    client: AsyncTestClient[Litestar], driver: dict[str, str]
) -> None:
    await patch(client, driver, {"name": "Ada", "vehicle": VEHICLE})
    r = await patch(client, driver, {"sms_alerts": False})
    assert r.json()["name"] == "Ada"
    assert r.json()["vehicle"]["battery_kwh"] == 77.4
    r = await patch(client, driver, {"vehicle": None, "name": None})
    assert r.json()["vehicle"] is None
    assert r.json()["name"] is None
    assert r.json()["sms_alerts"] is False
    r = await patch(client, driver, {})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"vehicle": {**VEHICLE, "battery_kwh": 0}},
        {"vehicle": {**VEHICLE, "max_dc_kw": -1}},
        {"vehicle": {**VEHICLE, "connector_types": ["SCHUKO"]}},
        {"vehicle": {"battery_kwh": 50}},
        {"vehicle": {**VEHICLE, "colour": "red"}},
        {"email": "not-an-email"},
        {"name": ""},
        {"name": "x" * 101},
        {"sms_alerts": "yes"},
        {"phone": "+4915100000000"},  # the number is the login, not a profile field
        {"id_tag": "MINE"},
    ],
)
async def test_invalid_updates_are_422(
    client: AsyncTestClient[Litestar], driver: dict[str, str], body: dict[str, Any]
) -> None:
    r = await patch(client, driver, body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_failed"


async def test_needs_a_driver_token(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/v1/me")).status_code == 401
    assert (await client.patch("/v1/me", json={"name": "x"})).status_code == 401


async def test_each_driver_has_their_own_id_tag(db: asyncpg.Connection, settings: Settings) -> None:
    for i in range(20):
        await make_driver(db, settings, phone=f"+49151123400{i:02d}")
    tags = await db.fetch("SELECT id_tag FROM drivers")
    assert len({r["id_tag"] for r in tags}) == 20
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(
            "INSERT INTO drivers (phone, id_tag) VALUES ('+4915112349999', $1)",
            tags[0]["id_tag"],
        )
