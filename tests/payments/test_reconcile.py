"""The reconciliation cron against localstripe: orphaned stale holds are released, a
flagged capture that Stripe did perform is recognised (not captured again), a hold that
vanished before its capture is raised; and localstripe's own signed webhook deliveries
verify and apply."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from aiohttp import web
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.clock import Clock
from app.core.embedded import free_port
from app.core.settings import Settings
from app.payments import service
from app.payments.localstripe import LocalStripe, register_webhook
from app.payments.stripe_client import Gateway
from app.payments.tasks import reconcile_payments
from tests.payments.fixtures import WEBHOOK_SECRET, driver_with_card
from tests.payments.test_holds import hold_for, run_jobs


async def test_orphaned_stale_hold_is_released(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    driver = await driver_with_card(client, db, settings, phone="+4915100000401")
    _, old = await hold_for(job_ctx["pool"], gateway, driver)
    _, fresh = await hold_for(job_ctx["pool"], gateway, driver)
    await db.execute(
        "UPDATE payments SET created_at = now() - interval '25 hours', "
        "updated_at = now() - interval '25 hours' WHERE payment_intent_id = $1",
        old.payment_intent_id,
    )
    counts = await reconcile_payments(job_ctx)
    assert counts["released"] == 1
    assert (await gateway.v1.payment_intents.retrieve_async(old.payment_intent_id)).status == (
        "canceled"
    )
    assert (await gateway.v1.payment_intents.retrieve_async(fresh.payment_intent_id)).status == (
        "requires_capture"
    )
    statuses = dict(await db.fetch("SELECT payment_intent_id, status FROM payments"))
    assert statuses == {
        old.payment_intent_id: "canceled",
        fresh.payment_intent_id: "requires_capture",
    }
    assert (await reconcile_payments(job_ctx))["released"] == 0


async def test_flagged_capture_that_went_through_is_not_captured_again(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    driver = await driver_with_card(client, db, settings, phone="+4915100000402")
    session_id, hold = await hold_for(job_ctx["pool"], gateway, driver)
    async with job_ctx["pool"].acquire() as conn, conn.transaction():
        await service.request_capture(
            conn, payment_intent_id=hold.payment_intent_id, amount_minor=1800, now=Clock().now()
        )
    # Stripe captured, but every answer was lost and the job gave up.
    await gateway.v1.payment_intents.capture_async(
        hold.payment_intent_id,
        {"amount_to_capture": 1800},
        options={"idempotency_key": f"capture:{hold.payment_intent_id}"},
    )
    await db.execute(
        "UPDATE payment_captures SET status = 'flagged', attempts = 8, done_at = now()"
    )
    await db.execute("UPDATE outbox SET done_at = now()")
    counts = await reconcile_payments(job_ctx)
    assert counts["refreshed"] >= 1
    decided = await db.fetchrow("SELECT status FROM payment_captures")
    assert decided["status"] == "succeeded"
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.status, summary.captured_minor) == ("captured", 1800)
    assert await run_jobs(job_ctx, "capture_payment") == []
    intent = await gateway.v1.payment_intents.retrieve_async(hold.payment_intent_id)
    refunds = intent.to_dict()["latest_charge"]["refunds"]["data"]
    assert [r["amount"] for r in refunds] == [5000 - 1800]  # captured once


async def test_hold_gone_before_its_capture_is_raised(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    driver = await driver_with_card(client, db, settings, phone="+4915100000403")
    session_id, hold = await hold_for(job_ctx["pool"], gateway, driver)
    async with job_ctx["pool"].acquire() as conn, conn.transaction():
        await service.request_capture(
            conn, payment_intent_id=hold.payment_intent_id, amount_minor=900, now=Clock().now()
        )
    # the authorisation expired (Stripe cancels uncaptured holds after ~7 days)
    await gateway.v1.payment_intents.cancel_async(
        hold.payment_intent_id, options={"idempotency_key": str(uuid.uuid4())}
    )
    await db.execute("UPDATE payment_captures SET requested_at = now() - interval '20 minutes'")
    await db.execute("UPDATE outbox SET done_at = now()")
    counts = await reconcile_payments(job_ctx)
    assert counts["alerted"] == 1
    alert = await db.fetchrow("SELECT kind, reason, session_id FROM operator_alerts")
    assert alert["kind"] == "payment_mismatch"
    assert alert["session_id"] == session_id
    assert (await reconcile_payments(job_ctx))["alerted"] == 0  # once


async def test_localstripes_own_deliveries_verify_and_apply(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
    localstripe: LocalStripe,
) -> None:
    """localstripe signs and POSTs `payment_intent.succeeded` itself: catch the delivery
    and hand it to our endpoint unchanged."""
    received: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()

    async def catch(request: web.Request) -> web.Response:
        await received.put((await request.read(), request.headers["Stripe-Signature"]))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", catch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    webhook_id = f"t{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(
        register_webhook,
        localstripe.api_base,
        f"http://127.0.0.1:{port}/hook",
        WEBHOOK_SECRET,
        ("payment_intent.succeeded",),
        webhook_id=webhook_id,
    )
    try:
        driver = await driver_with_card(client, db, settings, phone="+4915100000404")
        _, hold = await hold_for(job_ctx["pool"], gateway, driver)
        await gateway.v1.payment_intents.capture_async(
            hold.payment_intent_id, {"amount_to_capture": 700}, options={"idempotency_key": "x7"}
        )
        body, signature = await asyncio.wait_for(received.get(), timeout=10)
        # other tests' events may arrive too: take ours
        while hold.payment_intent_id.encode() not in body:
            body, signature = await asyncio.wait_for(received.get(), timeout=10)
        r = await client.post(
            "/webhooks/stripe",
            content=body,
            headers={"stripe-signature": signature, "content-type": "application/json"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is False
        row = await db.fetchrow(
            "SELECT status FROM payments WHERE payment_intent_id = $1", hold.payment_intent_id
        )
        assert row["status"] == "succeeded"
    finally:
        # no more deliveries to this test's port
        await asyncio.to_thread(
            register_webhook,
            localstripe.api_base,
            f"http://127.0.0.1:{port}/hook",
            WEBHOOK_SECRET,
            ("none",),
            webhook_id=webhook_id,
        )
        await runner.cleanup()
