"""Migrations: ordered, recorded, idempotent, safe when several processes start at once."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import asyncpg

from app.core.embedded import dsn_for_database
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


# Every object of the public schema, as text PostgreSQL renders itself, so two databases
# compare equal exactly when their schemas are the same (names, types, defaults, NOT NULL,
# constraints, indexes, triggers, functions, views, sequences, enums, comments).
SCHEMA_QUERIES = {
    "columns": """
        SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
               || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
               || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text
                       ELSE '' END
               || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')""",
    "relations": """
        SELECT c.relname || ' ' || c.relkind::text || ' ' || c.relpersistence::text
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')""",
    "constraints": """
        SELECT c.relname || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'""",
    "indexes": "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "triggers": """
        SELECT pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND NOT t.tgisinternal""",
    "functions": """
        SELECT pg_get_functiondef(p.oid) FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.prokind IN ('f', 'p')""",
    "views": "SELECT viewname || ' ' || definition FROM pg_views WHERE schemaname = 'public'",
    "sequences": """
        SELECT sequencename || ' ' || data_type || ' ' || increment_by || ' ' || min_value
        FROM pg_sequences WHERE schemaname = 'public'""",
    "enums": """
        SELECT t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
        FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
        JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public'
        GROUP BY t.typname""",
    "comments": """
        SELECT c.relname || coalesce('.' || a.attname, '') || ' ' || d.description
        FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
        WHERE n.nspname = 'public' AND d.classoid = 'pg_class'::regclass""",
}


async def schema_of(dsn: str) -> dict[str, list[str]]:
    """The public schema, object kind by object kind, each as a sorted list of lines."""
    conn = await asyncpg.connect(dsn)
    try:
        return {
            kind: sorted(str(r[0]) for r in await conn.fetch(sql))
            for kind, sql in SCHEMA_QUERIES.items()
        }
    finally:
        await conn.close()


def _diff(a: dict[str, list[str]], b: dict[str, list[str]]) -> list[str]:
    out = []
    for kind in SCHEMA_QUERIES:
        only_a, only_b = set(a[kind]) - set(b[kind]), set(b[kind]) - set(a[kind])
        out += [f"{kind} only in the first: {x}" for x in sorted(only_a)]
        out += [f"{kind} only in the second: {x}" for x in sorted(only_b)]
    return out


async def test_migrations_one_by_one_give_the_schema_of_all_at_once(
    empty_db_url: str, pg_admin_url: str, tmp_path: Path
) -> None:
    """A database that took every migration in its own deploy (0001, then 0001..0002, …)
    ends with exactly the schema of a fresh database migrated in one go."""
    name = f"vw_e_{uuid.uuid4().hex[:12]}"
    fresh = dsn_for_database(pg_admin_url, name)
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            migrations = discover()
            for k, m in enumerate(migrations, start=1):
                step = tmp_path / f"upto_{k:04d}"
                step.mkdir()
                for earlier in migrations[:k]:
                    (step / earlier.name).write_text(earlier.sql)
                assert await migrate(empty_db_url, step) == [m.name]
            assert len(await migrate(fresh)) == len(migrations)
            one_by_one, at_once = await schema_of(empty_db_url), await schema_of(fresh)
            assert one_by_one["columns"], "the snapshot saw no columns; its queries are broken"
            assert _diff(one_by_one, at_once) == []
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_template_schema_equals_fresh_migration(db_url: str, empty_db_url: str) -> None:
    """The per-test databases (cloned from the template) have exactly the migrated schema."""
    await migrate(empty_db_url)
    assert _diff(await schema_of(db_url), await schema_of(empty_db_url)) == []


async def test_the_comparison_sees_a_changed_default_index_and_trigger(
    db_url: str, empty_db_url: str
) -> None:
    await migrate(empty_db_url)
    conn = await asyncpg.connect(empty_db_url)
    try:
        await conn.execute("ALTER TABLE sites ALTER COLUMN address SET DEFAULT 'x'")
        await conn.execute("CREATE INDEX sites_name ON sites (name)")
        await conn.execute("ALTER TABLE sites DISABLE TRIGGER USER")
    finally:
        await conn.close()
    diff = _diff(await schema_of(db_url), await schema_of(empty_db_url))
    assert any(d.startswith("columns") and "sites.address" in d for d in diff), diff
    assert any(d.startswith("indexes") and "sites_name" in d for d in diff), diff
    assert any(d.startswith("triggers") and "ON public.sites" in d for d in diff), diff
