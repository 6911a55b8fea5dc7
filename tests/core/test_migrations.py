"""Migrations: ordered, recorded, idempotent, safe when several processes start at once."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from app.core.migrations import discover, migrate
from app.core.settings import ROOT


async def _tables(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        return {r["table_name"] for r in rows}
    finally:
        await conn.close()


async def test_apply_twice_applies_once(empty_db_url: str) -> None:
    first = await migrate(empty_db_url)
    second = await migrate(empty_db_url)
    assert first == [m.name for m in discover()]
    assert second == []
    assert {
        "sites",
        "chargers",
        "connectors",
        "charger_connectivity",
        "staff_users",
        "audit_log",
        "idempotency_keys",
        "outbox",
    } <= await _tables(empty_db_url)
    conn = await asyncpg.connect(empty_db_url)
    try:
        recorded = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert recorded == len(discover())


async def test_two_processes_migrating_at_once(empty_db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_db_url}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "migrate",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = await asyncio.gather(*(p.communicate() for p in procs))
    assert [p.returncode for p in procs] == [0, 0], results
    outputs = sorted(out.decode() for out, _ in results)
    # exactly one of them did the work; the other waited on the lock and found nothing to do
    assert "nothing (up to date)" in outputs[0] or "nothing (up to date)" in outputs[1]
    assert any("0001_init.sql" in o for o in outputs)
    conn = await asyncpg.connect(empty_db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(discover())
    finally:
        await conn.close()


async def test_template_schema_equals_fresh_migration(db_url: str, empty_db_url: str) -> None:
    """The per-test databases (cloned from the template) have exactly the migrated schema."""
    await migrate(empty_db_url)

    async def columns(dsn: str) -> list[tuple[str, str, str]]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                """SELECT table_name, column_name, data_type FROM information_schema.columns
                   WHERE table_schema = 'public' ORDER BY 1, 2"""
            )
            return [(r[0], r[1], r[2]) for r in rows]
        finally:
            await conn.close()

    assert await columns(db_url) == await columns(empty_db_url)
