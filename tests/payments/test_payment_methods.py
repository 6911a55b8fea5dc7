"""Saved cards through localstripe: SetupIntent, attach (good, unknown, another customer's,
declined), list, delete, and every route refusing another driver's card."""

from __future__ import annotations

import asyncpg
import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.settings import Settings
from app.main import create_app
from app.payments.stripe_client import Gateway
from tests.factories import auth, make_driver
from tests.payments.fixtures import driver_with_card


async def test_setup_intent_on_one_customer_per_driver(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
) -> None:
    driver = await make_driver(db, settings, phone="+4915100000001")
    headers = auth(driver["access_token"])
    first = await client.post("/v1/me/payment-methods/setup-intent", headers=headers)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["setup_intent_id"].startswith("seti_")
    assert body["client_secret"].startswith(body["setup_intent_id"] + "_secret_")
    second = await client.post("/v1/me/payment-methods/setup-intent", headers=headers)
    assert second.status_code == 201
    assert second.json()["setup_intent_id"] != body["setup_intent_id"]
    customers = await db.fetch(
        "SELECT customer_id FROM stripe_customers WHERE driver_id = $1::uuid", driver["driver_id"]
    )
    assert len(customers) == 1
    intent = await gateway.v1.setup_intents.retrieve_async(body["setup_intent_id"])
    assert intent.customer == customers[0]["customer_id"]
    assert intent.usage == "off_session"


async def test_attach_list_default_and_delete(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
) -> None:
    driver = await driver_with_card(client, db, settings, phone="+4915100000002")
    headers = auth(driver["access_token"])
    first = driver["card"]
    assert first["brand"] == "visa"
    assert first["last4"] == "4242"
    assert first["default"] is True
    assert (first["exp_month"], first["exp_year"]) == (12, 2030)

    r = await client.post(
        "/v1/me/payment-methods",
        json={"payment_method_id": "pm_card_chargeCustomerFail"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["last4"] == "0341"
    assert second["default"] is True

    listed = (await client.get("/v1/me/payment-methods", headers=headers)).json()
    assert [m["payment_method_id"] for m in listed["items"]] == [
        second["payment_method_id"],
        first["payment_method_id"],
    ]
    assert [m["default"] for m in listed["items"]] == [True, False]
    assert listed["next_cursor"] is None
    page = (await client.get("/v1/me/payment-methods?limit=1", headers=headers)).json()
    assert len(page["items"]) == 1
    assert page["next_cursor"]
    rest = await client.get(
        f"/v1/me/payment-methods?limit=1&cursor={page['next_cursor']}", headers=headers
    )
    assert [m["payment_method_id"] for m in rest.json()["items"]] == [first["payment_method_id"]]

    # Stripe's customer has the same default as we show.
    customer_id = await db.fetchval(
        "SELECT customer_id FROM stripe_customers WHERE driver_id = $1::uuid", driver["driver_id"]
    )
    customer = await gateway.v1.customers.retrieve_async(customer_id)
    assert customer.invoice_settings.default_payment_method == second["payment_method_id"]

    # Deleting the default detaches it at Stripe and makes the other card the default.
    r = await client.delete(
        f"/v1/me/payment-methods/{second['payment_method_id']}", headers=headers
    )
    assert r.status_code == 204, r.text
    detached = await gateway.v1.payment_methods.retrieve_async(second["payment_method_id"])
    assert detached.customer is None
    listed = (await client.get("/v1/me/payment-methods", headers=headers)).json()
    assert [(m["payment_method_id"], m["default"]) for m in listed["items"]] == [
        (first["payment_method_id"], True)
    ]
    again = await client.delete(
        f"/v1/me/payment-methods/{second['payment_method_id']}", headers=headers
    )
    assert again.status_code == 404


async def test_unknown_payment_method_is_invalid(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    driver = await make_driver(db, settings, phone="+4915100000003")
    r = await client.post(
        "/v1/me/payment-methods",
        json={"payment_method_id": "pm_doesnotexist123"},
        headers=auth(driver["access_token"]),
    )
    assert r.status_code == 422
    assert r.json()["code"] == "payment_method_invalid"
    assert (
        await client.get("/v1/me/payment-methods", headers=auth(driver["access_token"]))
    ).json()["items"] == []


async def test_another_customers_card_is_invalid(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    owner = await driver_with_card(client, db, settings, phone="+4915100000004")
    thief = await make_driver(db, settings, phone="+4915100000005")
    r = await client.post(
        "/v1/me/payment-methods",
        json={"payment_method_id": owner["card"]["payment_method_id"]},
        headers=auth(thief["access_token"]),
    )
    assert r.status_code == 422
    assert r.json()["code"] == "payment_method_invalid"
    owners = await db.fetch("SELECT driver_id::text FROM payment_methods")
    assert [o["driver_id"] for o in owners] == [owner["driver_id"]]


async def test_card_declined_when_attached(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    driver = await make_driver(db, settings, phone="+4915100000006")
    r = await client.post(
        "/v1/me/payment-methods",
        json={"payment_method_id": "pm_card_visa_chargeDeclined"},
        headers=auth(driver["access_token"]),
    )
    assert r.status_code == 402
    assert r.json()["code"] == "card_declined"


async def test_another_drivers_card_is_not_found_everywhere(
    client: AsyncTestClient[Litestar],
    db: asyncpg.Connection,
    settings: Settings,
    gateway: Gateway,
) -> None:
    owner = await driver_with_card(client, db, settings, phone="+4915100000007")
    other = await make_driver(db, settings, phone="+4915100000008")
    card_id = owner["card"]["payment_method_id"]
    r = await client.delete(
        f"/v1/me/payment-methods/{card_id}", headers=auth(other["access_token"])
    )
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    listed = await client.get("/v1/me/payment-methods", headers=auth(other["access_token"]))
    assert listed.json()["items"] == []
    # the card is still the owner's, at Stripe too
    method = await gateway.v1.payment_methods.retrieve_async(card_id)
    assert method.customer is not None
    mine = await client.get("/v1/me/payment-methods", headers=auth(owner["access_token"]))
    assert [m["payment_method_id"] for m in mine.json()["items"]] == [card_id]


async def test_routes_need_a_driver_token(client: AsyncTestClient[Litestar]) -> None:
    for method, path in (
        ("POST", "/v1/me/payment-methods/setup-intent"),
        ("POST", "/v1/me/payment-methods"),
        ("GET", "/v1/me/payment-methods"),
        ("DELETE", "/v1/me/payment-methods/pm_x"),
    ):
        r = await client.request(method, path, json={"payment_method_id": "pm_x"})
        assert r.status_code == 401, (method, path, r.text)


async def test_without_stripe_the_routes_say_unavailable(
    db: asyncpg.Connection, settings: Settings
) -> None:
    app = create_app(msgspec.structs.replace(settings, stripe_secret_key=""), run_migrations=False)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        driver = await make_driver(db, settings, phone="+4915100000009")
        r = await client.post(
            "/v1/me/payment-methods/setup-intent", headers=auth(driver["access_token"])
        )
        assert r.status_code == 503
        assert r.json()["code"] == "payments_unavailable"
