"""`POST /admin/v1/tariff-previews`: a draft's bands and sample quote beside the current
version's, nothing stored; problems as 422 `errors` under `tariff.`."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from app.demo.seed import demo_tariff
from tests.factories import auth, staff_token

PREVIEW = "/admin/v1/tariff-previews"
# Monday 30 March 2026 in Berlin (CEST), 00:00 → 24:00.
DAY = {"from": "2026-03-29T22:00:00Z", "to": "2026-03-30T22:00:00Z", "timezone": "Europe/Berlin"}


def berlin(peak: str = "0.6500") -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(
        demo_tariff("Berlin", "EUR", "19", "0.4900", "0.3400", peak, "6.00")
    )
    return out


async def test_preview_against_the_current_version(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    admin = auth(staff_token(settings, roles=(Role.PRICING_ADMIN,)))
    r = await client.post("/admin/v1/tariffs", json=berlin(), headers=admin)
    tariff_id = r.json()["tariff_id"]
    viewer = auth(staff_token(settings, roles=(Role.VIEWER,)))
    sample = {"start_at": "2026-03-30T16:00:00Z", "energy_kwh": 30, "power_kw": 50}  # 18:00
    r = await client.post(
        PREVIEW,
        json={**DAY, "tariff": berlin("0.7500"), "tariff_id": tariff_id, "sample": sample},
        headers=viewer,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["draft"]["bands"]) == 5
    assert body["current"]["version"] == 1
    assert [b["energy_per_kwh"] for b in body["draft"]["bands"]][2] == "0.7500"
    assert [b["energy_per_kwh"] for b in body["current"]["bands"]][2] == "0.6500"
    assert body["current"]["quote"]["subtotal_minor"] == 1950
    assert body["draft"]["quote"]["subtotal_minor"] == 2250
    assert body["draft"]["quote"]["total_minor"] == 2250 + 428
    # nothing stored
    assert await db.fetchval("SELECT count(*) FROM tariff_versions") == 1


async def test_preview_problems(client: AsyncTestClient[Litestar], settings: Settings) -> None:
    viewer = auth(staff_token(settings, roles=(Role.VIEWER,)))
    bad = berlin("0,70")
    bad["vat_percent"] = "101"
    r = await client.post(PREVIEW, json={**DAY, "tariff": bad}, headers=viewer)
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"tariff.vat_percent", "tariff.elements[0].price_components[0].price"}
    r = await client.post(
        PREVIEW, json={**DAY, "to": DAY["from"], "tariff": berlin()}, headers=viewer
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "to"
    r = await client.post(
        PREVIEW, json={**DAY, "timezone": "Mars/Olympus", "tariff": berlin()}, headers=viewer
    )
    assert r.json()["errors"][0]["field"] == "timezone"
    r = await client.post(
        PREVIEW,
        json={**DAY, "tariff": berlin(), "tariff_id": "00000000-0000-0000-0000-000000000000"},
        headers=viewer,
    )
    assert r.status_code == 404
    r = await client.post(PREVIEW, json={**DAY, "tariff": berlin(), "extra": 1}, headers=viewer)
    assert r.status_code == 422


async def test_page_and_static_assets(client: AsyncTestClient[Litestar]) -> None:
    r = await client.get("/admin/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert '<script type="module" src="/admin/static/js/main.js">' in r.text
    r = await client.get("/admin/static/js/main.js")
    assert r.status_code == 200
    assert "javascript" in r.headers["content-type"]
    r = await client.get("/admin/static/vendor/uPlot.LICENSE")
    assert "MIT" in r.text
    r = await client.get("/admin/static/../routes.py")
    assert r.status_code == 404
