"""Holds, captures and extra payments against localstripe, through the service API the
sessions domain calls and the capture/extra jobs the worker runs."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.clock import Clock
from app.core.settings import Settings
from app.payments import service
from app.payments.schemas import Hold
from app.payments.stripe_client import Gateway
from app.payments.tasks import capture_payment, charge_extra_payment
from tests.factories import make_driver
from tests.payments.fixtures import FaultProxy, driver_with_card

JOBS: dict[str, Any] = {
    "capture_payment": capture_payment,
    "charge_extra_payment": charge_extra_payment,
}


async def run_jobs(ctx: dict[str, Any], job: str) -> list[str]:
    """Run every pending outbox row of `job` now (due or not), as the worker would."""
    rows = await ctx["pool"].fetch(
        "SELECT outbox_id, args FROM outbox WHERE job = $1 AND done_at IS NULL ORDER BY outbox_id",
        job,
    )
    return [await JOBS[job](ctx, r["outbox_id"], **r["args"]) for r in rows]


async def hold_for(
    pool: asyncpg.Pool, gateway: Gateway, driver: dict[str, Any], amount: int = 5000
) -> tuple[uuid.UUID, Hold]:
    session_id = uuid.uuid4()
    hold = await service.place_hold(
        pool,
        gateway,
        driver_id=driver["driver_id"],
        amount_minor=amount,
        currency="EUR",
        idempotency_key=f"hold:{session_id}",
        metadata={"session_id": session_id},
    )
    return session_id, hold


async def settle(
    pool: asyncpg.Pool, session_id: uuid.UUID, driver: dict[str, Any], total: int
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await service.settle_session(
            conn,
            session_id=session_id,
            driver_id=driver["driver_id"],
            total_minor=total,
            currency="EUR",
            now=Clock().now(),
        )


async def test_hold_is_placed_once_per_key(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    driver = await driver_with_card(client, db, settings, phone="+4915100000101")
    session_id, hold = await hold_for(job_ctx["pool"], gateway, driver)
    assert hold.status == "requires_capture"
    assert hold.amount_minor == 5000
    again = await service.place_hold(
        job_ctx["pool"],
        gateway,
        driver_id=driver["driver_id"],
        amount_minor=5000,
        currency="EUR",
        idempotency_key=f"hold:{session_id}",
        metadata={"session_id": session_id},
    )
    assert again.payment_intent_id == hold.payment_intent_id
    intent = await gateway.v1.payment_intents.retrieve_async(hold.payment_intent_id)
    assert intent.status == "requires_capture"
    assert intent.capture_method == "manual"
    assert intent.payment_method == driver["card"]["payment_method_id"]
    assert intent.metadata["session_id"] == str(session_id)
    rows = await db.fetch("SELECT kind, status, amount_minor, session_id FROM payments")
    assert [dict(r) for r in rows] == [
        {
            "kind": "hold",
            "status": "requires_capture",
            "amount_minor": 5000,
            "session_id": session_id,
        }
    ]
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.status, summary.preauth_minor, summary.captured_minor) == (
        "authorized",
        5000,
        0,
    )


async def test_declined_card_and_no_card(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    declined = await driver_with_card(
        client, db, settings, phone="+4915100000102", payment_method_id="pm_card_chargeCustomerFail"
    )
    with pytest.raises(service.CardDeclined) as refused:
        await hold_for(job_ctx["pool"], gateway, declined)
    assert (refused.value.status, refused.value.code) == (402, "card_declined")
    nobody = await make_driver(db, settings, phone="+4915100000103")
    with pytest.raises(service.PaymentMethodRequired) as missing:
        await hold_for(job_ctx["pool"], gateway, nobody)
    assert (missing.value.status, missing.value.code) == (402, "payment_method_required")
    assert await db.fetchval("SELECT count(*) FROM payments WHERE status = 'requires_capture'") == 0


async def test_partial_capture(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    driver = await driver_with_card(client, db, settings, phone="+4915100000104")
    session_id, hold = await hold_for(job_ctx["pool"], gateway, driver)
    await settle(job_ctx["pool"], session_id, driver, 1234)
    pending = await service.session_payment(db, session_id=session_id)
    assert pending.status == "capture_pending"
    assert await run_jobs(job_ctx, "capture_payment") == ["succeeded"]
    assert await run_jobs(job_ctx, "capture_payment") == []
    intent = await gateway.v1.payment_intents.retrieve_async(hold.payment_intent_id)
    assert intent.status == "succeeded"
    charge = intent.latest_charge
    # localstripe books the released rest of a partial capture as a refund
    assert (charge["amount"], charge["amount_refunded"]) == (5000, 5000 - 1234)
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.status, summary.preauth_minor, summary.captured_minor) == (
        "captured",
        5000,
        1234,
    )
    # the same decision again is a no-op; another amount is refused by the database
    async with job_ctx["pool"].acquire() as conn:
        await service.request_capture(
            conn, payment_intent_id=hold.payment_intent_id, amount_minor=1234, now=Clock().now()
        )
        with pytest.raises(service.CaptureConflict):
            await service.request_capture(
                conn, payment_intent_id=hold.payment_intent_id, amount_minor=999, now=Clock().now()
            )
    assert await db.fetchval("SELECT count(*) FROM payment_captures") == 1


async def test_zero_total_cancels_the_hold(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    driver = await driver_with_card(client, db, settings, phone="+4915100000105")
    session_id, hold = await hold_for(job_ctx["pool"], gateway, driver)
    await settle(job_ctx["pool"], session_id, driver, 0)
    assert await run_jobs(job_ctx, "capture_payment") == ["succeeded"]
    intent = await gateway.v1.payment_intents.retrieve_async(hold.payment_intent_id)
    assert intent.status == "canceled"
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.status, summary.captured_minor) == ("canceled", 0)


async def test_bill_above_the_hold_is_a_second_payment(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    driver = await driver_with_card(client, db, settings, phone="+4915100000106")
    session_id, hold = await hold_for(job_ctx["pool"], gateway, driver, amount=5000)
    await settle(job_ctx["pool"], session_id, driver, 6520)
    assert await run_jobs(job_ctx, "capture_payment") == ["succeeded"]
    assert await run_jobs(job_ctx, "charge_extra_payment") == ["succeeded"]
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.status, summary.captured_minor, summary.extra_minor) == ("captured", 6520, 1520)
    extra_id = await db.fetchval(
        "SELECT payment_intent_id FROM payments WHERE kind = 'extra' AND session_id = $1",
        session_id,
    )
    extra = await gateway.v1.payment_intents.retrieve_async(extra_id)
    assert (extra.status, extra.amount) == ("succeeded", 1520)
    assert extra.capture_method != "manual"
    held = await gateway.v1.payment_intents.retrieve_async(hold.payment_intent_id)
    assert held.latest_charge["amount_refunded"] == 0  # captured in full


async def test_declined_extra_payment_is_flagged(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    driver = await driver_with_card(client, db, settings, phone="+4915100000107")
    session_id, _ = await hold_for(job_ctx["pool"], gateway, driver, amount=1000)
    # the driver's card starts declining after the hold
    r = await client.post(
        "/v1/me/payment-methods",
        json={"payment_method_id": "pm_card_chargeCustomerFail"},
        headers={"authorization": f"Bearer {driver['access_token']}"},
    )
    assert r.status_code == 201
    await settle(job_ctx["pool"], session_id, driver, 1500)
    assert await run_jobs(job_ctx, "capture_payment") == ["succeeded"]
    assert await run_jobs(job_ctx, "charge_extra_payment") == ["declined"]
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.status, summary.captured_minor) == ("flagged", 1000)
    alert = await db.fetchrow("SELECT kind, reason, session_id FROM operator_alerts")
    assert dict(alert) == {
        "kind": "payment_extra_failed",
        "reason": "declined",
        "session_id": session_id,
    }


@pytest.mark.parametrize("answer_lost", [False, True])
async def test_capture_retried_after_stripe_5xx_captures_once(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
    fault_proxy: FaultProxy,
    answer_lost: bool,
) -> None:
    """Stripe answers 500 to every try of the library (3 requests): the job schedules the
    next attempt; that one goes through with the same idempotency key. With
    `answer_lost`, the first request did capture at Stripe: the retry sees it and does not
    capture again."""
    driver = await driver_with_card(client, db, settings, phone="+4915100000108")
    session_id, hold = await hold_for(job_ctx["pool"], gateway, driver)
    job_ctx["stripe"] = Gateway.from_settings(
        msgspec.structs.replace(settings, stripe_api_base=fault_proxy.url)
    )
    fault_proxy.fail(r"^POST /v1/payment_intents/pi_\w+/capture", times=3, after=answer_lost)
    await settle(job_ctx["pool"], session_id, driver, 2000)
    assert await run_jobs(job_ctx, "capture_payment") == ["retry"]
    attempts = [line for line in fault_proxy.seen if "/capture" in line]
    assert len(attempts) == 3  # the library's own retries, one idempotency key
    row = await db.fetchrow("SELECT status, attempts, last_error FROM payment_captures")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    next_try = await db.fetchrow(
        "SELECT dedupe_key, available_at > now() AS later FROM outbox "
        "WHERE job = 'capture_payment' AND done_at IS NULL"
    )
    assert next_try["dedupe_key"] == f"capture:{hold.payment_intent_id}:1"
    assert next_try["later"] is True
    assert await run_jobs(job_ctx, "capture_payment") == ["succeeded"]
    intent = await gateway.v1.payment_intents.retrieve_async(hold.payment_intent_id)
    assert intent.status == "succeeded"
    refunds = intent.latest_charge["refunds"]["data"]
    assert [r["amount"] for r in refunds] == [3000]  # one capture: the rest released once
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.status, summary.captured_minor) == ("captured", 2000)
    row = await db.fetchrow("SELECT status, attempts FROM payment_captures")
    assert (row["status"], row["attempts"]) == ("succeeded", 2)


async def test_capture_flagged_after_the_last_attempt(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
    fault_proxy: FaultProxy,
) -> None:
    driver = await driver_with_card(client, db, settings, phone="+4915100000109")
    session_id, hold = await hold_for(job_ctx["pool"], gateway, driver)
    job_ctx["settings"] = msgspec.structs.replace(settings, payment_capture_max_attempts=2)
    job_ctx["stripe"] = Gateway.from_settings(
        msgspec.structs.replace(
            settings, stripe_api_base=fault_proxy.url, stripe_max_network_retries=0
        )
    )
    fault_proxy.fail(r"/capture", times=100)
    await settle(job_ctx["pool"], session_id, driver, 2000)
    assert await run_jobs(job_ctx, "capture_payment") == ["retry"]
    assert await run_jobs(job_ctx, "capture_payment") == ["flagged"]
    assert await run_jobs(job_ctx, "capture_payment") == []
    alert = await db.fetchrow("SELECT kind, reason, payment_intent_id FROM operator_alerts")
    assert dict(alert) == {
        "kind": "payment_capture_failed",
        "reason": "unavailable",
        "payment_intent_id": hold.payment_intent_id,
    }
    summary = await service.session_payment(db, session_id=session_id)
    assert summary.status == "flagged"
    intent = await gateway.v1.payment_intents.retrieve_async(hold.payment_intent_id)
    assert intent.status == "requires_capture"  # still held: an operator decides
