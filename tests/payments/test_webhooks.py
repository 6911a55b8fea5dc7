"""`POST /webhooks/stripe`: signatures (bad, stale, missing → 400, nothing changes), each
event id once, and events as facts: any order, duplicates and late arrivals end in the
same state. Events are signed with `stripe.WebhookSignature.generate_signature_header`."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.settings import Settings
from app.main import create_app
from tests.factories import make_driver
from tests.payments.fixtures import Payments, event_for, signed

URL = "/webhooks/stripe"


async def deliver(
    client: AsyncTestClient[Litestar], event: dict[str, Any], **signing: Any
) -> httpx.Response:
    """Post `event` to the endpoint as Stripe does (signed, see `signed` for `signing`)."""
    body, headers = signed(event, **signing)
    return await client.post(URL, content=body, headers=headers)


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
    r = await deliver(client, event, secret="whsec_someone_else")
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_signature"
    assert (await deliver(client, event, at=int(time.time()) - 301)).status_code == 400
    body, _ = signed(event)
    r = await client.post(URL, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    tampered, headers = signed(event)
    tampered = tampered.replace(b"fraudulent", b"duplicate")
    assert (await client.post(URL, content=tampered, headers=headers)).status_code == 400
    assert await counts(db) == (0, 0)
    # the same event, signed properly and fresh, goes through
    r = await deliver(client, event, at=int(time.time()) - 250)
    assert r.status_code == 200, r.text
    assert await counts(db) == (1, 1)


async def test_without_an_endpoint_secret_every_event_is_refused(
    db: asyncpg.Connection, settings: Settings
) -> None:
    app = create_app(
        msgspec.structs.replace(settings, stripe_webhook_secret=""), run_migrations=False
    )
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        assert (await deliver(client, dispute())).status_code == 400
    assert await counts(db) == (0, 0)


async def test_replay_is_applied_once(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    event = dispute()
    first = await deliver(client, event)
    assert first.json() == {"received": True, "duplicate": False}
    second = await deliver(client, event)  # Stripe re-sends with a new signature time
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
                r = await deliver(client, events[i])
                assert r.status_code == 200, r.text
            row = await db.fetchrow(
                "SELECT status, captured_minor, refunded_minor FROM payments WHERE payment_intent_id = $1",
                pi,
            )
            finals.add(tuple(row))
    assert finals == {("succeeded", 1500, 500)}


async def test_late_event_does_not_undo_a_capture(pay: Payments) -> None:
    """A real hold in localstripe, captured; the older `amount_capturable_updated` event
    arrives after `succeeded`: the row stays captured (and agrees with Stripe)."""
    _, hold = await pay.hold(await pay.driver())
    older = event_for(
        "payment_intent.amount_capturable_updated",
        intent_snapshot(hold.payment_intent_id, "requires_capture"),
    )
    # captured outside our flow (say, from the dashboard): we learn it from the webhook
    await pay.gateway.v1.payment_intents.capture_async(
        hold.payment_intent_id, {"amount_to_capture": 1500}, options={"idempotency_key": "dash"}
    )
    newer = event_for(
        "payment_intent.succeeded",
        intent_snapshot(hold.payment_intent_id, "succeeded", received=1500),
    )
    for event in (newer, older, newer):
        assert (await deliver(pay.client, event)).status_code == 200
    row = await pay.payment(hold.payment_intent_id)
    assert (row["status"], row["captured_minor"]) == ("succeeded", 1500)
    assert (await pay.intent(hold.payment_intent_id)).status == row["status"]


async def test_event_for_someone_elses_intent_is_ignored(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection
) -> None:
    event = event_for("payment_intent.succeeded", intent_snapshot("pi_notours", "succeeded"))
    assert (await deliver(client, event)).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM payments") == 0


async def test_setup_intent_succeeded_saves_the_card(pay: Payments) -> None:
    driver = await pay.driver(card=None)
    headers = driver["headers"]
    intent = (await pay.client.post("/v1/me/payment-methods/setup-intent", headers=headers)).json()
    customer_id = await pay.db.fetchval(
        "SELECT customer_id FROM stripe_customers WHERE driver_id = $1::uuid", driver["driver_id"]
    )
    # what Stripe does when the app confirms the SetupIntent: the card joins the customer
    method = await pay.gateway.v1.payment_methods.attach_async(
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
    assert (await deliver(pay.client, event)).status_code == 200
    listed = (await pay.client.get("/v1/me/payment-methods", headers=headers)).json()["items"]
    assert [(m["payment_method_id"], m["last4"], m["default"]) for m in listed] == [
        (method.id, "4242", True)
    ]


@pytest.mark.parametrize("kind", ["payment_intent.payment_failed", "payment_intent.canceled"])
async def test_failed_or_canceled_hold_follows_stripe(pay: Payments, kind: str) -> None:
    """The event says what happened; the re-read PaymentIntent decides the row."""
    session_id, hold = await pay.hold(await pay.driver(), amount=3000, via_metadata=False)
    await pay.gateway.v1.payment_intents.cancel_async(
        hold.payment_intent_id, options={"idempotency_key": str(uuid.uuid4())}
    )
    event = event_for(kind, intent_snapshot(hold.payment_intent_id, "canceled"))
    assert (await deliver(pay.client, event)).status_code == 200
    summary = await pay.summary(session_id)
    assert (summary.status, summary.captured_minor) == ("canceled", 0)
