"""Stripe through the official library's async client (INTEGRATIONS.md §3).

`StripeClient(api_key, base_addresses={"api": STRIPE_API_BASE}, max_network_retries=2,
http_client=HTTPXClient(timeout=…))` and the `*_async` methods of `client.v1.*` (the
HTTPXClient is a small subclass that hands httpx the form as `content`). The library
retries connection errors, 409 and 5xx itself, with the idempotency key we give every
mutating call (a retried POST is the same request to Stripe). What comes back is turned
into small Structs here (`IntentFacts`, `ChargeFacts`, `CardFacts`), read with defaults,
so a field one Stripe (or localstripe) omits never raises deep in a service.

One `Gateway` per process: API workers hold it in `app.state.stripe` (lifespan in
`app/payments/routes.py`), arq jobs in `ctx["stripe"]` (`workers/main.py`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import msgspec
import stripe

from app.core.settings import Settings

log = logging.getLogger("app.payments.stripe")
# The library logs a line per request and per answer at INFO: keep them for DEBUG only.
logging.getLogger("stripe").setLevel(logging.WARNING)
T = TypeVar("T")

# Errors worth another try later (the library already retried `max_network_retries` times).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    stripe.APIConnectionError,
    stripe.RateLimitError,
    TimeoutError,
)


class StripeUnavailable(Exception):
    """Stripe did not answer usefully after the retries (network, 5xx, 429, timeout)."""


class IntentFacts(msgspec.Struct, kw_only=True):
    """What we read from a PaymentIntent (API answer or webhook object)."""

    id: str
    status: str
    amount: int
    currency: str = ""
    customer: str | None = None
    payment_method: str | None = None
    capture_method: str | None = None
    amount_capturable: int | None = None
    amount_received: int | None = None
    latest_charge: Any = None
    last_payment_error: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}

    @property
    def charge_id(self) -> str | None:
        charge = self.latest_charge
        if isinstance(charge, str):
            return charge
        if isinstance(charge, dict) and isinstance(charge.get("id"), str):
            return str(charge["id"])
        return None

    @property
    def failure_code(self) -> str | None:
        error = self.last_payment_error or {}
        code = error.get("decline_code") or error.get("code")
        return str(code) if code else None


class ChargeFacts(msgspec.Struct, kw_only=True):
    """What we read from a Charge (refunds, disputes)."""

    id: str
    amount: int
    payment_intent: str | None = None
    amount_captured: int | None = None
    amount_refunded: int = 0
    captured: bool = False
    status: str = ""


class CardFacts(msgspec.Struct, kw_only=True):
    """A PaymentMethod as the driver sees it (brand, last 4, expiry) and whose it is."""

    id: str
    type: str = "card"
    customer: str | None = None
    brand: str = "unknown"
    last4: str = ""
    exp_month: int | None = None
    exp_year: int | None = None


def to_dict(obj: Any) -> dict[str, Any]:
    """A StripeObject (or a plain dict from a webhook body) as plain data."""
    if isinstance(obj, stripe.StripeObject):
        data: dict[str, Any] = obj.to_dict()
        return data
    return dict(obj)


def intent_facts(obj: Any) -> IntentFacts:
    return msgspec.convert(to_dict(obj), IntentFacts, strict=False)


def charge_facts(obj: Any) -> ChargeFacts:
    return msgspec.convert(to_dict(obj), ChargeFacts, strict=False)


def card_facts(obj: Any) -> CardFacts:
    data = to_dict(obj)
    card = data.get("card") or {}
    return CardFacts(
        id=str(data["id"]),
        type=str(data.get("type") or "card"),
        customer=data.get("customer") if isinstance(data.get("customer"), str) else None,
        brand=str(card.get("brand") or "unknown"),
        last4=str(card.get("last4") or ""),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


class _HTTPXClient(stripe.HTTPXClient):  # type: ignore[misc]
    """The library's httpx client, sending the encoded form as `content=`: it passes
    `data=<str>`, which httpx 0.28 deprecates (a warning per request)."""

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any
    ) -> list[Any]:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        data = kwargs.pop("data", None)
        if data:
            kwargs["content"] = data
        return [args, kwargs]


class Gateway:
    """The process's Stripe client; `await aclose()` at shutdown."""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str = "",
        timeout_s: float = 10.0,
        max_network_retries: int = 2,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.timeout_s = timeout_s
        self.max_network_retries = max_network_retries
        self.http = _HTTPXClient(timeout=timeout_s)
        base: dict[str, str] = {"api": self.api_base} if self.api_base else {}
        self.client = stripe.StripeClient(
            api_key,
            base_addresses=base,  # type: ignore[arg-type]
            max_network_retries=max_network_retries,
            http_client=self.http,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Gateway | None:
        """None without `STRIPE_SECRET_KEY`: payment routes then answer 503."""
        if not settings.stripe_secret_key:
            return None
        return cls(
            settings.stripe_secret_key,
            api_base=settings.stripe_api_base,
            timeout_s=settings.stripe_timeout_s,
            max_network_retries=settings.stripe_max_network_retries,
        )

    @property
    def v1(self) -> Any:
        """`client.v1` (its services are typed by the library; Any keeps params loose)."""
        return self.client.v1

    def deadline_s(self) -> float:
        """An overall limit for one call, its retries and back-off included."""
        return self.timeout_s * (self.max_network_retries + 1) + 2.0 * self.max_network_retries

    async def call(self, request: Awaitable[T]) -> T:
        """Await one library call under the overall deadline; transient failures become
        `StripeUnavailable` (API errors with a status below 500 propagate as they are)."""
        try:
            async with asyncio.timeout(self.deadline_s()):
                return await request
        except TRANSIENT_ERRORS as exc:
            log.warning("stripe unavailable: %s", type(exc).__name__)
            raise StripeUnavailable(type(exc).__name__) from exc
        except stripe.APIError as exc:  # 5xx after the library's retries
            if exc.http_status is None or exc.http_status >= 500:
                log.warning("stripe answered %s", exc.http_status)
                raise StripeUnavailable(f"Stripe answered {exc.http_status}") from exc
            raise

    async def aclose(self) -> None:
        await self.http.close_async()  # type: ignore[no-untyped-call]
