"""Operator alerts delivered: the on-call SMS and the signed ticketing webhook, both from
the outbox row a trigger writes with the alert; retries; acknowledge (audited)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import web
from arq import Retry
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.connectivity.alerts import raise_alert
from app.core.auth import Role
from app.core.settings import Settings
from app.notifications.operator import deliver_operator_alert
from tests.factories import auth, run_sms_jobs, staff_token
from tests.notifications.helpers import make_charging_session
from tests.standins.twilio import TwilioStandIn

ONCALL = "+447700900777"
SECRET = "ticket-secret"


class Ticketing:
    """A ticketing system's webhook endpoint: records what arrives, fails on demand."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        if self.fail:
            self.fail -= 1
            return web.Response(status=503)
        return web.json_response({"ticket": len(self.received)}, status=201)


@pytest.fixture
async def ticketing() -> AsyncIterator[Ticketing]:
    t = Ticketing()
    app = web.Application()
    app.router.add_post("/tickets", t.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    t.url = f"http://127.0.0.1:{runner.addresses[0][1]}/tickets"
    yield t
    await runner.cleanup()


@pytest.fixture
def configured(settings: Settings, ticketing: Ticketing) -> Settings:
    return msgspec.structs.replace(
        settings,
        oncall_sms_to=ONCALL,
        ticket_webhook_url=ticketing.url,
        ticket_webhook_secret=SECRET,
    )


async def raise_quarantine(db: asyncpg.Connection) -> int:
    arranged = await make_charging_session(db, driver_id=None, site_name="Depot Nord")
    async with db.transaction():
        assert await raise_alert(
            db,
            arranged["charger_id"],
            "quarantine",
            "imei_changed",
            dedupe_key="test:quarantine:1",
            at=datetime.now(UTC),
            detail={"imei": "490154203237518"},
        )
    alert_id: int = await db.fetchval("SELECT alert_id FROM operator_alerts")
    return alert_id


async def jobs(db: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT outbox_id, args FROM outbox WHERE job = 'deliver_operator_alert' "
        "AND done_at IS NULL ORDER BY outbox_id"
    )
    return rows


async def test_an_alert_is_texted_to_on_call_and_posted_signed_to_ticketing(
    db: asyncpg.Connection,
    configured: Settings,
    job_ctx: dict[str, Any],
    twilio: TwilioStandIn,
    ticketing: Ticketing,
) -> None:
    job_ctx["settings"] = configured
    alert_id = await raise_quarantine(db)
    rows = await jobs(db)
    assert sorted(r["args"]["channel"] for r in rows) == ["sms", "webhook"]
    for r in rows:
        outcome = await deliver_operator_alert(job_ctx, r["outbox_id"], **r["args"])
        assert outcome in ("queued_sms", "delivered")
        # the relay may run it again: nothing twice
        again = await deliver_operator_alert(job_ctx, r["outbox_id"], **r["args"])
        assert again == "already_delivered"
    assert await run_sms_jobs(job_ctx) == ["sent"]
    [sms] = twilio.sent_to(ONCALL)
    assert sms["body"].startswith(f"Voltway alert #{alert_id}: quarantine (imei_changed)")
    assert "at Depot Nord" in sms["body"]

    [(headers, body)] = ticketing.received
    t, v1 = (p.split("=", 1)[1] for p in headers["X-Voltway-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)
    payload = msgspec.json.decode(body)
    assert payload["event"] == "operator_alert.raised"
    assert payload["alert_id"] == alert_id
    assert payload["kind"] == "quarantine"
    assert payload["detail"] == {"imei": "490154203237518"}
    assert headers["Idempotency-Key"] == f"voltway-operator-alert-{alert_id}"
    assert await db.fetchval(
        "SELECT delivered_at IS NOT NULL FROM operator_alerts WHERE alert_id = $1", alert_id
    )


async def test_a_failing_webhook_is_retried_with_back_off_then_delivered(
    db: asyncpg.Connection, configured: Settings, job_ctx: dict[str, Any], ticketing: Ticketing
) -> None:
    job_ctx["settings"] = configured
    await raise_quarantine(db)
    [row] = [r for r in await jobs(db) if r["args"]["channel"] == "webhook"]
    ticketing.fail = 2
    delays: list[int] = []
    for _ in range(2):
        with pytest.raises(Retry) as info:
            await deliver_operator_alert(job_ctx, row["outbox_id"], **row["args"])
        delays.append(info.value.defer_score or 0)
    assert delays[1] > delays[0]  # back-off
    assert await deliver_operator_alert(job_ctx, row["outbox_id"], **row["args"]) == "delivered"
    assert len(ticketing.received) == 3
    state = await db.fetchrow(
        "SELECT status, attempts FROM operator_alert_deliveries WHERE channel = 'webhook'"
    )
    assert (state["status"], state["attempts"]) == ("delivered", 3)


async def test_channels_not_configured_are_skipped(
    db: asyncpg.Connection, job_ctx: dict[str, Any], twilio: TwilioStandIn
) -> None:
    await raise_quarantine(db)
    for r in await jobs(db):
        assert await deliver_operator_alert(job_ctx, r["outbox_id"], **r["args"]) == "skipped"
    assert await jobs(db) == []
    assert twilio.requests == []


async def test_acknowledge_is_audited_and_answers_the_first_time_again(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    alert_id = await raise_quarantine(db)
    token = staff_token(settings, roles=(Role.OPERATOR,), staff_id="op-1")
    r = await client.post(f"/admin/v1/alerts/{alert_id}/acknowledge", headers=auth(token))
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["alert_id"] == alert_id
    assert first["acknowledged_by"] == "op-1@example.com"
    r = await client.post(f"/admin/v1/alerts/{alert_id}/acknowledge", headers=auth(token))
    assert r.json()["acknowledged_at"] == first["acknowledged_at"]
    audits = await db.fetch(
        "SELECT action, entity_id, actor_email FROM audit_log WHERE entity_type = 'operator_alert'"
    )
    assert [(a["action"], a["entity_id"], a["actor_email"]) for a in audits] == [
        ("operator_alert.acknowledge", str(alert_id), "op-1@example.com")
    ]
    r = await client.get("/admin/v1/alerts?open=true", headers=auth(token))
    assert r.json()["items"] == []
    r = await client.post("/admin/v1/alerts/999999/acknowledge", headers=auth(token))
    assert r.status_code == 404
    viewer = staff_token(settings, roles=(Role.VIEWER,))
    r = await client.post(f"/admin/v1/alerts/{alert_id}/acknowledge", headers=auth(viewer))
    assert r.status_code == 403


async def test_payment_alerts_without_a_charger_are_listed_for_operators(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    """A payment problem concerns a session or a PaymentIntent, not a charger: operators
    see it in `GET /admin/v1/alerts` beside the connectivity ones (it was left out)."""
    from app.payments.service import raise_alert as raise_payment_alert

    quarantine_id = await raise_quarantine(db)
    session_id = uuid.uuid4()
    assert await raise_payment_alert(
        db,
        kind="payment_capture_failed",
        reason="card_declined",
        dedupe_key=f"capture:{session_id}",
        now=datetime.now(UTC),
        payment_intent_id="pi_test_123",
        session_id=session_id,
    )
    token = staff_token(settings, roles=(Role.VIEWER,))
    r = await client.get("/admin/v1/alerts", headers=auth(token))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [a["kind"] for a in items] == ["payment_capture_failed", "quarantine"]
    payment, quarantine = items
    assert payment["charger_id"] is None
    assert payment["charge_point_id"] is None
    assert payment["session_id"] == str(session_id)
    assert payment["payment_intent_id"] == "pi_test_123"
    assert quarantine["alert_id"] == quarantine_id
    assert quarantine["charger_id"]
    r = await client.get(
        "/admin/v1/alerts", params={"kind": "payment_capture_failed"}, headers=auth(token)
    )
    assert [a["session_id"] for a in r.json()["items"]] == [str(session_id)]
