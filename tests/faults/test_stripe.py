"""Stripe failing while a session starts (the hold), against the app served by granian:
app → TCP proxy (black hole = timeouts) → HTTP fault proxy (5xx answers,
tests/payments/fixtures.py) → localstripe. A simulated charger is connected.

Shown: a hold that times out, or that Stripe answers 5xx to, is a 503
`payments_unavailable` problem with `Retry-After` within the gateway's deadline; the
session is FAILED (no STARTING row left to block the driver or the connector), the charger
gets nothing; once Stripe answers again the same driver starts on the same connector.
Captures under 5xx/timeouts are tests/payments/test_holds.py
(`test_capture_retried_after_stripe_5xx_captures_once`,
`test_capture_flagged_after_the_last_attempt`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from app.core.settings import Settings
from app.payments.localstripe import DEMO_SECRET_KEY
from app.payments.stripe_client import Gateway
from tests.faultproxy import TcpProxy
from tests.faults.helpers import service_env, stripe_env
from tests.faults.world import World, world_served
from tests.payments.fixtures import FaultProxy, fault_proxy

__all__ = ["fault_proxy"]

pytestmark = pytest.mark.timeout(120)

STRIPE_TIMEOUT_S = 2.0
# Gateway.deadline_s() with one retry: 2 × 2 s + 2 s back-off allowance
DEADLINE_S = STRIPE_TIMEOUT_S * 2 + 2.0
CPID = "CP-P1"


@pytest.fixture
async def stripe_line(fault_proxy: FaultProxy) -> AsyncIterator[TcpProxy]:
    async with TcpProxy.for_url(fault_proxy.url) as proxy:
        yield proxy


def remote_starts(world: World) -> int:
    return sum(1 for a, _ in world.sims[CPID].calls_received if a == "RemoteStartTransaction")


async def failed_start(world: World, driver: dict[str, Any]) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = await world.http.post(
        "/v1/sessions",
        json={"connector_id": world.connectors[(CPID, 1)]},
        headers=driver["headers"],
    )
    return r, time.monotonic() - t0


async def assert_clean_failure(
    world: World, db: asyncpg.Connection, driver: dict[str, Any], r: httpx.Response
) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "payments_unavailable"
    assert r.headers.get("retry-after")
    rows = await db.fetch(
        "SELECT status, ended_at FROM charging_sessions WHERE driver_id = $1::uuid",
        driver["driver_id"],
    )
    assert [row["status"] for row in rows] == ["FAILED"], rows
    assert rows[0]["ended_at"] is not None
    history = await world.http.get("/v1/sessions", headers=driver["headers"])
    assert [s["status"] for s in history.json()["items"]] == ["FAILED"]


async def test_stripe_timeouts_and_5xx_on_the_hold_fail_the_start_cleanly(
    db: asyncpg.Connection,
    settings: Settings,
    fault_proxy: FaultProxy,
    stripe_line: TcpProxy,
) -> None:
    env = service_env(
        settings,
        **stripe_env(stripe_line.url_for(fault_proxy.url), timeout_s=STRIPE_TIMEOUT_S),
    )
    async with world_served(env, db, settings, timeout_s=30) as (world, _api, _probe):
        await world.open([CPID])
        drivers = [await world.driver() for _ in range(3)]

        # --- a black hole: Stripe never answers
        stripe_line.blackhole()
        r, took = await failed_start(world, drivers[0])
        stripe_line.heal()
        print(f"\nhold timed out: {r.status_code} after {took:.1f} s")
        await assert_clean_failure(world, db, drivers[0], r)
        assert took <= DEADLINE_S + 1.5, took
        # --- 5xx on every try (the library's retry included)
        fault_proxy.fail(r"^POST /v1/payment_intents$", times=2)
        r, took = await failed_start(world, drivers[1])
        print(f"hold answered 500: {r.status_code} after {took:.1f} s")
        await assert_clean_failure(world, db, drivers[1], r)
        assert remote_starts(world) == 0  # the charger got nothing

        # --- Stripe is back: the same drivers start on the same connector
        for d in drivers[:2]:
            r = await world.http.post(
                "/v1/sessions",
                json={"connector_id": world.connectors[(CPID, 1)]},
                headers=d["headers"],
            )
            assert r.status_code == 201, r.text
            sid = r.json()["session_id"]
            await world.session_until(d, sid, {"CHARGING", "SUSPENDED"}, within_s=10)
            r = await world.http.post(f"/v1/sessions/{sid}/stop", headers=d["headers"])
            assert r.status_code == 202, r.text
            await world.session_until(d, sid, {"COMPLETED"}, within_s=10)
        assert remote_starts(world) == 2


@pytest.mark.xfail(
    strict=True,
    reason="a hold whose answer was lost (Stripe authorised it, we timed out) is not known "
    "to us, so nothing cancels it: the session is FAILED but the card stays authorised "
    "until Stripe expires it (7 days). Fix: record the attempt before the call and let "
    "reconcile_payments find it by its idempotency key / metadata and cancel it",
)
async def test_a_hold_whose_answer_was_lost_is_known_so_it_can_be_released(
    db: asyncpg.Connection,
    settings: Settings,
    fault_proxy: FaultProxy,
    stripe_line: TcpProxy,
) -> None:
    env = service_env(settings, **stripe_env(stripe_line.url_for(fault_proxy.url)))
    async with world_served(env, db, settings, timeout_s=30) as (world, _api, _probe):
        await world.open([CPID])
        driver = await world.driver()
        # Stripe creates the PaymentIntent, the answer never arrives (each try)
        fault_proxy.fail(r"^POST /v1/payment_intents$", times=2, after=True)
        r, _ = await failed_start(world, driver)
        await assert_clean_failure(world, db, driver, r)
        customer = await db.fetchval(
            "SELECT customer_id FROM stripe_customers WHERE driver_id = $1::uuid",
            driver["driver_id"],
        )
        gateway = Gateway(DEMO_SECRET_KEY, api_base=fault_proxy.upstream)
        try:
            intents = await gateway.v1.payment_intents.list_async({"limit": 100})
        finally:
            await gateway.aclose()
        authorised = [
            pi.id
            for pi in intents.data
            if pi.customer == customer and pi.status == "requires_capture"
        ]
        known = {
            r["payment_intent_id"] for r in await db.fetch("SELECT payment_intent_id FROM payments")
        }
        print(f"\nauthorised at Stripe after the failed start: {authorised}; known: {known}")
        assert authorised, "the fault did not happen"
        # each must at least be known, so that the failed session's release (or
        # reconcile_payments) cancels it
        assert set(authorised) <= known
