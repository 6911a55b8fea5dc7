"""`/v1/me/payment-methods` (saved cards), `POST /webhooks/stripe`, the staff refund
`POST /admin/v1/sessions/{id}/refund`, and the demo-only `POST /dev/drivers/me/test-card`.

The Stripe client (`app.payments.stripe_client.Gateway`) is built once per process by
`lifespan` (`app.state.stripe`) and handed to handlers as the `gateway` dependency; without
`STRIPE_SECRET_KEY` the payment routes answer 503 `payments_unavailable` (a guard, so the
refusal comes before any dependency opens a transaction).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeAlias

from litestar import Controller, Litestar, Request, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, JSONBody, QueryParameter

from app.core.auth import DRIVER_SECURITY, Permission, requires, requires_driver
from app.core.deps import ClockDep, Db, Driver, Staff
from app.core.errors import DRIVER_UNAUTHORIZED, NotFound, problem_doc
from app.core.settings import Settings
from app.payments import service
from app.payments.schemas import (
    AttachPaymentMethod,
    DevTestCard,
    PaymentMethodOut,
    PaymentMethodPage,
    RefundOut,
    RefundRequest,
    SetupIntentOut,
    WebhookAck,
)
from app.payments.stripe_client import Gateway

StripeGateway: TypeAlias = NamedDependency[Gateway]
MaybeGateway: TypeAlias = NamedDependency[Gateway | None]


UNAVAILABLE = {
    503: problem_doc("Stripe is not configured or cannot be reached (`payments_unavailable`)")
}
UNAUTHORIZED = {401: DRIVER_UNAUTHORIZED}


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    """One Stripe client per API process (None without STRIPE_SECRET_KEY)."""
    gateway = Gateway.from_settings(app.state.settings)
    app.state.stripe = gateway
    try:
        yield
    finally:
        app.state.stripe = None
        if gateway is not None:
            await gateway.aclose()


def requires_stripe(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: 503 `payments_unavailable` when this process has no Stripe client."""
    if getattr(connection.app.state, "stripe", None) is None:
        raise service.PaymentsUnavailable("Stripe is not configured (STRIPE_SECRET_KEY)")


def provide_gateway(state: State) -> Gateway:
    gateway: Gateway = state.stripe
    return gateway


def provide_maybe_gateway(state: State) -> Gateway | None:
    gateway: Gateway | None = getattr(state, "stripe", None)
    return gateway


GATEWAY = {"gateway": Provide(provide_gateway, sync_to_thread=False)}


def _request_key(request: Request[Any, Any, Any], who: str) -> str:
    """The caller's Idempotency-Key (scoped to the caller), else a fresh one."""
    key = request.headers.get("idempotency-key", "").strip()
    return f"{who}:{key[:200]}" if key else f"{who}:{uuid.uuid4()}"


class PaymentMethodsController(Controller):
    path = "/v1/me/payment-methods"
    tags = ["payment methods"]
    guards = [requires_driver, requires_stripe]
    security = DRIVER_SECURITY
    dependencies = GATEWAY

    @post(
        "/setup-intent",
        summary="Start saving a card (a Stripe SetupIntent)",
        status_code=201,
        responses={**UNAUTHORIZED, **UNAVAILABLE},
    )
    async def setup_intent(
        self,
        request: Request[Any, Any, State],
        driver: Driver,
        gateway: StripeGateway,
        state: State,
    ) -> SetupIntentOut:
        """A SetupIntent (`usage=off_session`) on the driver's Stripe customer (created on
        first use). The app confirms it with the Stripe SDK, then posts the resulting
        `payment_method_id` to `POST /v1/me/payment-methods`. Card data goes from the app
        to Stripe only."""
        intent_id, secret = await service.create_setup_intent(
            state.pool,
            gateway,
            driver_id=driver.driver_id,
            request_key=_request_key(request, driver.driver_id),
        )
        return SetupIntentOut(setup_intent_id=intent_id, client_secret=secret)

    @post(
        "/",
        summary="Save a card and make it the default",
        status_code=201,
        responses={
            **UNAUTHORIZED,
            **UNAVAILABLE,
            402: problem_doc("The issuer refused the card when it was attached (`card_declined`)"),
            422: problem_doc(
                "Stripe does not know the payment method, it is not a card, or it belongs to "
                "another customer (`payment_method_invalid`)"
            ),
        },
    )
    async def attach(
        self,
        driver: Driver,
        db: Db,
        gateway: StripeGateway,
        state: State,
        data: JSONBody[AttachPaymentMethod],
    ) -> PaymentMethodOut:
        """Attaches the PaymentMethod to the driver's Stripe customer and makes it the
        default card for session holds. Saving the same card again is harmless."""
        return await service.attach_payment_method(
            db,
            state.pool,
            gateway,
            driver_id=driver.driver_id,
            payment_method_id=data.payment_method_id,
        )

    @get("/", summary="The driver's saved cards", responses=UNAUTHORIZED)
    async def list_methods(
        self,
        driver: Driver,
        db: Db,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, QueryParameter(max_length=4096)] = None,
    ) -> PaymentMethodPage:
        """Newest first; `default` marks the card holds are placed on."""
        return await service.list_payment_methods(
            db, driver_id=driver.driver_id, limit=limit, cursor=cursor
        )

    @delete(
        "/{payment_method_id:str}",
        summary="Remove a saved card",
        status_code=204,
        responses={**UNAUTHORIZED, **UNAVAILABLE, 404: problem_doc("Not one of your cards")},
    )
    async def remove(
        self,
        driver: Driver,
        db: Db,
        gateway: StripeGateway,
        payment_method_id: FromPath[str],
    ) -> None:
        """Detaches the card from the driver's Stripe customer. When it was the default,
        the newest remaining card becomes the default."""
        await service.delete_payment_method(
            db, gateway, driver_id=driver.driver_id, payment_method_id=payment_method_id
        )


class StripeWebhook(Controller):
    path = "/webhooks/stripe"
    tags = ["integrations"]

    @post(
        "/",
        summary="Stripe webhook events",
        status_code=200,
        responses={
            400: problem_doc("Missing, wrong or stale `Stripe-Signature` (`invalid_signature`)")
        },
    )
    async def receive(
        self, request: Request[Any, Any, State], db: Db, clock: ClockDep, state: State
    ) -> WebhookAck:
        """Verified with `Stripe-Signature` (HMAC-SHA256 of `"{t}.{body}"` with the endpoint
        secret, at most 300 s old) before anything is read; otherwise 400 and nothing
        changes. Each event id is applied once (a repeat answers `duplicate: true`); the
        PaymentIntent or Charge it names is re-read from Stripe and applied as the latest
        fact, so duplicates, shuffled and late events end in the same state."""
        body = await request.body()
        event = service.verify_event(state.settings, body, request.headers.get("stripe-signature"))
        return await service.handle_event(
            db, getattr(state, "stripe", None), event, now=clock.now()
        )


class SessionRefunds(Controller):
    path = "/admin/v1/sessions"
    tags = ["admin: sessions"]
    dependencies = {"gateway": Provide(provide_maybe_gateway, sync_to_thread=False)}

    @post(
        "/{session_id:str}/refund",
        summary="Refund part or all of a session's payment",
        status_code=201,
        guards=[requires(Permission.FLEET_WRITE)],
        responses={
            404: problem_doc("No such session, or nothing was paid for it"),
            409: problem_doc("Refunds would exceed what was captured (`refund_exceeds_captured`)"),
            **UNAVAILABLE,
        },
    )
    async def refund(
        self,
        request: Request[Any, Any, State],
        db: Db,
        staff: Staff,
        clock: ClockDep,
        gateway: MaybeGateway,
        session_id: FromPath[str],
        data: JSONBody[RefundRequest],
    ) -> RefundOut:
        """Admins and operators. All refunds of a session together never exceed what was
        captured (its hold captures and any extra payment); audited with the reason. With
        an `Idempotency-Key` a repeat makes no second refund (at Stripe either)."""
        try:
            session = uuid.UUID(session_id)
        except ValueError:
            raise NotFound("no such session") from None
        return await service.refund_session(
            db,
            gateway,
            session_id=session,
            amount_minor=data.amount_minor,
            reason=data.reason,
            staff=staff,
            request_key=_request_key(request, f"staff:{staff.staff_id}"),
            now=clock.now(),
            request_id=request.scope.get("state", {}).get("request_id"),
        )


@post(
    "/dev/drivers/me/test-card",
    summary="Demo: put a localstripe test card on the driver",
    status_code=201,
    guards=[requires_driver, requires_stripe],
    dependencies=GATEWAY,
    include_in_schema=False,
)
async def dev_test_card(
    driver: Driver, db: Db, gateway: StripeGateway, state: State, data: JSONBody[DevTestCard]
) -> PaymentMethodOut:
    """`visa` (4242…, charges fine) or `declined_charge` (4000000000000341: attaches, then
    every charge is declined); it becomes the default card."""
    return await service.attach_payment_method(
        db,
        state.pool,
        gateway,
        driver_id=driver.driver_id,
        payment_method_id=service.TEST_CARDS[data.card],
    )


def demo_routes(settings: Settings) -> list[Any]:
    """Routes that exist only in demo mode with a Stripe test key (localstripe)."""
    if settings.app_demo and settings.stripe_secret_key.startswith("sk_test_"):
        return [dev_test_card]
    return []


ROUTES: list[Any] = [PaymentMethodsController, StripeWebhook, SessionRefunds]
