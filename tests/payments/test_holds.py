"""Holds, captures and extra payments against localstripe, through the service API the
sessions domain calls and the capture/extra jobs the worker runs."""

from __future__ import annotations

import msgspec
import pytest

from app.payments import service
from tests.payments.fixtures import FaultProxy, Payments


async def test_hold_is_placed_once_per_key(pay: Payments) -> None:
    driver = await pay.driver()
    session_id, hold = await pay.hold(driver)
    assert hold.status == "requires_capture"
    assert hold.amount_minor == 5000
    _, again = await pay.hold(driver, session_id=session_id)
    assert again.payment_intent_id == hold.payment_intent_id
    intent = await pay.intent(hold.payment_intent_id)
    assert intent.status == "requires_capture"
    assert intent.capture_method == "manual"
    assert intent.payment_method == driver["card"]["payment_method_id"]
    assert intent.metadata["session_id"] == str(session_id)
    rows = await pay.db.fetch("SELECT kind, status, amount_minor, session_id FROM payments")
    assert [dict(r) for r in rows] == [
        {
            "kind": "hold",
            "status": "requires_capture",
            "amount_minor": 5000,
            "session_id": session_id,
        }
    ]
    summary = await pay.summary(session_id)
    assert (summary.status, summary.preauth_minor, summary.captured_minor) == (
        "authorized",
        5000,
        0,
    )


async def test_declined_card_and_no_card(pay: Payments) -> None:
    declined = await pay.driver(card="pm_card_chargeCustomerFail")
    with pytest.raises(service.CardDeclined) as refused:
        await pay.hold(declined)
    assert (refused.value.status, refused.value.code) == (402, "card_declined")
    nobody = await pay.driver(card=None)
    with pytest.raises(service.PaymentMethodRequired) as missing:
        await pay.hold(nobody)
    assert (missing.value.status, missing.value.code) == (402, "payment_method_required")
    assert (
        await pay.db.fetchval("SELECT count(*) FROM payments WHERE status = 'requires_capture'")
        == 0
    )


async def test_partial_capture(pay: Payments) -> None:
    driver = await pay.driver()
    session_id, hold = await pay.hold(driver)
    await pay.settle(session_id, driver, 1234)
    assert (await pay.summary(session_id)).status == "capture_pending"
    assert await pay.run_jobs("capture_payment") == ["succeeded"]
    assert await pay.run_jobs("capture_payment") == []
    intent = await pay.intent(hold.payment_intent_id)
    assert intent.status == "succeeded"
    charge = intent.latest_charge
    # localstripe books the released rest of a partial capture as a refund
    assert (charge["amount"], charge["amount_refunded"]) == (5000, 5000 - 1234)
    summary = await pay.summary(session_id)
    assert (summary.status, summary.preauth_minor, summary.captured_minor) == (
        "captured",
        5000,
        1234,
    )
    # the same decision again is a no-op; another amount is refused by the database
    await pay.request_capture(hold.payment_intent_id, 1234)
    with pytest.raises(service.CaptureConflict):
        await pay.request_capture(hold.payment_intent_id, 999)
    assert await pay.db.fetchval("SELECT count(*) FROM payment_captures") == 1


async def test_zero_total_cancels_the_hold(pay: Payments) -> None:
    driver = await pay.driver()
    session_id, hold = await pay.hold(driver)
    await pay.settle(session_id, driver, 0)
    assert await pay.run_jobs("capture_payment") == ["succeeded"]
    assert (await pay.intent(hold.payment_intent_id)).status == "canceled"
    summary = await pay.summary(session_id)
    assert (summary.status, summary.captured_minor) == ("canceled", 0)


async def test_bill_above_the_hold_is_a_second_payment(pay: Payments) -> None:
    driver = await pay.driver()
    session_id, hold = await pay.hold(driver, amount=5000)
    await pay.settle(session_id, driver, 6520)
    assert await pay.run_jobs("capture_payment") == ["succeeded"]
    assert await pay.run_jobs("charge_extra_payment") == ["succeeded"]
    summary = await pay.summary(session_id)
    assert (summary.status, summary.captured_minor, summary.extra_minor) == ("captured", 6520, 1520)
    extra_id = await pay.db.fetchval(
        "SELECT payment_intent_id FROM payments WHERE kind = 'extra' AND session_id = $1",
        session_id,
    )
    extra = await pay.intent(extra_id)
    assert (extra.status, extra.amount) == ("succeeded", 1520)
    assert extra.capture_method != "manual"
    held = await pay.intent(hold.payment_intent_id)
    assert held.latest_charge["amount_refunded"] == 0  # captured in full


async def test_declined_extra_payment_is_flagged(pay: Payments) -> None:
    driver = await pay.driver()
    session_id, _ = await pay.hold(driver, amount=1000)
    # the driver's card starts declining after the hold
    r = await pay.add_card(driver, "pm_card_chargeCustomerFail")
    assert r.status_code == 201
    await pay.settle(session_id, driver, 1500)
    assert await pay.run_jobs("capture_payment") == ["succeeded"]
    assert await pay.run_jobs("charge_extra_payment") == ["declined"]
    summary = await pay.summary(session_id)
    assert (summary.status, summary.captured_minor) == ("flagged", 1000)
    extra_id = await pay.db.fetchval("SELECT payment_intent_id FROM payments WHERE kind = 'extra'")
    assert await pay.alert() == {
        "kind": "payment_extra_failed",
        "reason": "declined",
        "session_id": session_id,
        "payment_intent_id": extra_id,
    }


@pytest.mark.parametrize("answer_lost", [False, True])
async def test_capture_retried_after_stripe_5xx_captures_once(
    pay: Payments, fault_proxy: FaultProxy, answer_lost: bool
) -> None:
    """Stripe answers 500 to every try of the library (3 requests): the job schedules the
    next attempt; that one goes through with the same idempotency key. With
    `answer_lost`, the first request did capture at Stripe: the retry sees it and does not
    capture again."""
    driver = await pay.driver()
    session_id, hold = await pay.hold(driver)
    pay.jobs_through(fault_proxy)
    fault_proxy.fail(r"^POST /v1/payment_intents/pi_\w+/capture", times=3, after=answer_lost)
    await pay.settle(session_id, driver, 2000)
    assert await pay.run_jobs("capture_payment") == ["retry"]
    attempts = [line for line in fault_proxy.seen if "/capture" in line]
    assert len(attempts) == 3  # the library's own retries, one idempotency key
    row = await pay.db.fetchrow("SELECT status, attempts, last_error FROM payment_captures")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    next_try = await pay.db.fetchrow(
        "SELECT dedupe_key, available_at > now() AS later FROM outbox "
        "WHERE job = 'capture_payment' AND done_at IS NULL"
    )
    assert next_try["dedupe_key"] == f"capture:{hold.payment_intent_id}:1"
    assert next_try["later"] is True
    assert await pay.run_jobs("capture_payment") == ["succeeded"]
    intent = await pay.intent(hold.payment_intent_id)
    assert intent.status == "succeeded"
    refunds = intent.latest_charge["refunds"]["data"]
    assert [r["amount"] for r in refunds] == [3000]  # one capture: the rest released once
    summary = await pay.summary(session_id)
    assert (summary.status, summary.captured_minor) == ("captured", 2000)
    row = await pay.db.fetchrow("SELECT status, attempts FROM payment_captures")
    assert (row["status"], row["attempts"]) == ("succeeded", 2)


async def test_capture_flagged_after_the_last_attempt(
    pay: Payments, fault_proxy: FaultProxy
) -> None:
    driver = await pay.driver()
    session_id, hold = await pay.hold(driver)
    pay.ctx["settings"] = msgspec.structs.replace(pay.settings, payment_capture_max_attempts=2)
    pay.jobs_through(fault_proxy, stripe_max_network_retries=0)
    fault_proxy.fail(r"/capture", times=100)
    await pay.settle(session_id, driver, 2000)
    assert await pay.run_jobs("capture_payment") == ["retry"]
    assert await pay.run_jobs("capture_payment") == ["flagged"]
    assert await pay.run_jobs("capture_payment") == []
    assert await pay.alert() == {
        "kind": "payment_capture_failed",
        "reason": "unavailable",
        "session_id": session_id,
        "payment_intent_id": hold.payment_intent_id,
    }
    assert (await pay.summary(session_id)).status == "flagged"
    intent = await pay.intent(hold.payment_intent_id)
    assert intent.status == "requires_capture"  # still held: an operator decides
