"""Group commit of StatusNotification / MeterValues (app/chargers/writer.py) on the real
database: many chargers at once land in few batches, each charger's latest status wins,
and one message that cannot be written fails alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.chargers.service import ChargerIdentity
from app.chargers.writer import OcppWriter, _Batcher, _StatusItem

AT = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


async def _chargers(db: asyncpg.Connection, count: int) -> list[ChargerIdentity]:
    site_id = await db.fetchval(
        "INSERT INTO sites (external_id, name, lat, lon, timezone) "
        "VALUES ('w', 'w', 52.5, 13.4, 'Europe/Berlin') RETURNING site_id"
    )
    out = []
    for n in range(count):
        cpid = f"W-{n:03d}"
        charger_id = await db.fetchval(
            "INSERT INTO chargers (site_id, charge_point_id, ocpp_password_hash) "
            "VALUES ($1, $2, 'x') RETURNING charger_id",
            site_id,
            cpid,
        )
        for no in (1, 2):
            await db.execute(
                "INSERT INTO connectors (charger_id, site_id, connector_no, type, power_w) "
                "VALUES ($1, $2, $3, 'CCS2', 150000)",
                charger_id,
                site_id,
                no,
            )
        out.append(ChargerIdentity(charger_id, cpid, None))
    return out


async def test_concurrent_statuses_and_samples_are_written_in_batches(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    chargers = await _chargers(db, 60)
    writer = OcppWriter(pool)
    try:
        await asyncio.gather(
            *(writer.status(c, 1, "Charging", AT) for c in chargers),
            *(writer.status(c, 2, "Faulted", AT) for c in chargers),
            *(
                writer.meter_values(
                    c,
                    connector_no=1,
                    transaction_id=None,
                    meter_value=[
                        {
                            "timestamp": "2026-01-01T10:00:00Z",
                            "sampled_value": [{"value": str(n), "unit": "Wh"}],
                        }
                    ],
                )
                for n, c in enumerate(chargers)
            ),
        )
        # Then the latest status per connector wins.
        await asyncio.gather(
            *(writer.status(c, 1, "Available", AT + timedelta(seconds=5)) for c in chargers)
        )
        stats = writer.stats()
    finally:
        await writer.close()
    rows = await db.fetch(
        "SELECT connector_no, status, count(*) AS n FROM connectors GROUP BY 1, 2"
    )
    assert {(r["connector_no"], r["status"], r["n"]) for r in rows} == {
        (1, "AVAILABLE", 60),
        (2, "FAULTED", 60),
    }
    assert await db.fetchval("SELECT count(*) FROM meter_samples") == 60
    assert stats["status_batches"] < 60 + 60  # grouped, not one commit per message
    assert stats["status_largest_batch"] > 1
    seen = await db.fetchval(
        "SELECT count(*) FROM charger_connectivity WHERE last_seen_at IS NOT NULL"
    )
    assert seen == 60


async def test_a_message_that_cannot_be_written_fails_alone() -> None:
    """(The batching logic with a stand-in for the SQL: message 13 makes a batch fail.)"""
    written: list[int] = []

    async def flush(batch: Sequence[_StatusItem]) -> None:
        if any(item.connector_no == 13 for item in batch):
            raise ValueError("bad message")
        written.extend(item.connector_no for item in batch)

    loop = asyncio.get_running_loop()
    items = [
        _StatusItem(uuid.uuid4(), n, "AVAILABLE", None, AT, loop.create_future()) for n in range(30)
    ]
    batcher = _Batcher[_StatusItem]("test", flush, max_batch=100)
    results = await asyncio.gather(*(batcher.put(i) for i in items), return_exceptions=True)
    await batcher.close()
    assert sorted(written) == [n for n in range(30) if n != 13]
    assert [n for n, r in enumerate(results) if isinstance(r, Exception)] == [13]
    assert batcher.largest > 1  # they were tried together first
