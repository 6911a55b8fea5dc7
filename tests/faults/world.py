"""A small charging world on a service running in other processes: one site with a tariff
in force, chargers simulated over OCPP from this process (`app.sim`), drivers with a card
saved through the API (localstripe behind the service)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from app.core.auth import Role
from app.core.settings import Settings
from app.sim import SimCharger, SimOptions
from tests.chargers.conftest import fast_sim
from tests.factories import (
    auth,
    charger,
    driver_on,
    energy_tariff,
    import_fleet,
    session_view,
    site,
    staff_token,
)
from tests.faults.helpers import client_ports, holder_of, until
from tests.servers import Process, fresh_client, served

PASSWORD = "fault-charger-password-01"
TARIFF = energy_tariff("Faults")
LAT, LON = 52.52, 13.405


def sim_options(**overrides: Any) -> SimOptions:
    """A charger that reconnects fast, starts at once on RemoteStart (no car) and
    answers everything: `fast_sim`, with its retries a little further apart."""
    return fast_sim(**{"reconnect_max_s": 0.3, "tx_retry_interval_s": 0.1, **overrides})


@dataclass
class World:
    http: httpx.AsyncClient
    db: asyncpg.Connection
    settings: Settings
    base: str
    site_id: str = ""
    connectors: dict[tuple[str, int], str] = field(default_factory=dict)  # (cpid, no) → id
    sims: dict[str, SimCharger] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)  # cpid → local port of its socket
    phones: int = 0

    @property
    def admin(self) -> dict[str, str]:
        return auth(staff_token(self.settings, roles=(Role.ADMIN,)))

    async def build(self, chargers: list[str]) -> None:
        r = await import_fleet(
            self.http,  # type: ignore[arg-type]
            staff_token(self.settings, roles=(Role.ADMIN,)),
            [
                site(
                    "FAULTS-1",
                    lat=LAT,
                    lon=LON,
                    chargers=[charger(cpid, password=PASSWORD) for cpid in chargers],
                )
            ],
        )
        assert r.status_code == 200, r.text
        rows = await self.db.fetch(
            """SELECT c.charge_point_id, k.connector_no, k.connector_id::text AS id,
                      c.site_id::text AS site_id
                 FROM connectors k JOIN chargers c USING (charger_id)"""
        )
        self.connectors = {(r["charge_point_id"], r["connector_no"]): r["id"] for r in rows}
        self.site_id = rows[0]["site_id"]
        r = await self.http.post("/admin/v1/tariffs", json=TARIFF, headers=self.admin)
        assert r.status_code == 201, r.text
        r = await self.http.post(
            "/admin/v1/tariff-assignments",
            json={
                "tariff_id": r.json()["tariff_id"],
                "site_id": self.site_id,
                "effective_from": "2020-01-01T00:00:00Z",
            },
            headers=self.admin,
        )
        assert r.status_code == 201, r.text

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    async def connect(self, cpid: str, options: SimOptions | None = None) -> SimCharger:
        """Connect a simulated charger (and remember the local port of its socket)."""
        before = client_ports(self.port)
        sim = SimCharger(
            self.base.replace("http://", "ws://") + "/ocpp",
            cpid,
            PASSWORD,
            connectors=[1, 2],
            options=options or sim_options(),
        )
        sim.start()
        await sim.wait_online(20)
        self.sims[cpid] = sim
        new = client_ports(self.port) - before
        if len(new) == 1:
            self.ports[cpid] = new.pop()
        return sim

    async def rejoin(self, cpid: str) -> None:
        """Drop the charger's socket and wait until it is back (on whichever worker)."""
        sim = self.sims[cpid]
        before = client_ports(self.port)
        count = sim.connection_count
        sim.drop_connection(reconnect=True)
        await sim.wait_until(lambda: sim.online and sim.connection_count > count, 20)
        new = client_ports(self.port) - before
        self.ports.pop(cpid, None)
        if len(new) == 1:
            self.ports[cpid] = new.pop()

    async def spread(self, server: Process, *, tries: int = 12) -> dict[str, int | None]:
        """Reconnect chargers until both API workers hold some (granian hands a new
        connection to whichever worker accepts first); returns who holds which."""
        holders = self.holders(server)
        for _ in range(tries):
            by_worker: dict[int | None, list[str]] = {}
            for cpid, pid in holders.items():
                by_worker.setdefault(pid, []).append(cpid)
            if len(by_worker) >= 2 and None not in by_worker:
                break
            crowded = max(by_worker.values(), key=len)
            await self.rejoin(crowded[0])
            holders = self.holders(server)
        return holders

    def holders(self, server: Process) -> dict[str, int | None]:
        """Which API worker (pid) holds each charger's WebSocket."""
        return {cpid: holder_of(server, port) for cpid, port in self.ports.items()}

    async def wait_online(self, cpids: list[str], *, within_s: float = 20) -> None:
        async def online() -> bool:
            n = await self.db.fetchval(
                """SELECT count(*) FROM charger_connectivity h JOIN chargers c USING (charger_id)
                    WHERE c.charge_point_id = ANY($1::text[]) AND h.state = 'online'""",
                cpids,
            )
            return bool(n == len(cpids))

        await until(online, within_s=within_s, what=f"{cpids} online")

    async def open(self, chargers: list[str]) -> None:
        """The site with `chargers` built and each connected (its own connection, so
        granian spreads them over its workers) and seen online."""
        await self.build(chargers)
        for cpid in chargers:
            await self.connect(cpid)
        await self.wait_online(chargers)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sims.values()), return_exceptions=True)

    async def driver(self, *, card: str | None = "pm_card_visa") -> dict[str, Any]:
        self.phones += 1
        phone = f"+49151888{self.phones:05d}"
        return await driver_on(self.http, self.db, self.settings, phone=phone, card=card)

    async def nearby(self) -> httpx.Response:
        return await self.http.get(
            "/v1/chargers/nearby", params={"lat": LAT, "lon": LON, "radius_m": 2000}
        )

    async def session(self, driver: dict[str, Any], session_id: str) -> dict[str, Any]:
        return await session_view(self.http, driver, session_id)

    async def session_until(
        self, driver: dict[str, Any], session_id: str, statuses: set[str], *, within_s: float
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}

        async def probe() -> bool:
            nonlocal last
            last = await self.session(driver, session_id)
            return last["status"] in statuses

        try:
            await until(probe, within_s=within_s, what=f"session in {statuses}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen {last}") from None
        return last


@asynccontextmanager
async def world_served(
    env: dict[str, str], db: asyncpg.Connection, settings: Settings, *, timeout_s: float = 20
) -> AsyncIterator[tuple[World, Process, httpx.AsyncClient]]:
    """The service (granian, 2 workers) on `env` and a World on it; yields the world, the
    server process and a client that opens a new connection per request (a probe that
    reaches every worker). The world's chargers are closed on the way out."""
    async with (
        served(env) as (base, api),
        httpx.AsyncClient(base_url=base, timeout=timeout_s) as http,
        fresh_client(base) as probe,
    ):
        world = World(http, db, settings, base)
        try:
            yield world, api, probe
        finally:
            await world.close()
