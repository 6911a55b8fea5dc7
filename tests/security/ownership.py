"""How to make "another driver's object" for each path parameter of a `/v1` route.

`tests/security/test_access.py` walks `create_app().routes`: every `/v1` route with a path
parameter must find its parameter here, else the test fails (a new route cannot slip
through). An `Owned` entry makes the object for a driver who is not the caller and names
its table and key, so the test can check that the caller gets exactly the 404 a made-up id
gets and that the row did not change. A `Public` entry says why the parameter is nobody's
(sites are shown to everyone). See tests/security/README.md.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.core.auth import Role
from app.core.settings import Settings
from tests.factories import bring_online, charger, import_fleet, make_driver, site, staff_token


@dataclass(frozen=True)
class World:
    """What a factory may use: a direct connection to the test database, and the fleet
    that `make_world` built (one online site with two connectors)."""

    db: asyncpg.Connection
    site_id: str
    charger_id: str
    connector_ids: tuple[str, ...]


@dataclass(frozen=True)
class Owned:
    """`make(world, owner_driver_id) -> id` creates an object of `owner_driver_id`;
    `table`/`key` locate its row (to check nothing changed); `made_up` is an id of the
    same shape that exists for no one."""

    make: Callable[[World, str], Awaitable[str]]
    table: str
    key: str
    made_up: str = str(uuid.UUID(int=1))


@dataclass(frozen=True)
class Public:
    reason: str


async def make_world(client: Any, db: asyncpg.Connection, settings: Settings) -> World:
    token = staff_token(settings, roles=(Role.ADMIN,), staff_id=str(uuid.uuid4()))
    r = await import_fleet(client, token, [site("OWN-1", chargers=[charger("OWN-CP-1")])])
    assert r.status_code == 200, r.text
    await bring_online(db)
    row = await db.fetchrow(
        """SELECT s.site_id, c.charger_id, array_agg(k.connector_id ORDER BY k.connector_no) ks
             FROM sites s JOIN chargers c USING (site_id) JOIN connectors k USING (charger_id)
            WHERE s.external_id = 'OWN-1' GROUP BY s.site_id, c.charger_id"""
    )
    assert row is not None
    return World(
        db=db,
        site_id=str(row["site_id"]),
        charger_id=str(row["charger_id"]),
        connector_ids=tuple(str(k) for k in row["ks"]),
    )


async def other_driver(db: asyncpg.Connection, settings: Settings) -> str:
    phone = f"+4915177{uuid.uuid4().int % 10**6:06d}"
    return (await make_driver(db, settings, phone=phone))["driver_id"]


_SLOTS = itertools.count()


async def _reservation(world: World, owner: str) -> str:
    start = datetime.now(UTC) + timedelta(hours=2, minutes=70 * next(_SLOTS))
    rid = await world.db.fetchval(
        """INSERT INTO reservations (driver_id, connector_id, charger_id, site_id, connector_no,
                                     kind, start_at, expires_at)
           VALUES ($1, $2, $3, $4, 1, 'slot', $5, $6) RETURNING reservation_id""",
        uuid.UUID(owner),
        uuid.UUID(world.connector_ids[0]),
        uuid.UUID(world.charger_id),
        uuid.UUID(world.site_id),
        start,
        start + timedelta(minutes=60),
    )
    return str(rid)


async def _session(world: World, owner: str) -> str:
    sid = await world.db.fetchval(
        """INSERT INTO charging_sessions (charger_id, connector_id, connector_no, id_tag,
                                          id_tag_status, driver_id, status, meter_start_wh,
                                          started_at)
           VALUES ($1, $2, 2, 'OTHERTAG', 'Accepted', $3, 'CHARGING', 0, now())
           RETURNING session_id""",
        uuid.UUID(world.charger_id),
        uuid.UUID(world.connector_ids[1]),
        uuid.UUID(owner),
    )
    return str(sid)


async def _payment_method(world: World, owner: str) -> str:
    pm = f"pm_other{uuid.uuid4().hex[:16]}"
    await world.db.execute(
        """INSERT INTO payment_methods (payment_method_id, driver_id, customer_id, brand, last4)
           VALUES ($1, $2, 'cus_other', 'visa', '4242')""",
        pm,
        uuid.UUID(owner),
    )
    return pm


# Path parameter name → how to make another driver's one (or why it is nobody's).
REGISTRY: dict[str, Owned | Public] = {
    "site_id": Public("sites, their quotes and cheapest starts are public discovery"),
    "reservation_id": Owned(_reservation, table="reservations", key="reservation_id"),
    "session_id": Owned(_session, table="charging_sessions", key="session_id"),
    "payment_method_id": Owned(
        _payment_method,
        table="payment_methods",
        key="payment_method_id",
        made_up="pm_madeup0000000000000000",
    ),
}
