"""The reconciliation cron against localstripe: orphaned stale holds are released, a
flagged capture that Stripe did perform is recognised (not captured again), a hold that
vanished before its capture is raised; and localstripe's own signed webhook deliveries
verify and apply."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web

from app.core.embedded import free_port
from app.payments.localstripe import LocalStripe, register_webhook
from app.payments.tasks import reconcile_payments
from tests.payments.fixtures import WEBHOOK_SECRET, Payments


async def test_orphaned_stale_hold_is_released(pay: Payments) -> None:
    driver = await pay.driver()
    _, old = await pay.hold(driver)
    _, fresh = await pay.hold(driver)
    await pay.db.execute(
        "UPDATE payments SET created_at = now() - interval '25 hours', "
        "updated_at = now() - interval '25 hours' WHERE payment_intent_id = $1",
        old.payment_intent_id,
    )
    counts = await reconcile_payments(pay.ctx)
    assert counts["released"] == 1
    assert (await pay.intent(old.payment_intent_id)).status == "canceled"
    assert (await pay.intent(fresh.payment_intent_id)).status == "requires_capture"
    statuses = dict(await pay.db.fetch("SELECT payment_intent_id, status FROM payments"))
    assert statuses == {
        old.payment_intent_id: "canceled",
        fresh.payment_intent_id: "requires_capture",
    }
    assert (await reconcile_payments(pay.ctx))["released"] == 0


async def test_flagged_capture_that_went_through_is_not_captured_again(pay: Payments) -> None:
    session_id, hold = await pay.hold(await pay.driver())
    await pay.request_capture(hold.payment_intent_id, 1800)
    # Stripe captured, but every answer was lost and the job gave up.
    await pay.gateway.v1.payment_intents.capture_async(
        hold.payment_intent_id,
        {"amount_to_capture": 1800},
        options={"idempotency_key": f"capture:{hold.payment_intent_id}"},
    )
    await pay.db.execute(
        "UPDATE payment_captures SET status = 'flagged', attempts = 8, done_at = now()"
    )
    await pay.db.execute("UPDATE outbox SET done_at = now()")
    counts = await reconcile_payments(pay.ctx)
    assert counts["refreshed"] >= 1
    decided = await pay.db.fetchrow("SELECT status FROM payment_captures")
    assert decided["status"] == "succeeded"
    summary = await pay.summary(session_id)
    assert (summary.status, summary.captured_minor) == ("captured", 1800)
    assert await pay.run_jobs("capture_payment") == []
    intent = await pay.intent(hold.payment_intent_id)
    refunds = intent.to_dict()["latest_charge"]["refunds"]["data"]
    assert [r["amount"] for r in refunds] == [5000 - 1800]  # captured once


async def test_hold_gone_before_its_capture_is_raised(pay: Payments) -> None:
    session_id, hold = await pay.hold(await pay.driver())
    await pay.request_capture(hold.payment_intent_id, 900)
    # the authorisation expired (Stripe cancels uncaptured holds after ~7 days)
    await pay.gateway.v1.payment_intents.cancel_async(
        hold.payment_intent_id, options={"idempotency_key": str(uuid.uuid4())}
    )
    await pay.db.execute("UPDATE payment_captures SET requested_at = now() - interval '20 minutes'")
    await pay.db.execute("UPDATE outbox SET done_at = now()")
    counts = await reconcile_payments(pay.ctx)
    assert counts["alerted"] == 1
    alert = await pay.alert()
    assert alert["kind"] == "payment_mismatch"
    assert alert["session_id"] == session_id
    assert (await reconcile_payments(pay.ctx))["alerted"] == 0  # once


async def test_localstripes_own_deliveries_verify_and_apply(
    pay: Payments, localstripe: LocalStripe
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

    async def deliver(*events: str) -> None:
        """localstripe's webhook `webhook_id` posts these events to this test's port."""
        url = f"http://127.0.0.1:{port}/hook"
        await asyncio.to_thread(
            register_webhook,
            localstripe.api_base,
            url,
            WEBHOOK_SECRET,
            events,
            webhook_id=webhook_id,
        )

    await deliver("payment_intent.succeeded")
    try:
        _, hold = await pay.hold(await pay.driver())
        await pay.gateway.v1.payment_intents.capture_async(
            hold.payment_intent_id, {"amount_to_capture": 700}, options={"idempotency_key": "x7"}
        )
        body, signature = await asyncio.wait_for(received.get(), timeout=10)
        # other tests' events may arrive too: take ours
        while hold.payment_intent_id.encode() not in body:
            body, signature = await asyncio.wait_for(received.get(), timeout=10)
        r = await pay.client.post(
            "/webhooks/stripe",
            content=body,
            headers={"stripe-signature": signature, "content-type": "application/json"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is False
        assert (await pay.payment(hold.payment_intent_id))["status"] == "succeeded"
    finally:
        await deliver("none")  # no more deliveries to this test's port
        await runner.cleanup()
