"""Nearby search and site detail: geodesic order, radius edge, antimeridian and polar
positions, filters, availability counts, offline/quarantined chargers hidden, freshness."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import msgspec
import pytest
from geopy.distance import geodesic
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from app.discovery.schemas import NearbyPage, SiteDetail
from tests.factories import bring_online, charger, eventually, import_fleet, site, staff_token

Client = AsyncTestClient[Litestar]


@pytest.fixture
def token(settings: Settings) -> str:
    return staff_token(settings, roles=(Role.OPERATOR,))


async def onboard(
    client: Client,
    token: str,
    db: asyncpg.Connection,
    sites: list[dict[str, Any]],
    *,
    online: bool = True,
) -> None:
    r = await import_fleet(client, token, sites)
    assert r.status_code == 200, r.text
    assert r.json()["failed"] == [], r.text
    if online:
        await bring_online(db)


async def search(client: Client, **params: Any) -> NearbyPage:
    r = await client.get("/v1/chargers/nearby", params=params)
    assert r.status_code == 200, r.text
    return msgspec.json.decode(r.content, type=NearbyPage)  # the contract, strictly


async def search_until(client: Client, predicate: Any, **params: Any) -> NearbyPage:
    async def check() -> NearbyPage | None:
        page = await search(client, **params)
        return page if predicate(page) else None

    page: NearbyPage | None = await eventually(check)
    assert page is not None, f"search never satisfied the condition for {params}"
    return page


def destination(lat: float, lon: float, meters: float, bearing: float) -> tuple[float, float]:
    p = geodesic(meters=meters).destination((lat, lon), bearing)
    return p.latitude, p.longitude


async def test_nearest_first_with_geodesic_distances(
    client: Client, token: str, db: asyncpg.Connection
) -> None:
    rng = random.Random(3)
    center = (48.137, 11.575)
    points = [destination(*center, rng.uniform(10, 20_000), rng.uniform(0, 360)) for _ in range(40)]
    await onboard(
        client, token, db, [site(f"p{i}", lat=lat, lon=lon) for i, (lat, lon) in enumerate(points)]
    )
    page = await search_until(
        client,
        lambda p: len(p.items) == 30,
        lat=center[0],
        lon=center[1],
        radius_m=20_000,
        limit=30,
    )
    expected = sorted(geodesic(center, p).meters for p in points)[:30]
    got = [s.distance_m for s in page.items if s.distance_m is not None]
    assert len(got) == 30
    assert got == sorted(got)
    for g, e in zip(got, expected, strict=True):
        assert abs(g - e) < 1.0
    for s in page.items:
        assert abs(geodesic(center, (s.lat, s.lon)).meters - (s.distance_m or 0)) < 1.0


@pytest.mark.parametrize("radius", [1_000, 25_000, 49_990])
async def test_radius_edge_by_a_metre(
    client: Client, token: str, db: asyncpg.Connection, radius: int
) -> None:
    center = (52.52, 13.405)
    inside = destination(*center, radius - 1.0, 63)
    outside = destination(*center, radius + 1.0, 243)
    await onboard(
        client,
        token,
        db,
        [site("in", lat=inside[0], lon=inside[1]), site("out", lat=outside[0], lon=outside[1])],
    )
    page = await search_until(
        client, lambda p: len(p.items) >= 1, lat=center[0], lon=center[1], radius_m=radius
    )
    assert [s.name for s in page.items] == ["Site in"]
    page = await search(client, lat=center[0], lon=center[1], radius_m=radius + 2)
    assert sorted(s.name for s in page.items) == ["Site in", "Site out"]


async def test_across_the_antimeridian(client: Client, token: str, db: asyncpg.Connection) -> None:
    await onboard(
        client,
        token,
        db,
        [
            site("east", lat=-16.5, lon=179.995, timezone="Pacific/Fiji"),
            site("west", lat=-16.5, lon=-179.995, timezone="Pacific/Fiji"),
        ],
    )
    for lon in (179.999, -179.999):
        page = await search_until(
            client, lambda p: len(p.items) == 2, lat=-16.5, lon=lon, radius_m=5000
        )
        assert {s.name for s in page.items} == {"Site east", "Site west"}
        for s in page.items:
            assert abs(geodesic((-16.5, lon), (s.lat, s.lon)).meters - (s.distance_m or 0)) < 1.0


async def test_high_latitude(client: Client, token: str, db: asyncpg.Connection) -> None:
    center = (78.22, 15.65)  # Longyearbyen: a degree of longitude is ~23 km here
    east = destination(*center, 40_000, 90)
    west = destination(*center, 45_000, 270)
    far = destination(*center, 55_000, 90)
    await onboard(
        client,
        token,
        db,
        [
            site(n, lat=p[0], lon=p[1], timezone="Arctic/Longyearbyen")
            for n, p in (("e", east), ("w", west), ("far", far))
        ],
    )
    page = await search_until(
        client, lambda p: len(p.items) == 2, lat=center[0], lon=center[1], radius_m=50_000
    )
    assert [s.name for s in page.items] == ["Site e", "Site w"]


async def test_filters_and_availability(client: Client, token: str, db: asyncpg.Connection) -> None:
    connectors = [
        {"connector_no": 1, "type": "CCS2", "power_kw": 150},
        {"connector_no": 2, "type": "TYPE2", "power_kw": 22},
        {"connector_no": 3, "type": "CHADEMO", "power_kw": 50},
    ]
    await onboard(client, token, db, [site("a", chargers=[charger("A", connectors=connectors)])])
    await db.execute("UPDATE connectors SET status = 'OCCUPIED' WHERE type = 'CCS2'")
    base = {"lat": 52.52, "lon": 13.405}

    page = await search_until(client, lambda p: p.items and p.items[0].available_count == 2, **base)
    assert [c.connector_no for c in page.items[0].connectors] == [1, 2, 3]
    assert {c.connector_no: c.status for c in page.items[0].connectors}[1] == "OCCUPIED"

    page = await search(client, connector_type="TYPE2", **base)
    assert [c.type for c in page.items[0].connectors] == ["TYPE2"]
    page = await search(client, min_power_kw=50, **base)
    assert sorted(c.power_kw for c in page.items[0].connectors) == [50, 150]
    page = await search(client, min_power_kw=50, available_only="true", **base)
    assert [c.type for c in page.items[0].connectors] == ["CHADEMO"]
    page = await search(client, connector_type="CCS2", available_only="true", **base)
    assert page.items == []  # the only CCS2 is occupied: the site is absent
    page = await search(client, connector_type="NACS", **base)
    assert page.items == []


async def test_limit(client: Client, token: str, db: asyncpg.Connection) -> None:
    await onboard(client, token, db, [site(f"s{i}", lat=52.52 + i * 0.001) for i in range(8)])
    page = await search_until(client, lambda p: len(p.items) == 5, lat=52.52, lon=13.405, limit=5)
    assert [s.name for s in page.items] == [f"Site s{i}" for i in range(5)]


async def test_offline_and_quarantined_chargers_disappear_and_reappear(
    client: Client, token: str, db: asyncpg.Connection
) -> None:
    await onboard(
        client,
        token,
        db,
        [site("x", chargers=[charger("X1"), charger("X2")]), site("y", lat=52.53)],
    )
    base = {"lat": 52.52, "lon": 13.405}
    page = await search_until(client, lambda p: len(p.items) == 2, **base)
    assert len(page.items[0].connectors) == 4

    await bring_online(db, ["X1"], state="offline", status=None)
    page = await search_until(client, lambda p: len(p.items[0].connectors) == 2, **base)
    assert {c.charger_id for c in page.items[0].connectors} == {
        str(await db.fetchval("SELECT charger_id FROM chargers WHERE charge_point_id = 'X2'"))
    }

    await bring_online(db, ["X2"], state="quarantined", status=None)
    page = await search_until(client, lambda p: [s.name for s in p.items] == ["Site y"], **base)
    site_id = await db.fetchval("SELECT site_id FROM sites WHERE external_id = 'x'")
    r = await client.get(f"/v1/sites/{site_id}")
    assert r.status_code == 404
    assert r.json()["code"] == "site_not_found"

    await bring_online(db, ["X1", "X2"], state="online", status=None)
    await search_until(
        client, lambda p: len(p.items) == 2 and len(p.items[0].connectors) == 4, **base
    )
    r = await client.get(f"/v1/sites/{site_id}")
    assert r.status_code == 200


async def test_degraded_is_still_shown_and_never_connected_is_not(
    client: Client, token: str, db: asyncpg.Connection
) -> None:
    await onboard(
        client,
        token,
        db,
        [site("d", chargers=[charger("D1")]), site("n", lat=52.521, chargers=[charger("N1")])],
        online=False,
    )
    await bring_online(db, ["D1"], state="degraded")
    page = await search_until(client, lambda p: len(p.items) == 1, lat=52.52, lon=13.405)
    assert [s.name for s in page.items] == ["Site d"]


async def test_site_detail(client: Client, token: str, db: asyncpg.Connection) -> None:
    await onboard(client, token, db, [site("a")])
    site_id = await db.fetchval("SELECT site_id FROM sites")

    async def fetch() -> Any:
        r = await client.get(f"/v1/sites/{site_id}")
        return r if r.status_code == 200 else None

    r = await eventually(fetch)
    detail = msgspec.json.decode(r.content, type=SiteDetail)
    assert detail.site_id == str(site_id)
    assert detail.distance_m is None
    assert detail.available_count == 2
    assert detail.price is None  # filled by the pricing issue
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        r = await client.get(f"/v1/sites/{bad}")
        assert r.status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"lat": 91, "lon": 0}, "lat"),
        ({"lat": -90.5, "lon": 0}, "lat"),
        ({"lat": 0, "lon": 181}, "lon"),
        ({"lat": 0, "lon": 0, "radius_m": 50_001}, "radius_m"),
        ({"lat": 0, "lon": 0, "limit": 101}, "limit"),
        ({"lat": 0, "lon": 0, "connector_type": "SCHUKO"}, "connector_type"),
        ({"lat": 0, "lon": 0, "min_power_kw": -1}, "min_power_kw"),
        ({"lat": "north", "lon": 0}, "lat"),
        ({"lon": 0}, "lat"),
    ],
)
async def test_validation(client: Client, params: dict[str, Any], field: str) -> None:
    r = await client.get("/v1/chargers/nearby", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_failed"
    assert field in [e["field"] for e in r.json()["errors"]]


async def test_place_search_without_geocoder_is_503_and_coordinates_still_work(
    client: Client,
) -> None:
    r = await client.get("/v1/chargers/nearby", params={"q": "Alexanderplatz"})
    assert r.status_code == 503
    assert r.json()["code"] == "geocoder_unavailable"
    r = await client.get("/v1/chargers/nearby", params={"lat": 1, "lon": 1})
    assert r.status_code == 200


async def test_rate_limited_per_client(settings: Settings) -> None:
    from app.main import create_app

    strict = msgspec.structs.replace(settings, discovery_rate_per_s=1.0, discovery_burst=3.0)
    async with AsyncTestClient(app=create_app(strict, run_migrations=False)) as c:
        codes = [
            (await c.get("/v1/chargers/nearby", params={"lat": 1, "lon": 1})).status_code
            for _ in range(5)
        ]
        r = await c.get("/v1/chargers/nearby", params={"lat": 1, "lon": 1})
    assert codes[:3] == [200, 200, 200]
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1


async def test_query_string_forms_clients_send(
    client: Client, token: str, db: asyncpg.Connection
) -> None:
    """Empty values count as absent (API.md's own example URL has them), the first of a
    repeated parameter wins, percent-encoding is decoded, unknown parameters are ignored
    and booleans come as true/false/1/0."""
    await onboard(
        client, token, db, [site("qs-1", lat=48.0, lon=11.0, chargers=[charger("qs-cp")])]
    )
    base = "/v1/chargers/nearby?lat=48.0&lon=11.0"
    await search_until(client, lambda p: len(p.items) == 1, lat=48.0, lon=11.0)
    for suffix in (
        "&radius_m=5000&limit=20&connector_type=&min_power_kw=&available_only=false",
        "&radius_m=5000&radius_m=1&utm_source=app",
        "&connector_type=CCS%32&available_only=1",
        "&available_only=TRUE&q=",
    ):
        r = await client.get(base + suffix)
        assert r.status_code == 200, (suffix, r.text)
        assert len(msgspec.json.decode(r.content, type=NearbyPage).items) == 1, suffix
    r = await client.get(base + "&available_only=maybe")
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["available_only"]
