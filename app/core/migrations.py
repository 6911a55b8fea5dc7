"""Apply `sql/migrations/NNNN_*.sql` in order, once each, under an advisory lock.

Several processes (API workers, the arq worker, tests) may start at once: the first takes
the lock and migrates, the others wait for it and then find nothing left to do.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import asyncpg

from app.core.settings import ROOT

MIGRATIONS_DIR = ROOT / "sql" / "migrations"
# A fixed 64-bit key for pg_advisory_lock; any constant unique to this app will do.
LOCK_KEY = 0x766F6C7477617931  # "voltway1"
_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
log = logging.getLogger("app.migrations")


class Migration:
    def __init__(self, path: Path) -> None:
        m = _FILE.match(path.name)
        if not m:
            raise ValueError(f"bad migration file name {path.name}")
        self.version = int(m.group(1))
        self.name = path.name
        self.sql = path.read_text()
        self.checksum = hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = [Migration(p) for p in sorted(directory.glob("*.sql"))]
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a version number")
    return migrations


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    applied_now: list[str] = []
    conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=30)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                r["version"]: r["checksum"]
                for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
            }
            for m in discover(directory):
                if m.version in done:
                    if done[m.version] != m.checksum:
                        log.warning("migration %s changed after it was applied", m.name)
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        m.version,
                        m.name,
                        m.checksum,
                    )
                applied_now.append(m.name)
                log.info("applied migration %s", m.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()
    return applied_now
