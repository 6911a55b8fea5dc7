"""Demo mode: each city gets a day/night/peak tariff in its currency, assigned to its demo
sites; seeding again (every start) publishes no new version and no new assignment."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from app.demo.seed import seed
from app.pricing.book import PriceBook


async def test_demo_tariffs_are_seeded_once_and_prices_change_over_the_day(
    db_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await seed(db_url, tmp_path)
    await seed(db_url, tmp_path)
    rows = await db.fetch(
        "SELECT v.name, v.currency, t.current_version FROM tariffs t "
        "JOIN tariff_versions v USING (tariff_id) ORDER BY v.name"
    )
    assert [(r["name"], r["currency"], r["current_version"]) for r in rows] == [
        ("Amsterdam day/night/peak (demo)", "EUR", 1),
        ("Berlin day/night/peak (demo)", "EUR", 1),
        ("Paris day/night/peak (demo)", "EUR", 1),
    ]
    sites = await db.fetchval("SELECT count(*) FROM sites WHERE external_id LIKE 'demo-%'")
    assigned = await db.fetchval("SELECT count(DISTINCT site_id) FROM tariff_assignments")
    assert assigned == sites == await db.fetchval("SELECT count(*) FROM tariff_assignments")

    book = PriceBook()
    await book.load_all(db)
    berlin = await db.fetchval("SELECT site_id FROM sites WHERE external_id = 'demo-de-0000'")
    # Wednesday 25 Nov 2026 in Berlin (UTC+1): day at 12:00, peak at 18:00, night at 23:00.
    answers = [
        book.site_price_json(berlin.bytes, datetime(2026, 11, 25, h, tzinfo=UTC).timestamp())
        for h in (11, 17, 22)
    ]
    prices = [body for body, _ in answers]
    assert all(b'"currency":"EUR","energy_per_kwh"' in p for p in prices)
    assert all(b'"vat_percent":"19"' in p for p in prices)
    # each answer holds until the next band: 17:00, 20:00 and 06:00 local
    assert [datetime.fromtimestamp(u, UTC).hour for _, u in answers] == [16, 19, 5]
    assert b'"energy_per_kwh":"0.4900"' in prices[0]
    assert b'"energy_per_kwh":"0.6500"' in prices[1]
    assert b'"energy_per_kwh":"0.3400"' in prices[2]
