"""Fixtures for tests that pay (tests/payments, and tests/sessions may import them): one
real `localstripe` server per test session on a free port, settings pointing at it, a
Stripe gateway, an arq-like job context, a driver with a card, `pay` (all of these at
once, with the steps the payment tests repeat), a fault-injecting HTTP proxy in front of
localstripe, and signed webhook deliveries.

    from tests.payments.fixtures import localstripe, settings, gateway, job_ctx, pay  # in a conftest
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import stripe
from aiohttp import web
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.clock import Clock
from app.core.db import create_pool
from app.core.embedded import free_port
from app.core.settings import ROOT, Settings
from app.payments import service
from app.payments.localstripe import DEMO_SECRET_KEY, LocalStripe
from app.payments.schemas import Hold, PaymentSummary
from app.payments.stripe_client import Gateway
from app.payments.tasks import capture_payment, charge_extra_payment, close_stripe
from tests.factories import add_card, driver_on

WEBHOOK_SECRET = "whsec_test_voltway_0123456789abcdef"


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    """A localstripe process for the whole test session (state is shared: every test
    makes its own customers, so nothing collides)."""
    server = LocalStripe(ROOT / ".data" / "localstripe-test.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings, localstripe: LocalStripe) -> Settings:
    """The suite's settings with Stripe pointed at localstripe."""
    return msgspec.structs.replace(
        settings,
        stripe_secret_key=DEMO_SECRET_KEY,
        stripe_api_base=localstripe.api_base,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_timeout_s=5.0,
        stripe_max_network_retries=2,
    )


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    gw = Gateway.from_settings(settings)
    assert gw is not None
    yield gw
    await gw.aclose()


@pytest.fixture
async def job_ctx(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """What arq hands a job (pool, settings, the Stripe client), built by hand."""
    pool = await create_pool(settings)
    ctx: dict[str, Any] = {"pool": pool, "settings": settings, "job_try": 1}
    yield ctx
    await close_stripe(ctx)
    await pool.close()


async def driver_with_card(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    *,
    phone: str,
    payment_method_id: str = "pm_card_visa",
) -> dict[str, Any]:
    """A driver (straight in the database) whose default card is `payment_method_id`
    (a localstripe test id), saved through the API; returns the ids, token and card."""
    return await driver_on(client, db, settings, phone=phone, card=payment_method_id)


JOBS: dict[str, Any] = {
    "capture_payment": capture_payment,
    "charge_extra_payment": charge_extra_payment,
}


@dataclass
class Payments:
    """What a payment test works with (the API client, its database, settings pointing at
    localstripe, a Stripe gateway, an arq-like job context) and the steps such tests
    repeat: a driver, a hold, the bill settled, the worker's jobs run, what came of it."""

    client: AsyncTestClient[Litestar]
    db: asyncpg.Connection
    settings: Settings
    gateway: Gateway
    ctx: dict[str, Any]
    phones: int = 0

    @property
    def pool(self) -> asyncpg.Pool:
        pool: asyncpg.Pool = self.ctx["pool"]
        return pool

    async def driver(self, *, card: str | None = "pm_card_visa") -> dict[str, Any]:
        """A new driver (ids, token, `headers`) whose default card is `card` (a
        localstripe test id, saved through the API; its answer is `card`), or without one."""
        self.phones += 1
        phone = f"+49151000{self.phones:05d}"
        return await driver_on(self.client, self.db, self.settings, phone=phone, card=card)

    async def add_card(self, driver: dict[str, Any], payment_method_id: str) -> httpx.Response:
        r: httpx.Response = await add_card(self.client, driver, payment_method_id)
        return r

    async def hold(
        self,
        driver: dict[str, Any],
        amount: int = 5000,
        *,
        session_id: uuid.UUID | None = None,
        via_metadata: bool = True,
    ) -> tuple[uuid.UUID, Hold]:
        """A hold of `amount` EUR cents for a session (a new id unless given), keyed by
        it; linked to it through the intent's metadata, else through the `session_id`
        argument (metadata empty)."""
        session_id = session_id or uuid.uuid4()
        hold = await service.place_hold(
            self.pool,
            self.gateway,
            driver_id=driver["driver_id"],
            amount_minor=amount,
            currency="EUR",
            idempotency_key=f"hold:{session_id}",
            metadata={"session_id": session_id} if via_metadata else {},
            session_id=None if via_metadata else session_id,
        )
        return session_id, hold

    async def settle(self, session_id: uuid.UUID, driver: dict[str, Any], total: int) -> None:
        """The session's bill is `total` EUR cents (the sessions domain's call)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await service.settle_session(
                conn,
                session_id=session_id,
                driver_id=driver["driver_id"],
                total_minor=total,
                currency="EUR",
                now=Clock().now(),
            )

    async def request_capture(self, payment_intent_id: str, amount: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await service.request_capture(
                conn, payment_intent_id=payment_intent_id, amount_minor=amount, now=Clock().now()
            )

    async def run_jobs(self, job: str) -> list[str]:
        """Run every pending outbox row of `job` now (due or not), as the worker would."""
        rows = await self.pool.fetch(
            "SELECT outbox_id, args FROM outbox WHERE job = $1 AND done_at IS NULL "
            "ORDER BY outbox_id",
            job,
        )
        return [await JOBS[job](self.ctx, r["outbox_id"], **r["args"]) for r in rows]

    def jobs_through(self, proxy: FaultProxy, **overrides: Any) -> None:
        """The jobs' Stripe client goes through `proxy` (with these settings changed)."""
        self.ctx["stripe"] = Gateway.from_settings(
            msgspec.structs.replace(self.settings, stripe_api_base=proxy.url, **overrides)
        )

    async def summary(self, session_id: uuid.UUID | str) -> PaymentSummary:
        """The session's `payment` block."""
        return await service.session_payment(self.db, session_id=session_id)

    async def intent(self, payment_intent_id: str) -> Any:
        """The PaymentIntent as Stripe has it now (a `stripe.PaymentIntent`, its expanded
        `latest_charge` a mapping)."""
        return await self.gateway.v1.payment_intents.retrieve_async(payment_intent_id)

    async def payment(self, payment_intent_id: str) -> dict[str, Any]:
        """Our `payments` row of this intent."""
        row = await self.db.fetchrow(
            "SELECT * FROM payments WHERE payment_intent_id = $1", payment_intent_id
        )
        assert row is not None, payment_intent_id
        return dict(row)

    async def alert(self) -> dict[str, Any]:
        """The one operator alert (kind, reason and what it is about)."""
        rows = await self.db.fetch(
            "SELECT kind, reason, session_id, payment_intent_id FROM operator_alerts"
        )
        assert len(rows) == 1, rows
        return dict(rows[0])


@pytest.fixture
def pay(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
    job_ctx: dict[str, Any],
) -> Payments:
    """The payment test's fixtures in one, with its steps (see `Payments`)."""
    return Payments(client=client, db=db, settings=settings, gateway=gateway, ctx=job_ctx)


def signed(
    event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, at: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A webhook delivery as Stripe makes it: body and `Stripe-Signature` header."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=at)
    return payload.encode(), {"stripe-signature": header, "content-type": "application/json"}


def event_for(kind: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """A Stripe event envelope around an object snapshot."""
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created or int(time.time()),
        "type": kind,
        "livemode": False,
        "pending_webhooks": 1,
        "data": {"object": obj},
    }


# --- Fault proxy ---------------------------------------------------------------------


@dataclass
class Fault:
    """Answer 500 to the next `times` requests whose `METHOD path` matches `pattern`;
    `after=True` forwards the request first (Stripe did it; the answer is lost)."""

    pattern: str
    times: int
    after: bool = False


@dataclass
class FaultProxy:
    """An HTTP proxy in front of localstripe that injects 5xx answers."""

    upstream: str
    url: str = ""
    faults: list[Fault] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    forwarded: list[str] = field(default_factory=list)

    def fail(self, pattern: str, times: int = 1, *, after: bool = False) -> None:
        self.faults.append(Fault(pattern, times, after))

    def _fault_for(self, line: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and re.search(fault.pattern, line):
                fault.times -= 1
                return fault
        return None

    async def handle(self, request: web.Request) -> web.Response:
        line = f"{request.method} {request.path_qs}"
        self.seen.append(line)
        fault = self._fault_for(line)
        body = await request.read()
        error = web.json_response(
            {"error": {"type": "api_error", "message": "injected fault"}}, status=500
        )
        if fault is not None and not fault.after:
            return error
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", "idempotency-key", "stripe-version")
        }
        async with httpx.AsyncClient(base_url=self.upstream, timeout=10) as http:
            answer = await http.request(
                request.method, request.path_qs, content=body, headers=headers
            )
        self.forwarded.append(line)
        if fault is not None:
            return error
        return web.Response(
            body=answer.content,
            status=answer.status_code,
            content_type="application/json",
        )


@pytest.fixture
async def fault_proxy(localstripe: LocalStripe) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(upstream=localstripe.api_base)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    proxy.url = f"http://127.0.0.1:{port}"
    yield proxy
    await runner.cleanup()


async def wait_for(check: Any, *, within_s: float = 5.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)
