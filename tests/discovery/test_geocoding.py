"""`q=` place search through geopy's Nominatim against a stand-in Nominatim server."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from app.core.embedded import free_port
from app.core.settings import Settings
from app.main import create_app
from tests.factories import bring_online, eventually
from tests.standins.nominatim import nominatim as nominatim_standin

PLACES = {"alexanderplatz": ("52.5219", "13.4132")}


@pytest.fixture
def nominatim() -> Iterator[tuple[str, list[str]]]:
    """The stand-in Nominatim and the queries it was asked."""
    seen: list[str] = []
    with nominatim_standin(PLACES, seen) as url:
        yield url, seen


async def test_place_search_resolves_and_is_cached(
    settings: Settings, db: asyncpg.Connection, nominatim: tuple[str, list[str]]
) -> None:
    url, seen = nominatim
    await db.execute(
        "INSERT INTO sites (external_id, name, lat, lon, timezone) "
        "VALUES ('alex', 'Alex', 52.5215, 13.4125, 'Europe/Berlin')"
    )
    site_id = await db.fetchval("SELECT site_id FROM sites")
    charger_id = await db.fetchval(
        "INSERT INTO chargers (site_id, charge_point_id, ocpp_password_hash) "
        "VALUES ($1, 'ALEX-1', 'x') RETURNING charger_id",
        site_id,
    )
    await db.execute(
        "INSERT INTO connectors (charger_id, site_id, connector_no, type, power_w) "
        "VALUES ($1, $2, 1, 'CCS2', 150000)",
        charger_id,
        site_id,
    )
    await bring_online(db)
    app = create_app(msgspec.structs.replace(settings, geocoder_url=url), run_migrations=False)
    async with AsyncTestClient(app=app) as c:

        async def found() -> object:
            r = await c.get("/v1/chargers/nearby", params={"q": "Alexanderplatz"})
            return r if r.status_code == 200 and r.json()["items"] else None

        r = await eventually(found)
        assert r is not None
        item = r.json()["items"][0]  # type: ignore[attr-defined]
        assert item["name"] == "Alex"
        assert item["distance_m"] < 100
        await c.get("/v1/chargers/nearby", params={"q": "alexanderplatz "})
        assert len(seen) == 1  # the second lookup came from the cache
        r = await c.get("/v1/chargers/nearby", params={"q": "Atlantis"})
        assert r.status_code == 422
        assert r.json()["code"] == "place_not_found"


async def test_geocoder_down_is_503_and_coordinates_still_work(settings: Settings) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    app = create_app(msgspec.structs.replace(settings, geocoder_url=dead), run_migrations=False)
    async with AsyncTestClient(app=app) as c:
        r = await c.get("/v1/chargers/nearby", params={"q": "Alexanderplatz"})
        assert r.status_code == 503
        assert r.json()["code"] == "geocoder_unavailable"
        r = await c.get("/v1/chargers/nearby", params={"lat": 52.5, "lon": 13.4})
        assert r.status_code == 200
