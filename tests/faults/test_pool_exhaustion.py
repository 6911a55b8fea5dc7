"""More concurrent requests with an Idempotency-Key than one API process has pooled
connections (granian, one worker): each holds a connection for its whole run (its stored
answer commits with what it did) and its handler takes another one (the driver guard,
services that run on the pool). Without a bound the worker stalled for good, every
connection held by a request waiting for a second one (found by the PostgreSQL fault test:
the first burst of writes after start-up hung); app/core/idempotency.py now lets at most
half the pool be held that way."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from app.core.settings import Settings
from tests.factories import auth, make_driver
from tests.faults.helpers import service_env
from tests.servers import served

pytestmark = pytest.mark.timeout(90)

POOL = 4


async def test_a_burst_of_keyed_writes_beyond_the_pool_size_is_answered(
    db: asyncpg.Connection, settings: Settings
) -> None:
    drivers = [
        await make_driver(db, settings, phone=f"+4915100079{i:03d}") for i in range(3 * POOL)
    ]
    env = service_env(settings, DB_POOL_MIN="1", DB_POOL_MAX=str(POOL))
    async with (
        served(env, workers=1) as (base, _),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):

        async def write(d: dict[str, str], n: int) -> int:
            r = await http.patch(
                "/v1/me",
                json={"name": f"burst {n}"},
                headers={**auth(d["access_token"]), "idempotency-key": f"burst-{n}"},
            )
            return r.status_code

        for round_ in range(2):
            async with asyncio.timeout(15):  # a stall fails here, not at the suite's limit
                codes = await asyncio.gather(
                    *(write(d, round_ * 100 + i) for i, d in enumerate(drivers))
                )
            assert codes == [200] * len(drivers)
