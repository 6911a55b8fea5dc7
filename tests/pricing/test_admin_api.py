"""Admin tariff API through HTTP: publish, new versions (old ones kept), list/get,
assignments, timeline, validation 422s without half-writes, and the audit trail."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from app.pricing import engine
from app.pricing.service import (
    Assignment,
    effective_at,
    periods,
    tariff_for_session,
    tariff_version,
)
from tests.factories import all_pages, auth, import_fleet, site, staff_token

Client = AsyncTestClient[Litestar]

PEAK_OFFPEAK: dict[str, Any] = {
    "name": "Berlin peak/off-peak",
    "currency": "EUR",
    "vat_percent": "19",
    "elements": [
        {
            "price_components": [{"type": "ENERGY", "price": "0.60", "step_size": 1}],
            "restrictions": {"start_time": "17:00", "end_time": "21:00"},
        },
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.40", "step_size": 1},
                {"type": "PARKING_TIME", "price": "6.00", "step_size": 60},
            ]
        },
    ],
}


@pytest.fixture
def headers(settings: Settings) -> dict[str, str]:
    return auth(staff_token(settings, roles=(Role.PRICING_ADMIN,), staff_id="pricer"))


async def publish(client: Client, headers: dict[str, str], body: dict[str, Any]) -> str:
    r = await client.post("/admin/v1/tariffs", json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    tariff_id: str = r.json()["tariff_id"]
    return tariff_id


async def test_publish_new_version_keeps_the_old_one(
    client: Client, headers: dict[str, str]
) -> None:
    tid = await publish(client, headers, PEAK_OFFPEAK)
    cheaper = copy.deepcopy(PEAK_OFFPEAK)
    cheaper["elements"][1]["price_components"][0]["price"] = "0.35"
    r = await client.put(f"/admin/v1/tariffs/{tid}", json=cheaper, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"tariff_id": tid, "version": 2}

    r = await client.get(f"/admin/v1/tariffs/{tid}", headers=headers)
    assert r.status_code == 200
    current = r.json()
    assert current["version"] == 2
    assert current["elements"][1]["price_components"][0]["price"] == "0.35"

    r = await client.get(f"/admin/v1/tariffs/{tid}", params={"version": 1}, headers=headers)
    assert r.status_code == 200
    old = r.json()
    assert old["version"] == 1
    assert old["elements"][1]["price_components"][0]["price"] == "0.40"
    assert old["elements"][0] == PEAK_OFFPEAK["elements"][0]
    assert old["elements"][1]["restrictions"] is None  # none given: applies always

    r = await client.get(f"/admin/v1/tariffs/{tid}", params={"version": 3}, headers=headers)
    assert r.status_code == 404
    assert r.json()["code"] == "tariff_not_found"


async def test_versions_are_immutable_in_the_database(
    client: Client, headers: dict[str, str], db: asyncpg.Connection
) -> None:
    tid = await publish(client, headers, PEAK_OFFPEAK)
    with pytest.raises(asyncpg.RaiseError, match="immutable"):
        await db.execute("UPDATE tariff_versions SET vat_percent = '0' WHERE tariff_id = $1", tid)


async def test_list_is_paginated_newest_first(client: Client, headers: dict[str, str]) -> None:
    ids = []
    for n in range(3):
        body = {**PEAK_OFFPEAK, "name": f"T{n}"}
        ids.append(await publish(client, headers, body))
    items = await all_pages(client, "/admin/v1/tariffs", headers=headers)
    assert [t["name"] for t in items] == ["T2", "T1", "T0"]
    r = await client.get("/admin/v1/tariffs", params={"cursor": "nonsense"}, headers=headers)
    assert r.status_code == 422


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(PEAK_OFFPEAK)
    node: Any = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_with(["elements", 0, "restrictions", "start_time"], "25:00"), "start_time"),
        (_with(["elements", 0, "restrictions", "end_time"], "7pm"), "end_time"),
        (
            _with(["elements", 0, "restrictions", "end_time"], "17:00"),
            "elements[0].restrictions.end_time",
        ),
        (
            _with(["elements", 1, "price_components", 0, "price"], "-0.40"),
            "elements[1].price_components[0].price",
        ),
        (_with(["currency"], "XYZ"), "currency"),
        (_with(["vat_percent"], "119"), "vat_percent"),
        (
            _with(["elements", 0, "restrictions"], {"min_kwh": 50, "max_kwh": 10}),
            "elements[0].restrictions.max_kwh",
        ),
        (
            _with(
                ["elements", 0, "restrictions"],
                {"start_date": "2026-05-01", "end_date": "2026-04-01"},
            ),
            "elements[0].restrictions.end_date",
        ),
        (
            _with(
                ["elements", 0, "price_components"],
                [{"type": "ENERGY", "price": "0.1"}, {"type": "ENERGY", "price": "0.2"}],
            ),
            "elements[0].price_components[1].type",
        ),
        (_with(["elements"], []), "elements"),
        (_with(["elements", 0, "price_components", 0, "type"], "KWH"), "type"),
        (_with(["elements", 0, "restrictions", "day_of_week"], ["FUNDAY"]), "day_of_week"),
        (_with(["elements", 0, "price_components", 0, "price"], True), "price"),
    ],
)
async def test_invalid_tariffs_are_422_and_nothing_is_written(
    client: Client,
    headers: dict[str, str],
    db: asyncpg.Connection,
    body: dict[str, Any],
    field: str,
) -> None:
    r = await client.post("/admin/v1/tariffs", json=body, headers=headers)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed"
    assert any(field in e["field"] for e in problem["errors"]), problem
    # A rejected new version of an existing tariff leaves it as it was, too.
    tid = await publish(client, headers, PEAK_OFFPEAK)
    r = await client.put(f"/admin/v1/tariffs/{tid}", json=body, headers=headers)
    assert r.status_code == 422
    assert await db.fetchval("SELECT count(*) FROM tariffs") == 1
    assert await db.fetchval("SELECT count(*) FROM tariff_versions") == 1
    assert await db.fetchval("SELECT current_version FROM tariffs") == 1
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 1  # the good publish only


async def test_every_change_is_audited_with_before_and_after(
    client: Client, headers: dict[str, str], db: asyncpg.Connection, settings: Settings
) -> None:
    ops = staff_token(settings, roles=(Role.OPERATOR,))
    r = await import_fleet(client, ops, [site("aud-1")])
    assert r.status_code == 200, r.text
    site_id = await db.fetchval("SELECT site_id::text FROM sites WHERE external_id = 'aud-1'")

    tid = await publish(client, headers, PEAK_OFFPEAK)
    cheaper = _with(["elements", 1, "price_components", 0, "price"], "0.35")
    r = await client.put(f"/admin/v1/tariffs/{tid}", json=cheaper, headers=headers)
    assert r.status_code == 200
    r = await client.post(
        "/admin/v1/tariff-assignments",
        json={"tariff_id": tid, "site_id": site_id, "effective_from": "2026-12-01T00:00:00+01:00"},
        headers=headers,
    )
    assert r.status_code == 201, r.text

    rows = await db.fetch(
        "SELECT action, entity_type, entity_id, actor_id, before, after FROM audit_log "
        "WHERE action LIKE 'tariff.%' ORDER BY audit_id"
    )
    assert [r["action"] for r in rows] == ["tariff.create", "tariff.update", "tariff.assign"]
    assert all(r["actor_id"] == "pricer" for r in rows)
    create, update, assign = rows
    assert create["before"] is None
    assert create["after"]["version"] == 1
    assert update["before"]["version"] == 1
    assert update["before"]["elements"][1]["price_components"][0]["price"] == "0.40"
    assert update["after"]["version"] == 2
    assert update["after"]["elements"][1]["price_components"][0]["price"] == "0.35"
    assert (assign["entity_type"], assign["entity_id"]) == ("site", site_id)
    assert assign["after"]["tariff_id"] == tid
    assert assign["after"]["effective_from"] == "2026-11-30T23:00:00Z"

    r = await client.get("/admin/v1/audit-log", headers=headers)
    assert r.status_code == 200
    assert "tariff.update" in r.text


async def test_assignment_validation(
    client: Client, headers: dict[str, str], db: asyncpg.Connection, settings: Settings
) -> None:
    ops = staff_token(settings, roles=(Role.OPERATOR,))
    await import_fleet(client, ops, [site("asg-1")])
    site_id = await db.fetchval("SELECT site_id::text FROM sites WHERE external_id = 'asg-1'")
    charger_id = await db.fetchval("SELECT charger_id::text FROM chargers LIMIT 1")
    tid = await publish(client, headers, PEAK_OFFPEAK)
    at = "2026-12-01T00:00:00Z"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"tariff_id": tid, "effective_from": at}, 422, "validation_failed"),
        (
            {"tariff_id": tid, "site_id": site_id, "charger_id": charger_id, "effective_from": at},
            422,
            "validation_failed",
        ),
        ({"tariff_id": tid, "site_id": site_id, "effective_from": "2026-12-01T00:00:00"}, 422, ""),
        (
            {"tariff_id": tid, "site_id": site_id, "effective_from": "9999-12-31T23:00:00-14:00"},
            422,
            "validation_failed",
        ),
        ({"tariff_id": tid, "site_id": "nope", "effective_from": at}, 404, "site_not_found"),
        (
            {"tariff_id": tid, "charger_id": str(site_id), "effective_from": at},
            404,
            "charger_not_found",
        ),
        (
            {"tariff_id": str(site_id), "site_id": site_id, "effective_from": at},
            404,
            "tariff_not_found",
        ),
    ]
    for body, status, code in cases:
        r = await client.post("/admin/v1/tariff-assignments", json=body, headers=headers)
        assert r.status_code == status, (body, r.text)
        if code:
            assert r.json()["code"] == code
    assert await db.fetchval("SELECT count(*) FROM tariff_assignments") == 0
    r = await client.post(
        "/admin/v1/tariff-assignments",
        json={"tariff_id": tid, "charger_id": charger_id, "effective_from": at},
        headers=headers,
    )
    assert r.status_code == 201
    assert r.json()["charger_id"] == charger_id
    assert r.json()["site_id"] is None


async def test_timeline_bands_in_local_time_across_dst(
    client: Client, headers: dict[str, str]
) -> None:
    tid = await publish(client, headers, PEAK_OFFPEAK)
    # Berlin springs forward on 2026-03-29 (UTC+1 → UTC+2): 17:00 local is 16:00Z the day
    # before and 15:00Z on the day.
    r = await client.get(
        f"/admin/v1/tariffs/{tid}/timeline",
        params={
            "from": "2026-03-28T12:00:00Z",
            "to": "2026-03-29T18:00:00Z",
            "timezone": "Europe/Berlin",
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["tariff_id"], body["version"], body["currency"]) == (tid, 1, "EUR")
    bands = [(b["from"], b["to"], b["energy_per_kwh"], b["idle_per_hour"]) for b in body["bands"]]
    assert bands == [
        ("2026-03-28T12:00:00Z", "2026-03-28T16:00:00Z", "0.40", "6.00"),
        # per dimension: parking still comes from the second element (OCPI 2.2.1)
        ("2026-03-28T16:00:00Z", "2026-03-28T20:00:00Z", "0.60", "6.00"),
        ("2026-03-28T20:00:00Z", "2026-03-29T15:00:00Z", "0.40", "6.00"),
        ("2026-03-29T15:00:00Z", "2026-03-29T18:00:00Z", "0.60", "6.00"),
    ]
    bad = [
        {"timezone": "Mars/Olympus"},
        {"from": "2026-03-28T12:00:00Z", "to": "2026-03-28T11:00:00Z"},
        {"from": "2026-03-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"},
        {"from": "9999-12-31T23:00:00Z"},
        {"from": "2026-03-28T12:00:00"},
    ]
    for params in bad:
        r = await client.get(f"/admin/v1/tariffs/{tid}/timeline", params=params, headers=headers)
        assert r.status_code == 422, (params, r.text)
    r = await client.get(f"/admin/v1/tariffs/{'0' * 8}/timeline", headers=headers)
    assert r.status_code == 404


def test_charger_level_beats_site_level_and_latest_effective_from_wins() -> None:
    t0 = datetime(2026, 11, 25, tzinfo=UTC)
    h = timedelta(hours=1)
    rows = [
        Assignment("site-A", False, t0),
        Assignment("charger-B", True, t0 + 2 * h),
        Assignment("site-C", False, t0 + 4 * h),
        Assignment("charger-D", True, t0 + 6 * h),
        Assignment("site-E", False, t0 + 6 * h),
    ]
    assert effective_at(rows, t0 - h) is None
    assert effective_at(rows, t0) == "site-A"
    assert effective_at(rows, t0 + 2 * h) == "charger-B"
    assert effective_at(rows, t0 + 5 * h) == "charger-B"  # site-C is site-level
    assert effective_at(rows, t0 + 7 * h) == "charger-D"
    site_only = [r for r in rows if not r.charger_level]
    assert effective_at(site_only, t0 + 5 * h) == "site-C"
    assert periods(rows, t0 - h, t0 + 8 * h) == [
        (t0 - h, t0, None),
        (t0, t0 + 2 * h, "site-A"),
        (t0 + 2 * h, t0 + 6 * h, "charger-B"),
        (t0 + 6 * h, t0 + 8 * h, "charger-D"),
    ]


async def test_a_session_keeps_the_version_it_started_with(
    client: Client, headers: dict[str, str], db: asyncpg.Connection, settings: Settings
) -> None:
    ops = staff_token(settings, roles=(Role.OPERATOR,))
    await import_fleet(client, ops, [site("lock-1")])
    site_id, connector_id = await db.fetchrow(
        "SELECT site_id::text, connector_id::text FROM connectors LIMIT 1"
    )
    tid = await publish(client, headers, PEAK_OFFPEAK)
    start = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert await tariff_for_session(db, connector_id, start) is None  # nothing assigned yet
    r = await client.post(
        "/admin/v1/tariff-assignments",
        json={"tariff_id": tid, "site_id": site_id, "effective_from": "2026-11-01T00:00:00Z"},
        headers=headers,
    )
    assert r.status_code == 201
    locked = await tariff_for_session(db, connector_id, start)
    assert locked is not None
    assert (locked.tariff_id, locked.version) == (tid, 1)

    dearer = _with(["elements", 1, "price_components", 0, "price"], "0.90")
    r = await client.put(f"/admin/v1/tariffs/{tid}", json=dearer, headers=headers)
    assert r.status_code == 200
    # The session bills with what it locked: 10 kWh at 12:00–13:00 Berlin, off-peak 0.40.
    again = await tariff_version(db, tid, locked.version)
    bill = engine.quote(
        again, ZoneInfo("Europe/Berlin"), start_at=start, power_kw=10, energy_kwh=10
    )
    assert bill.subtotal_minor == 400
    new = await tariff_for_session(db, connector_id, start)
    assert new is not None
    assert new.version == 2


@pytest.mark.parametrize(
    ("sent", "answered"),
    [(19, "19"), (19.0, "19.0"), ("7.7", "7.7"), (7.7, "7.7"), (0, "0"), ("19", "19")],
)
async def test_vat_percent_as_a_json_number_or_a_decimal_string(
    client: Client, headers: dict[str, str], sent: float | str, answered: str
) -> None:
    tid = await publish(client, headers, {**PEAK_OFFPEAK, "vat_percent": sent})
    r = await client.get(f"/admin/v1/tariffs/{tid}", headers=headers)
    assert r.status_code == 200
    assert r.json()["vat_percent"] == answered


def _energy_price(body: dict[str, Any], price: Any) -> dict[str, Any]:
    """PEAK_OFFPEAK with the off-peak energy price replaced by `price`."""
    off_peak = {
        "price_components": [
            {"type": "ENERGY", "price": price, "step_size": 1},
            {"type": "PARKING_TIME", "price": 6, "step_size": 60},
        ]
    }
    return {**body, "elements": [body["elements"][0], off_peak]}


@pytest.mark.parametrize(
    ("sent", "answered"), [(0.4, "0.4"), (0.39, "0.39"), (1, "1"), (0, "0"), ("0.3900", "0.3900")]
)
async def test_prices_as_json_numbers_are_accepted_and_answered_as_strings(
    client: Client, headers: dict[str, str], sent: float | str, answered: str
) -> None:
    """API.md: prices are decimal strings, numbers accepted too. The bill prices the
    number exactly as its decimal text (0.39, not the binary float 0.38999…)."""
    tid = await publish(client, headers, _energy_price(PEAK_OFFPEAK, sent))
    r = await client.get(f"/admin/v1/tariffs/{tid}", headers=headers)
    assert r.status_code == 200
    components = r.json()["elements"][1]["price_components"]
    assert [c["price"] for c in components] == [answered, "6"]


@pytest.mark.parametrize("sent", [True, None, -0.1, 1e-7, 5e-324, "0,39", [0.39]])
async def test_prices_that_are_no_price_are_422(
    client: Client, headers: dict[str, str], sent: Any
) -> None:
    r = await client.post(
        "/admin/v1/tariffs", json=_energy_price(PEAK_OFFPEAK, sent), headers=headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_failed"
    assert any(e["field"].endswith("price") for e in r.json()["errors"]), r.json()


@pytest.mark.parametrize("sent", [True, None, -1, 100.5, 1e-7, "19%", [19]])
async def test_vat_percent_that_is_no_percentage_is_422(
    client: Client, headers: dict[str, str], sent: Any
) -> None:
    r = await client.post(
        "/admin/v1/tariffs", json={**PEAK_OFFPEAK, "vat_percent": sent}, headers=headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_failed"
    assert any(e["field"].endswith("vat_percent") for e in r.json()["errors"])
