"""Real PostgreSQL and Redis for every test.

- PostgreSQL: `DATABASE_URL` when set (its server is used to create test databases), else
  the embedded server in `.data/pg`. The schema is built once per session from the
  migrations into a template database; each test that asks for `db_url` gets its own
  database cloned from it (fast, and lets tests commit and run concurrently).
- Redis: `REDIS_URL` when set, else an embedded Valkey; each test gets its own key
  namespace, so parallel runs never collide.

Under pytest-xdist (`make test` runs `-n 2`: most tests wait on sockets, timers and
subprocesses, not on the CPU) the controller starts the embedded servers once, before the
workers exist, and hands them their URLs through `DATABASE_URL` / `REDIS_URL`; each worker
builds its own template database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.db import init_connection
from app.core.embedded import EmbeddedPostgres, EmbeddedValkey, dsn_for_database
from app.core.migrations import migrate
from app.core.settings import ROOT, Settings
from app.main import create_app

TEST_JWT_SECRET = "test-jwt-secret-with-enough-entropy-0123456789"

_CONTROLLER_SERVERS: list[EmbeddedPostgres | EmbeddedValkey] = []


def pytest_configure(config: pytest.Config) -> None:
    """The xdist controller (it has `-n`, it is not a worker) starts the embedded servers
    the workers share; a plain run leaves that to the session fixtures below."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        if not os.environ.get("DATABASE_URL"):
            pg = EmbeddedPostgres(ROOT / ".data" / "pg")
            os.environ["DATABASE_URL"] = pg.start()
            _CONTROLLER_SERVERS.append(pg)
        if not os.environ.get("REDIS_URL"):
            valkey = EmbeddedValkey(ROOT / ".data" / "valkey-test")
            os.environ["REDIS_URL"] = valkey.start()
            _CONTROLLER_SERVERS.append(valkey)


def pytest_unconfigure(config: pytest.Config) -> None:
    while _CONTROLLER_SERVERS:
        _CONTROLLER_SERVERS.pop().stop()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres(ROOT / ".data" / "pg")
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedValkey(ROOT / ".data" / "valkey-test")
    yield server.start()
    server.stop()


async def _admin_execute(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_db(pg_admin_url: str) -> AsyncIterator[str]:
    name = f"vw_tmpl_{uuid.uuid4().hex[:10]}"
    await _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}"')
    await migrate(dsn_for_database(pg_admin_url, name))
    yield name
    await _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db_url(pg_admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh database with the full schema, dropped after the test."""
    name = f"vw_t_{uuid.uuid4().hex[:12]}"
    await _admin_execute(
        pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}" STRATEGY FILE_COPY'
    )
    yield dsn_for_database(pg_admin_url, name)
    await _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_db_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A database with no schema at all (migration tests)."""
    name = f"vw_e_{uuid.uuid4().hex[:12]}"
    await _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}"')
    yield dsn_for_database(pg_admin_url, name)
    await _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(db_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        redis_url=redis_url,
        redis_namespace=f"t{uuid.uuid4().hex[:10]}",
        jwt_secret=TEST_JWT_SECRET,
        app_demo=False,
        db_pool_min=1,
        db_pool_max=10,
        log_level="WARNING",
        data_dir=str(ROOT / ".data"),
    )


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test database (autocommit), for arranging and asserting."""
    conn = await asyncpg.connect(db_url)
    await init_connection(conn)
    yield conn
    await conn.close()


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings, run_migrations=False)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c
