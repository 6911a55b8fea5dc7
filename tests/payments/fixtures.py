"""Fixtures for tests that pay (tests/payments, and tests/sessions may import them): one
real `localstripe` server per test session on a free port, settings pointing at it, a
Stripe gateway, an arq-like job context, a driver with a card, a fault-injecting HTTP
proxy in front of localstripe, and signed webhook deliveries.

    from tests.payments.fixtures import localstripe, settings, gateway, job_ctx  # in a conftest
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

from app.core.db import create_pool
from app.core.embedded import free_port
from app.core.settings import ROOT, Settings
from app.payments.localstripe import DEMO_SECRET_KEY, LocalStripe
from app.payments.stripe_client import Gateway
from app.payments.tasks import close_stripe
from tests.factories import auth, make_driver

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
    driver = await make_driver(db, settings, phone=phone)
    r = await client.post(
        "/v1/me/payment-methods",
        json={"payment_method_id": payment_method_id},
        headers=auth(driver["access_token"]),
    )
    assert r.status_code == 201, r.text
    return {**driver, "card": r.json()}


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
