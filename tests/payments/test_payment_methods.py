"""Saved cards through localstripe: SetupIntent, attach (good, unknown, another customer's,
declined), list, delete, and every route refusing another driver's card."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.settings import Settings
from app.main import create_app
from tests.factories import auth, make_driver
from tests.payments.fixtures import Payments

CARDS = "/v1/me/payment-methods"


async def listed(pay: Payments, driver: dict[str, Any], query: str = "") -> dict[str, Any]:
    """`GET /v1/me/payment-methods` as `driver`."""
    r = await pay.client.get(CARDS + query, headers=driver["headers"])
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def ids(page: dict[str, Any]) -> list[str]:
    return [m["payment_method_id"] for m in page["items"]]


async def customer_of(pay: Payments, driver: dict[str, Any]) -> list[str]:
    """The driver's Stripe customers, as we recorded them."""
    rows = await pay.db.fetch(
        "SELECT customer_id FROM stripe_customers WHERE driver_id = $1::uuid", driver["driver_id"]
    )
    return [r["customer_id"] for r in rows]


async def test_setup_intent_on_one_customer_per_driver(pay: Payments) -> None:
    driver = await pay.driver(card=None)
    first = await pay.client.post(f"{CARDS}/setup-intent", headers=driver["headers"])
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["setup_intent_id"].startswith("seti_")
    assert body["client_secret"].startswith(body["setup_intent_id"] + "_secret_")
    second = await pay.client.post(f"{CARDS}/setup-intent", headers=driver["headers"])
    assert second.status_code == 201
    assert second.json()["setup_intent_id"] != body["setup_intent_id"]
    customers = await customer_of(pay, driver)
    assert len(customers) == 1
    intent = await pay.gateway.v1.setup_intents.retrieve_async(body["setup_intent_id"])
    assert intent.customer == customers[0]
    assert intent.usage == "off_session"


async def test_attach_list_default_and_delete(pay: Payments) -> None:
    driver = await pay.driver()
    first = driver["card"]
    assert first["brand"] == "visa"
    assert first["last4"] == "4242"
    assert first["default"] is True
    assert (first["exp_month"], first["exp_year"]) == (12, 2030)

    r = await pay.add_card(driver, "pm_card_chargeCustomerFail")
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["last4"] == "0341"
    assert second["default"] is True

    both = await listed(pay, driver)
    assert ids(both) == [second["payment_method_id"], first["payment_method_id"]]
    assert [m["default"] for m in both["items"]] == [True, False]
    assert both["next_cursor"] is None
    page = await listed(pay, driver, "?limit=1")
    assert len(page["items"]) == 1
    assert page["next_cursor"]
    rest = await listed(pay, driver, f"?limit=1&cursor={page['next_cursor']}")
    assert ids(rest) == [first["payment_method_id"]]

    # Stripe's customer has the same default as we show.
    [customer_id] = await customer_of(pay, driver)
    customer = await pay.gateway.v1.customers.retrieve_async(customer_id)
    assert customer.invoice_settings.default_payment_method == second["payment_method_id"]

    # Deleting the default detaches it at Stripe and makes the other card the default.
    second_url = f"{CARDS}/{second['payment_method_id']}"
    r = await pay.client.delete(second_url, headers=driver["headers"])
    assert r.status_code == 204, r.text
    detached = await pay.gateway.v1.payment_methods.retrieve_async(second["payment_method_id"])
    assert detached.customer is None
    left = await listed(pay, driver)
    assert [(m["payment_method_id"], m["default"]) for m in left["items"]] == [
        (first["payment_method_id"], True)
    ]
    assert (await pay.client.delete(second_url, headers=driver["headers"])).status_code == 404


async def test_unknown_payment_method_is_invalid(pay: Payments) -> None:
    driver = await pay.driver(card=None)
    r = await pay.add_card(driver, "pm_doesnotexist123")
    assert (r.status_code, r.json()["code"]) == (422, "payment_method_invalid")
    assert ids(await listed(pay, driver)) == []


async def test_another_customers_card_is_invalid(pay: Payments) -> None:
    owner = await pay.driver()
    thief = await pay.driver(card=None)
    r = await pay.add_card(thief, owner["card"]["payment_method_id"])
    assert (r.status_code, r.json()["code"]) == (422, "payment_method_invalid")
    owners = await pay.db.fetch("SELECT driver_id::text FROM payment_methods")
    assert [o["driver_id"] for o in owners] == [owner["driver_id"]]


async def test_card_declined_when_attached(pay: Payments) -> None:
    r = await pay.add_card(await pay.driver(card=None), "pm_card_visa_chargeDeclined")
    assert (r.status_code, r.json()["code"]) == (402, "card_declined")


async def test_another_drivers_card_is_not_found_everywhere(pay: Payments) -> None:
    owner = await pay.driver()
    other = await pay.driver(card=None)
    card_id = owner["card"]["payment_method_id"]
    r = await pay.client.delete(f"{CARDS}/{card_id}", headers=other["headers"])
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    assert ids(await listed(pay, other)) == []
    # the card is still the owner's, at Stripe too
    method = await pay.gateway.v1.payment_methods.retrieve_async(card_id)
    assert method.customer is not None
    assert ids(await listed(pay, owner)) == [card_id]


async def test_routes_need_a_driver_token(client: AsyncTestClient[Litestar]) -> None:
    for method, path in (
        ("POST", f"{CARDS}/setup-intent"),
        ("POST", CARDS),
        ("GET", CARDS),
        ("DELETE", f"{CARDS}/pm_x"),
    ):
        r = await client.request(method, path, json={"payment_method_id": "pm_x"})
        assert r.status_code == 401, (method, path, r.text)


async def test_without_stripe_the_routes_say_unavailable(
    db: asyncpg.Connection, settings: Settings
) -> None:
    app = create_app(msgspec.structs.replace(settings, stripe_secret_key=""), run_migrations=False)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        driver = await make_driver(db, settings, phone="+4915100000009")
        r = await client.post(f"{CARDS}/setup-intent", headers=auth(driver["access_token"]))
        assert r.status_code == 503
        assert r.json()["code"] == "payments_unavailable"
