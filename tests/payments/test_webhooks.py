"""`POST /webhooks/stripe`: signatures (bad, stale, missing → 400, nothing changes), each
event id once, and events as facts: any order, duplicates and late arrivals end in the
same state. Events are signed with `stripe.WebhookSignature.generate_signature_header`."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.settings import Settings
from app.main import create_app
from app.payments import service
from app.payments.stripe_client import Gateway
from tests.factories import auth, make_driver
from tests.payments.fixtures import driver_with_card, event_for, signed

URL = "/webhooks/stripe"


async def counts(db: asyncpg.Connection) -> tuple[int, int]:
    events = await db.fetchval("SELECT count(*) FROM stripe_events")
    alerts = await db.fetchval("SELECT count(*) FROM operator_alerts")
    return int(events), int(alerts)


def dispute(charge_id: str = "ch_x", intent_id: str = "pi_x") -> dict[str, Any]:
    return event_for(
        "charge.dispute.created",
        {
            "id": f"dp_{uuid.uuid4().hex[:12]}",
            "object": "dispute",
            "amount": 1200,
            "currency": "eur",
            "charge": charge_id,
            "payment_intent": intent_id,
            "reason": "fraudulent",
            "status": "needs_response",
        },
    )


async def test_bad_stale_or_missing_signature_is_400_and_changes_nothing(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    event = dispute()
    body, headers = signed(event, secret="whsec_someone_else")
    r = await client.post(URL, content=body, headers=headers)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_signature"
    body, headers = signed(event, at=int(time.time()) - 301)
    assert (await client.post(URL, content=body, headers=headers)).status_code == 400
    r = await client.post(URL, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    tampered, headers = signed(event)
    tampered = tampered.replace(b"fraudulent", b"duplicate")
    assert (await client.post(URL, content=tampered, headers=headers)).status_code == 400
    assert await counts(db) == (0, 0)
    # the same event, signed properly and fresh, goes through
    body, headers = signed(event, at=int(time.time()) - 250)
    r = await client.post(URL, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert await counts(db) == (1, 1)


async def test_without_an_endpoint_secret_every_event_is_refused(
    db: asyncpg.Connection, settings: Settings
) -> None:
    app = create_app(
        msgspec.structs.replace(settings, stripe_webhook_secret=""), run_migrations=False
    )
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        body, headers = signed(dispute())
        assert (await client.post(URL, content=body, headers=headers)).status_code == 400
    assert await counts(db) == (0, 0)


async def test_replay_is_applied_once(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    event = dispute()
    body, headers = signed(event)
    first = await client.post(URL, content=body, headers=headers)
    assert first.json() == {"received": True, "duplicate": False}
    body, headers = signed(event)  # Stripe re-sends with a new signature time
    second = await client.post(URL, content=body, headers=headers)
    assert second.status_code == 200
    assert second.json() == {"received": True, "duplicate": True}
    assert await counts(db) == (1, 1)
    alert = await db.fetchrow("SELECT kind, reason, detail FROM operator_alerts")
    assert alert["kind"] == "payment_dispute"
    assert alert["reason"] == "fraudulent"
    assert alert["detail"]["amount_minor"] == 1200


# --- Facts in any order --------------------------------------------------------------


def intent_snapshot(pi: str, status: str, *, received: int | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": pi,
        "object": "payment_intent",
        "amount": 5000,
        "currency": "eur",
        "status": status,
        "capture_method": "manual",
        "latest_charge": f"ch_{pi[3:]}",
        "amount_capturable": 5000 if status == "requires_capture" else 0,
    }
    if received is not None:
        obj["amount_received"] = received
    return obj


def history(pi: str) -> list[dict[str, Any]]:
    """What Stripe sends for a hold captured for 1500, then refunded 500 (oldest first)."""
    charge = {
        "id": f"ch_{pi[3:]}",
        "object": "charge",
        "amount": 5000,
        "amount_captured": 1500,
        "amount_refunded": 500,
        "captured": True,
        "payment_intent": pi,
        "status": "succeeded",
    }
    return [
        event_for(
            "payment_intent.amount_capturable_updated", intent_snapshot(pi, "requires_capture")
        ),
        event_for("payment_intent.succeeded", intent_snapshot(pi, "succeeded", received=1500)),
        event_for("charge.refunded", charge),
    ]


async def insert_hold(db: asyncpg.Connection, driver_id: str, pi: str) -> None:
    await db.execute(
        """INSERT INTO payments (payment_intent_id, driver_id, customer_id, kind, currency,
               status, amount_minor, idempotency_key, created_at, updated_at)
           VALUES ($1, $2::uuid, 'cus_test', 'hold', 'EUR', 'requires_action', 5000, $1,
                   now(), now())""",
        pi,
        driver_id,
    )


async def test_shuffled_duplicated_events_end_in_one_state(
    db: asyncpg.Connection, settings: Settings
) -> None:
    """Without Stripe to re-read (the events are all there is), every order of the three
    events, each delivered twice, gives the same row."""
    app = create_app(msgspec.structs.replace(settings, stripe_secret_key=""), run_migrations=False)
    driver = await make_driver(db, settings, phone="+4915100000201")
    finals = set()
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        for order in itertools.permutations(range(3)):
            pi = f"pi_{uuid.uuid4().hex[:14]}"
            await insert_hold(db, driver["driver_id"], pi)
            events = history(pi)
            for i in [*order, *reversed(order)]:
                body, headers = signed(events[i])
                r = await client.post(URL, content=body, headers=headers)
                assert r.status_code == 200, r.text
            row = await db.fetchrow(
                "SELECT status, captured_minor, refunded_minor FROM payments WHERE payment_intent_id = $1",
                pi,
            )
            finals.add(tuple(row))
    assert finals == {("succeeded", 1500, 500)}


async def test_late_event_does_not_undo_a_capture(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> None:
    """A real hold in localstripe, captured; the older `amount_capturable_updated` event
    arrives after `succeeded`: the row stays captured (and agrees with Stripe)."""
    driver = await driver_with_card(client, db, settings, phone="+4915100000202")
    pool = job_ctx["pool"]
    session_id = uuid.uuid4()
    hold = await service.place_hold(
        pool,
        gateway,
        driver_id=driver["driver_id"],
        amount_minor=5000,
        currency="EUR",
        idempotency_key=f"hold:{session_id}",
        metadata={"session_id": session_id},
    )
    older = event_for(
        "payment_intent.amount_capturable_updated",
        intent_snapshot(hold.payment_intent_id, "requires_capture"),
    )
    # captured outside our flow (say, from the dashboard): we learn it from the webhook
    await gateway.v1.payment_intents.capture_async(
        hold.payment_intent_id, {"amount_to_capture": 1500}, options={"idempotency_key": "dash"}
    )
    newer = event_for(
        "payment_intent.succeeded",
        intent_snapshot(hold.payment_intent_id, "succeeded", received=1500),
    )
    for event in (newer, older, newer):
        body, headers = signed(event)
        assert (await client.post(URL, content=body, headers=headers)).status_code == 200
    row = await db.fetchrow(
        "SELECT status, captured_minor FROM payments WHERE payment_intent_id = $1",
        hold.payment_intent_id,
    )
    assert tuple(row) == ("succeeded", 1500)
    intent = await gateway.v1.payment_intents.retrieve_async(hold.payment_intent_id)
    assert intent.status == row["status"]


async def test_event_for_someone_elses_intent_is_ignored(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    event = event_for("payment_intent.succeeded", intent_snapshot("pi_notours", "succeeded"))
    body, headers = signed(event)
    assert (await client.post(URL, content=body, headers=headers)).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM payments") == 0


async def test_setup_intent_succeeded_saves_the_card(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
) -> None:
    driver = await make_driver(db, settings, phone="+4915100000203")
    headers = auth(driver["access_token"])
    intent = (await client.post("/v1/me/payment-methods/setup-intent", headers=headers)).json()
    customer_id = await db.fetchval(
        "SELECT customer_id FROM stripe_customers WHERE driver_id = $1::uuid", driver["driver_id"]
    )
    # what Stripe does when the app confirms the SetupIntent: the card joins the customer
    method = await gateway.v1.payment_methods.attach_async(
        "pm_card_visa", {"customer": customer_id}, options={"idempotency_key": str(uuid.uuid4())}
    )
    event = event_for(
        "setup_intent.succeeded",
        {
            "id": intent["setup_intent_id"],
            "object": "setup_intent",
            "customer": customer_id,
            "payment_method": method.id,
            "status": "succeeded",
            "usage": "off_session",
        },
    )
    body, sig = signed(event)
    assert (await client.post(URL, content=body, headers=sig)).status_code == 200
    listed = (await client.get("/v1/me/payment-methods", headers=headers)).json()["items"]
    assert [(m["payment_method_id"], m["last4"], m["default"]) for m in listed] == [
        (method.id, "4242", True)
    ]


@pytest.mark.parametrize("kind", ["payment_intent.payment_failed", "payment_intent.canceled"])
async def test_failed_or_canceled_hold_follows_stripe(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
    kind: str,
) -> None:
    """The event says what happened; the re-read PaymentIntent decides the row."""
    driver = await driver_with_card(client, db, settings, phone="+4915100000204")
    session_id = uuid.uuid4()
    hold = await service.place_hold(
        job_ctx["pool"],
        gateway,
        driver_id=driver["driver_id"],
        amount_minor=3000,
        currency="EUR",
        idempotency_key=f"hold:{session_id}",
        metadata={},
        session_id=session_id,
    )
    await gateway.v1.payment_intents.cancel_async(
        hold.payment_intent_id, options={"idempotency_key": str(uuid.uuid4())}
    )
    body, headers = signed(event_for(kind, intent_snapshot(hold.payment_intent_id, "canceled")))
    assert (await client.post(URL, content=body, headers=headers)).status_code == 200
    summary = await service.session_payment(db, session_id=session_id)
    assert (summary.status, summary.captured_minor) == ("canceled", 0)
