"""`POST /admin/v1/sessions/{id}/refund`: partial, full, over what was captured (409),
idempotent with an Idempotency-Key, split over the hold and the extra payment, audited."""

from __future__ import annotations

import uuid

import httpx

from app.core.auth import Role
from app.core.settings import Settings
from tests.factories import auth, staff_token
from tests.payments.fixtures import Payments


async def paid_session(pay: Payments, *, hold: int, total: int) -> uuid.UUID:
    """A session held for `hold` and paid `total` (captured, plus an extra payment)."""
    driver = await pay.driver()
    session_id, _ = await pay.hold(driver, amount=hold)
    await pay.settle(session_id, driver, total)
    assert await pay.run_jobs("capture_payment") == ["succeeded"]
    if total > hold:
        assert await pay.run_jobs("charge_extra_payment") == ["succeeded"]
    return session_id


def admin(settings: Settings, *, key: str | None = None) -> dict[str, str]:
    headers = auth(staff_token(settings, roles=(Role.OPERATOR,), staff_id="op-7"))
    if key:
        headers["idempotency-key"] = key
    return headers


async def refund(
    pay: Payments,
    session_id: uuid.UUID | str,
    amount: int,
    reason: str = "x",
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """The refund request, as an operator (under `key`) unless `headers` say otherwise."""
    return await pay.client.post(
        f"/admin/v1/sessions/{session_id}/refund",
        json={"amount_minor": amount, "reason": reason},
        headers=headers or admin(pay.settings, key=key),
    )


async def test_partial_then_full_then_over(pay: Payments) -> None:
    session_id = await paid_session(pay, hold=5000, total=2000)
    r = await refund(pay, session_id, 500, "connector fault")
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["amount_minor"] == 500
    assert first["refund_id"].startswith("re_")
    stripe_refund = await pay.gateway.v1.refunds.retrieve_async(first["refund_id"])
    assert stripe_refund.amount == 500
    assert stripe_refund.metadata["reason"] == "connector fault"
    summary = await pay.summary(session_id)
    assert (summary.status, summary.captured_minor, summary.refunded_minor) == (
        "partially_refunded",
        2000,
        500,
    )
    audit = await pay.db.fetchrow(
        "SELECT actor_id, action, entity_id, before, after FROM audit_log WHERE action = 'session.refund'"
    )
    assert audit["actor_id"] == "op-7"
    assert audit["entity_id"] == str(session_id)
    assert audit["before"]["refunded_minor"] == 0
    assert audit["after"]["refunded_minor"] == 500
    assert audit["after"]["reason"] == "connector fault"

    too_much = await refund(pay, session_id, 1501)
    assert too_much.status_code == 409
    assert too_much.json()["code"] == "refund_exceeds_captured"
    rest = await refund(pay, session_id, 1500, "goodwill")
    assert rest.status_code == 201, rest.text
    summary = await pay.summary(session_id)
    assert (summary.status, summary.refunded_minor) == ("refunded", 2000)
    assert (await refund(pay, session_id, 1)).status_code == 409
    assert await pay.db.fetchval("SELECT count(*) FROM payment_refunds") == 2


async def test_refund_is_idempotent_with_a_key(pay: Payments) -> None:
    session_id = await paid_session(pay, hold=5000, total=3000)
    first = await refund(pay, session_id, 1000, "double charge", key="refund-1")
    again = await refund(pay, session_id, 1000, "double charge", key="refund-1")
    assert first.status_code == again.status_code == 201
    assert again.json()["refund_id"] == first.json()["refund_id"]
    assert await pay.db.fetchval("SELECT count(*) FROM payment_refunds") == 1
    intent_id = await pay.db.fetchval(
        "SELECT payment_intent_id FROM payments WHERE session_id = $1", session_id
    )
    intent = await pay.intent(intent_id)
    refunds = intent.to_dict()["latest_charge"]["refunds"]["data"]
    ours = [r for r in refunds if r["metadata"].get("reason")]
    assert [r["amount"] for r in ours] == [1000]
    assert (await pay.summary(session_id)).refunded_minor == 1000


async def test_refund_spans_the_hold_and_the_extra_payment(pay: Payments) -> None:
    session_id = await paid_session(pay, hold=1000, total=1500)
    r = await refund(pay, session_id, 1200, "tariff error")
    assert r.status_code == 201, r.text
    rows = await pay.db.fetch(
        """SELECT p.kind, r.amount_minor FROM payment_refunds r
           JOIN payments p USING (payment_intent_id) ORDER BY p.kind DESC"""
    )
    assert [tuple(x) for x in rows] == [("hold", 1000), ("extra", 200)]
    summary = await pay.summary(session_id)
    assert (summary.captured_minor, summary.refunded_minor) == (1500, 1200)


async def test_unknown_session_and_bad_body(pay: Payments) -> None:
    assert (await refund(pay, uuid.uuid4(), 100)).status_code == 404
    assert (await refund(pay, "not-a-uuid", 100)).status_code == 404
    r = await refund(pay, uuid.uuid4(), 0)
    assert r.status_code == 422
    assert r.json()["code"] == "validation_failed"
    viewer = auth(staff_token(pay.settings, roles=(Role.VIEWER,)))
    assert (await refund(pay, uuid.uuid4(), 100, headers=viewer)).status_code == 403
