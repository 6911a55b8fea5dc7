"""`POST /admin/v1/sessions/{id}/refund`: partial, full, over what was captured (409),
idempotent with an Idempotency-Key, split over the hold and the extra payment, audited."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.clock import Clock
from app.core.settings import Settings
from app.payments import service
from app.payments.stripe_client import Gateway
from tests.factories import auth, staff_token
from tests.payments.fixtures import driver_with_card
from tests.payments.test_holds import run_jobs


async def paid_session(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
    *,
    phone: str,
    hold: int,
    total: int,
) -> tuple[uuid.UUID, dict[str, Any]]:
    """A session held for `hold` and paid `total` (captured, plus an extra payment)."""
    driver = await driver_with_card(client, db, settings, phone=phone)
    session_id = uuid.uuid4()
    pool = job_ctx["pool"]
    await service.place_hold(
        pool,
        gateway,
        driver_id=driver["driver_id"],
        amount_minor=hold,
        currency="EUR",
        idempotency_key=f"hold:{session_id}",
        metadata={"session_id": session_id},
    )
    async with pool.acquire() as conn, conn.transaction():
        await service.settle_session(
            conn,
            session_id=session_id,
            driver_id=driver["driver_id"],
            total_minor=total,
            currency="EUR",
            now=Clock().now(),
        )
    assert await run_jobs(job_ctx, "capture_payment") == ["succeeded"]
    if total > hold:
        assert await run_jobs(job_ctx, "charge_extra_payment") == ["succeeded"]
    return session_id, driver


def admin(settings: Settings, *, key: str | None = None) -> dict[str, str]:
    headers = auth(staff_token(settings, roles=(Role.OPERATOR,), staff_id="op-7"))
    if key:
        headers["idempotency-key"] = key
    return headers


async def test_partial_then_full_then_over(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    session_id, _ = await paid_session(
        client, db, settings, gateway, job_ctx, phone="+4915100000301", hold=5000, total=2000
    )
    url = f"/admin/v1/sessions/{session_id}/refund"
    r = await client.post(
        url, json={"amount_minor": 500, "reason": "connector fault"}, headers=admin(settings)
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["amount_minor"] == 500
    assert first["refund_id"].startswith("re_")
    refund = await gateway.v1.refunds.retrieve_async(first["refund_id"])
    assert refund.amount == 500
    assert refund.metadata["reason"] == "connector fault"
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.status, summary.captured_minor, summary.refunded_minor) == (
        "partially_refunded",
        2000,
        500,
    )
    audit = await db.fetchrow(
        "SELECT actor_id, action, entity_id, before, after FROM audit_log WHERE action = 'session.refund'"
    )
    assert audit["actor_id"] == "op-7"
    assert audit["entity_id"] == str(session_id)
    assert audit["before"]["refunded_minor"] == 0
    assert audit["after"]["refunded_minor"] == 500
    assert audit["after"]["reason"] == "connector fault"

    too_much = await client.post(
        url, json={"amount_minor": 1501, "reason": "x"}, headers=admin(settings)
    )
    assert too_much.status_code == 409
    assert too_much.json()["code"] == "refund_exceeds_captured"
    rest = await client.post(
        url, json={"amount_minor": 1500, "reason": "goodwill"}, headers=admin(settings)
    )
    assert rest.status_code == 201, rest.text
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.status, summary.refunded_minor) == ("refunded", 2000)
    more = await client.post(url, json={"amount_minor": 1, "reason": "x"}, headers=admin(settings))
    assert more.status_code == 409
    assert await db.fetchval("SELECT count(*) FROM payment_refunds") == 2


async def test_refund_is_idempotent_with_a_key(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    session_id, _ = await paid_session(
        client, db, settings, gateway, job_ctx, phone="+4915100000302", hold=5000, total=3000
    )
    url = f"/admin/v1/sessions/{session_id}/refund"
    body = {"amount_minor": 1000, "reason": "double charge"}
    first = await client.post(url, json=body, headers=admin(settings, key="refund-1"))
    again = await client.post(url, json=body, headers=admin(settings, key="refund-1"))
    assert first.status_code == again.status_code == 201
    assert again.json()["refund_id"] == first.json()["refund_id"]
    assert await db.fetchval("SELECT count(*) FROM payment_refunds") == 1
    intent_id = await db.fetchval(
        "SELECT payment_intent_id FROM payments WHERE session_id = $1", session_id
    )
    intent = await gateway.v1.payment_intents.retrieve_async(intent_id)
    refunds = intent.to_dict()["latest_charge"]["refunds"]["data"]
    ours = [r for r in refunds if r["metadata"].get("reason")]
    assert [r["amount"] for r in ours] == [1000]
    summary = await service.session_payment(db, session_id=session_id)
    assert summary.refunded_minor == 1000


async def test_refund_spans_the_hold_and_the_extra_payment(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    session_id, _ = await paid_session(
        client, db, settings, gateway, job_ctx, phone="+4915100000303", hold=1000, total=1500
    )
    r = await client.post(
        f"/admin/v1/sessions/{session_id}/refund",
        json={"amount_minor": 1200, "reason": "tariff error"},
        headers=admin(settings),
    )
    assert r.status_code == 201, r.text
    rows = await db.fetch(
        """SELECT p.kind, r.amount_minor FROM payment_refunds r
           JOIN payments p USING (payment_intent_id) ORDER BY p.kind DESC"""
    )
    assert [tuple(x) for x in rows] == [("hold", 1000), ("extra", 200)]
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.captured_minor, summary.refunded_minor) == (1500, 1200)


async def test_unknown_session_and_bad_body(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    r = await client.post(
        f"/admin/v1/sessions/{uuid.uuid4()}/refund",
        json={"amount_minor": 100, "reason": "x"},
        headers=admin(settings),
    )
    assert r.status_code == 404
    r = await client.post(
        "/admin/v1/sessions/not-a-uuid/refund",
        json={"amount_minor": 100, "reason": "x"},
        headers=admin(settings),
    )
    assert r.status_code == 404
    r = await client.post(
        f"/admin/v1/sessions/{uuid.uuid4()}/refund",
        json={"amount_minor": 0, "reason": "x"},
        headers=admin(settings),
    )
    assert r.status_code == 422
    assert r.json()["code"] == "validation_failed"
    viewer = auth(staff_token(settings, roles=(Role.VIEWER,)))
    r = await client.post(
        f"/admin/v1/sessions/{uuid.uuid4()}/refund",
        json={"amount_minor": 100, "reason": "x"},
        headers=viewer,
    )
    assert r.status_code == 403
