"""Redis down for 30 s under the real service: granian (2 API workers) and the arq worker
reach Redis through a TCP proxy that is stopped (connections reset, new ones refused),
as when the Redis server dies; chargers are simulated over OCPP and spread over both API
workers; localstripe plays Stripe and the recording stand-in plays Twilio.

What "keeps working" means (TARGETS.md "Reliability", API.md):
- `/health/ready` says 503 naming Redis; `/health/live` stays 200; SMS-code login, whose
  send limits live in Redis, fails closed with a 503 problem;
- nearby search answers 200 with the fleet as it is (it never touches Redis);
- `POST /v1/reservations` holds a connector now: 201 and the charger gets ReserveNow,
  whichever API worker holds its WebSocket; `DELETE` cancels it and the charger gets
  CancelReservation;
- `POST /v1/sessions` starts: 201, the charger gets RemoteStartTransaction and starts;
  `POST …/stop` stops it and the session is billed. Commands between API workers travel on
  PostgreSQL NOTIFY while Redis cannot carry them (app/chargers/commands.py);
- what needs the arq worker (the capture of the bill, the alert SMS) is written to the
  outbox in PostgreSQL and runs once Redis is back: none lost, none twice.
After Redis returns, commands travel over Redis again (the routers resubscribe)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.settings import Settings
from app.payments.localstripe import LocalStripe
from tests.faultproxy import TcpProxy
from tests.faults.helpers import service_env, stripe_env, twilio_env, until
from tests.faults.world import World, world_served
from tests.servers import Process, arq_worker, fresh_client, served
from tests.standins.twilio import TwilioStandIn

pytestmark = pytest.mark.timeout(180)

OUTAGE_S = 30.0
CHARGERS = ["CP-R1", "CP-R2", "CP-R3", "CP-R4"]


@pytest.fixture
async def redis_proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    async with TcpProxy.for_url(settings.redis_url) as proxy:
        yield proxy


def received(world: World, cpid: str, action: str) -> list[dict[str, Any]]:
    return [p for a, p in world.sims[cpid].calls_received if a == action]


async def reserve_and_cancel(world: World, driver: dict[str, Any], cpid: str) -> str:
    """A hold now on connector 1 of `cpid`, then cancelled; returns the reservation id."""
    before = len(received(world, cpid, "ReserveNow"))
    r = await world.http.post(
        "/v1/reservations",
        json={"connector_id": world.connectors[(cpid, 1)]},
        headers=driver["headers"],
    )
    assert r.status_code == 201, f"{cpid}: {r.status_code} {r.text}"
    assert len(received(world, cpid, "ReserveNow")) == before + 1
    reservation_id: str = r.json()["reservation_id"]
    cancels = len(received(world, cpid, "CancelReservation"))
    r = await world.http.delete(f"/v1/reservations/{reservation_id}", headers=driver["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "CANCELLED"

    async def cancelled_at_charger() -> bool:
        return len(received(world, cpid, "CancelReservation")) > cancels

    await until(cancelled_at_charger, within_s=5, what=f"CancelReservation at {cpid}")
    return reservation_id


async def start_and_stop(world: World, driver: dict[str, Any], cpid: str) -> str:
    """A session on connector 2 of `cpid`: started from the app, charging, stopped, billed;
    returns its id."""
    r = await world.http.post(
        "/v1/sessions",
        json={"connector_id": world.connectors[(cpid, 2)]},
        headers=driver["headers"],
    )
    assert r.status_code == 201, f"{cpid}: {r.status_code} {r.text}"
    session_id: str = r.json()["session_id"]
    await world.session_until(driver, session_id, {"CHARGING", "SUSPENDED"}, within_s=10)
    r = await world.http.post(f"/v1/sessions/{session_id}/stop", headers=driver["headers"])
    assert r.status_code == 202, r.text
    done = await world.session_until(driver, session_id, {"COMPLETED"}, within_s=10)
    assert done["receipt"] is not None, done
    return session_id


async def test_redis_down_30_s_search_reservations_and_sessions_keep_working(
    db: asyncpg.Connection,
    settings: Settings,
    redis_proxy: TcpProxy,
    localstripe: LocalStripe,
    twilio: TwilioStandIn,
) -> None:
    env = service_env(
        settings,
        REDIS_URL=redis_proxy.url_for(settings.redis_url),
        **stripe_env(localstripe.api_base),
        **twilio_env(twilio),
    )
    worker: Process = arq_worker(env)
    async with (
        served(env) as (base, api),
        httpx.AsyncClient(base_url=base, timeout=20) as http,
        fresh_client(base) as probe,
    ):
        worker.start()
        world = World(http, db, settings, base)
        try:
            await world.open(CHARGERS)
            holders = await world.spread(api)
            assert None not in holders.values(), holders
            assert len(set(holders.values())) == 2, f"all chargers on one worker: {holders}"
            drivers = [await world.driver() for _ in CHARGERS]

            # Before: everything works with Redis
            await reserve_and_cancel(world, drivers[0], CHARGERS[0])

            # --- Redis dies
            await redis_proxy.stop()
            down_at = time.monotonic()

            async def redis_down() -> bool:
                r = await probe.get("/health/ready")
                return r.status_code == 503 and r.json()["checks"]["redis"] != "ok"

            await until(redis_down, within_s=5, what="/health/ready 503 for Redis", log=api)
            assert (await probe.get("/health/live")).status_code == 200
            # SMS-code login keeps its send limits in Redis: it fails closed, clearly
            r = await http.post("/v1/auth/otp", json={"phone": "+4915112345678"})
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")

            searches: Counter[int] = Counter()
            sessions: list[tuple[dict[str, Any], str]] = []
            for i, cpid in enumerate(CHARGERS):
                r = await world.nearby()
                searches[r.status_code] += 1
                assert r.status_code == 200, r.text
                shown = {k["connector_id"] for s in r.json()["items"] for k in s["connectors"]}
                assert shown == set(world.connectors.values())
                await reserve_and_cancel(world, drivers[i], cpid)
                sessions.append((drivers[i], await start_and_stop(world, drivers[i], cpid)))
            in_outage = time.monotonic() - down_at
            while time.monotonic() - down_at < OUTAGE_S:
                r = await world.nearby()
                searches[r.status_code] += 1
                await asyncio.sleep(0.5)
            assert set(searches) == {200}, searches
            # Nothing that needs the worker ran: the captures wait in the outbox
            for driver, sid in sessions:
                view = await world.session(driver, sid)
                assert view["payment"]["captured_minor"] in (0, None), view
            pending = await db.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NULL")
            assert pending > 0
            assert worker.alive(), worker.output()

            # --- Redis is back
            await redis_proxy.start()
            back_at = time.monotonic()

            async def ready() -> bool:
                return (await probe.get("/health/ready")).status_code == 200

            await until(ready, within_s=10, what="/health/ready 200", log=api)
            ready_after = time.monotonic() - back_at

            async def outbox_done() -> bool:
                left = await db.fetchval(
                    "SELECT count(*) FROM outbox WHERE done_at IS NULL AND available_at <= now()"
                )
                return bool(left == 0)

            await until(outbox_done, within_s=40, what="the outbox drained", log=worker)
            drained_after = time.monotonic() - back_at
            for driver, sid in sessions:
                view = await world.session(driver, sid)
                assert view["payment"]["captured_minor"] == view["receipt"]["total_minor"], view
            captures = await db.fetch(
                "SELECT payment_intent_id, count(*) AS n FROM payment_captures GROUP BY 1"
            )
            assert all(r["n"] == 1 for r in captures)
            sent = Counter((m["to"], m["body"]) for m in twilio.messages)
            assert sent
            assert max(sent.values()) == 1, sent  # every alert once

            # Commands ride on Redis again, to chargers on either worker
            for i, cpid in enumerate(CHARGERS):
                await reserve_and_cancel(world, drivers[i], cpid)
            print(
                f"\nRedis away {OUTAGE_S:.0f} s: {len(CHARGERS)} holds + cancels and "
                f"{len(sessions)} sessions started, stopped and billed in the first "
                f"{in_outage:.1f} s; searches {dict(searches)}; ready {ready_after:.1f} s "
                f"after Redis returned, outbox drained after {drained_after:.1f} s; "
                f"{len(twilio.messages)} SMS"
            )
        finally:
            await world.close()
            worker.close()


async def test_redis_black_holed_commands_fall_back_within_a_second_or_two(
    db: asyncpg.Connection,
    settings: Settings,
    redis_proxy: TcpProxy,
    localstripe: LocalStripe,
) -> None:
    """A partition rather than a dead server: Redis accepts nothing and answers nothing
    (no error ever comes back). Each publish gives up after 1 s and the command rides on
    PostgreSQL; readiness says Redis is down; after the partition heals the subscriptions
    come back (the proxy resets the stale connections, as a healed network would after
    the peers' timeouts)."""
    env = service_env(
        settings,
        REDIS_URL=redis_proxy.url_for(settings.redis_url),
        **stripe_env(localstripe.api_base),
    )
    async with world_served(env, db, settings) as (world, api, probe):
        await world.open(CHARGERS[:2])
        holders = await world.spread(api)
        assert len(set(holders.values())) == 2, holders
        driver = await world.driver()

        redis_proxy.blackhole()

        async def redis_down() -> bool:
            r = await probe.get("/health/ready")
            return r.status_code == 503 and r.json()["checks"]["redis"] != "ok"

        await until(redis_down, within_s=5, what="/health/ready 503 for Redis", log=api)
        took = []
        for cpid in CHARGERS[:2]:
            t0 = time.monotonic()
            await reserve_and_cancel(world, driver, cpid)
            took.append(time.monotonic() - t0)
        sid = await start_and_stop(world, driver, CHARGERS[1])
        assert (await world.session(driver, sid))["receipt"] is not None

        redis_proxy.heal()

        async def ready() -> bool:
            return (await probe.get("/health/ready")).status_code == 200

        await until(ready, within_s=10, what="/health/ready 200", log=api)
        for cpid in CHARGERS[:2]:
            await reserve_and_cancel(world, driver, cpid)
        print(f"\nRedis black-holed: hold + cancel took {[round(t, 2) for t in took]} s")
        assert max(took) < 8, took
