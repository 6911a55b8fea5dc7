"""Who may do what, generated from the route table of `create_app()` (not a hand list that
drifts): every route found there is checked, and a route the rules below do not cover
fails the suite.

- Object level: every `/v1` route with a path parameter × another driver's object → the
  same 404 as an id that exists for no one, and the object unchanged (`ownership.py`);
  every `/v1` request body that names an object by id (from the committed document) ×
  another driver's id → refused, the object unchanged.
- Function level: every `/admin/v1` route × no token / each role → 401 / 403 / allowed,
  as API.md's roles say (`ADMIN_RULES`).
- Webhooks: every `/webhooks/` route × bad, missing and stale signature → 4xx, and not one
  row of the database changed (`WEBHOOKS`); a good signature is accepted (so the bad ones
  are refused for their signature, not for something else).
- Tokens: `alg: none`, a wrong key, an expired `exp`, a staff token on driver routes and
  a driver token on staff routes → 401 on every guarded route.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import asyncpg
import jwt
import msgspec
import pytest
import stripe
from litestar import Litestar
from litestar.testing import AsyncTestClient
from twilio.request_validator import RequestValidator

from app.core.auth import Role
from app.core.settings import ROOT, Settings
from app.main import create_app
from tests.factories import auth, import_fleet, make_driver, site, staff_token
from tests.security.ownership import REGISTRY, Owned, Public, World, make_world, other_driver
from tests.standins.control_center import build_push, platform_date

NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
SKIP_METHODS = {"OPTIONS", "HEAD"}


def routes(app: Litestar, prefix: str) -> Iterator[tuple[str, str, Any]]:
    """(method, path template, route handler) of every HTTP route under `prefix`."""
    for route in app.routes:
        if not route.path.startswith(prefix):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in sorted(set(getattr(handler, "http_methods", ())) - SKIP_METHODS):
                yield method, route.path, handler


def guard_names(handler: Any) -> set[str]:
    names: set[str] = set()
    for layer in handler.ownership_layers:
        names.update(getattr(g, "__name__", "") for g in (layer.guards or []))
    return names


def fill(path: str, values: dict[str, str]) -> str:
    return PARAM.sub(lambda m: values[m.group(1)], path)


async def fingerprint(db: asyncpg.Connection) -> dict[str, str]:
    """An md5 of every row of every table: equal before and after = nothing changed."""
    tables = await db.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    out: dict[str, str] = {}
    for t in tables:
        name = t["tablename"]
        out[name] = await db.fetchval(
            f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM \"{name}\" x"
        )
    return out


# --- object level ------------------------------------------------------------------------


def test_every_v1_route_with_an_id_is_in_the_ownership_registry(app: Litestar) -> None:
    missing = sorted(
        {
            f"{name} (in {method} {path})"
            for method, path, _ in routes(app, "/v1/")
            for name in PARAM.findall(path)
            if name not in REGISTRY
        }
    )
    assert not missing, (
        "say how to make another driver's object for these path parameters in "
        f"tests/security/ownership.py (see tests/security/README.md): {missing}"
    )


@pytest.fixture
def integrations(settings: Settings) -> Settings:
    """Stripe configured but unreachable: a route must refuse another driver's object
    before it asks anyone else about it."""
    return msgspec.structs.replace(
        settings, stripe_secret_key="sk_test_unreachable", stripe_api_base="http://127.0.0.1:9"
    )


async def test_another_drivers_objects_are_404_and_untouched(
    db: asyncpg.Connection, integrations: Settings
) -> None:
    settings = integrations
    async with AsyncTestClient(
        app=create_app(settings, run_migrations=False), base_url="http://testserver.local"
    ) as client:
        await _check_objects(client, db, settings)


async def _check_objects(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    world = await make_world(client, db, settings)
    me = await make_driver(db, settings, phone="+4915166000001")
    checked = 0
    for method, path, _ in routes(client.app, "/v1/"):
        names = PARAM.findall(path)
        entries = {n: REGISTRY[n] for n in names}
        if not names or all(isinstance(e, Public) for e in entries.values()):
            continue
        owner = await other_driver(db, settings)
        theirs: dict[str, str] = {}
        made_up: dict[str, str] = {}
        for name, entry in entries.items():
            if isinstance(entry, Owned):
                theirs[name] = await entry.make(world, owner)
                made_up[name] = entry.made_up
            else:
                theirs[name] = made_up[name] = world.site_id
        before = {
            n: await _row(db, e, theirs[n]) for n, e in entries.items() if isinstance(e, Owned)
        }
        headers = auth(me["access_token"])
        body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
        r = await client.request(method, fill(path, theirs), headers=headers, json=body)
        r_none = await client.request(method, fill(path, made_up), headers=headers, json=body)
        assert r.status_code == 404, f"{method} {path} on another driver's object: {r.text}"
        assert r.json()["code"] == r_none.json()["code"], f"{method} {path} leaks existence"
        for n, e in entries.items():
            if isinstance(e, Owned):
                assert await _row(db, e, theirs[n]) == before[n], f"{method} {path} changed it"
        checked += 1
    assert checked >= 1


def _schema(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def body_references(spec: dict[str, Any]) -> Iterator[tuple[str, str, list[str], list[str]]]:
    """(method, path, id fields in REGISTRY as Owned, required fields) of every mutating
    `/v1` operation whose JSON body names another object by id."""
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if method not in ("post", "put", "patch") or content is None:
                continue
            body = _schema(spec, content["schema"])
            props = list(body.get("properties", {}))
            owned = [p for p in props if isinstance(REGISTRY.get(p), Owned)]
            if owned:
                yield method.upper(), path, owned, list(body.get("required", []))


async def test_another_drivers_ids_in_a_body_are_refused_and_untouched(
    db: asyncpg.Connection, integrations: Settings
) -> None:
    """`POST /v1/sessions {reservation_id}`, `POST /v1/me/payment-methods
    {payment_method_id}`, …: someone else's id in a body is never accepted (no 2xx) and
    their object does not change. Found from the committed document's request bodies."""
    spec = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    refs = list(body_references(spec))
    assert refs, "no /v1 body names an object by id?"
    async with AsyncTestClient(
        app=create_app(integrations, run_migrations=False), base_url="http://testserver.local"
    ) as client:
        world = await make_world(client, db, integrations)
        me = await make_driver(db, integrations, phone="+4915166000003")
        for method, path, owned, required in refs:
            owner = await other_driver(db, integrations)
            body: dict[str, Any] = {}
            rows: dict[str, tuple[Owned, str, Any]] = {}
            for name in owned:
                entry = REGISTRY[name]
                assert isinstance(entry, Owned)
                theirs = await entry.make(world, owner)
                body[name] = theirs
                rows[name] = (entry, theirs, await _row(db, entry, theirs))
            for name in required:
                if name not in body:
                    assert name in BODY_FILL, f"{method} {path}: say how to fill {name!r}"
                    body[name] = BODY_FILL[name](world)
            r = await client.request(method, path, json=body, headers=auth(me["access_token"]))
            assert r.status_code >= 400, f"{method} {path} took another driver's ids: {r.text}"
            assert r.status_code not in (401, 403, 500), f"{method} {path}: {r.text}"
            for name, (entry, theirs, before) in rows.items():
                assert await _row(db, entry, theirs) == before, f"{method} {path} changed {name}"


# Required body fields that are not someone's object: how to fill them.
BODY_FILL: dict[str, Callable[[World], Any]] = {
    "connector_id": lambda world: world.connector_ids[0],
}


async def _row(db: asyncpg.Connection, entry: Owned, key: str) -> Any:
    return await db.fetchval(
        f'SELECT to_jsonb(t)::text FROM "{entry.table}" t WHERE "{entry.key}"::text = $1', key
    )


# --- function level (admin roles, API.md "Admin") -----------------------------------------

EVERYONE = frozenset(Role)
FLEET = frozenset({Role.ADMIN, Role.OPERATOR})
PRICING = frozenset({Role.ADMIN, Role.PRICING_ADMIN})
# (method regex, path regex, roles allowed); the first rule that matches decides. From
# API.md: admin everything, pricing_admin tariffs + read, operator fleet + read, viewer read;
# sessions: operator, admin, viewer; refunds: admin, operator.
ADMIN_RULES: list[tuple[str, str, frozenset[Role]]] = [
    ("GET", r"/admin/v1/sessions\b", frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER})),
    ("GET", r".*", EVERYONE),
    ("POST", r"/admin/v1/tariff-previews\b", EVERYONE),  # a draft's preview: nothing stored
    ("POST|PUT|PATCH|DELETE", r"/admin/v1/(tariffs|tariff-assignments|tariff-previews)\b", PRICING),
    ("POST|PUT|PATCH|DELETE", r"/admin/v1/fleet/", FLEET),
    ("POST", r"/admin/v1/alerts/[^/]+/acknowledge", FLEET),
    ("POST", r"/admin/v1/sessions/[^/]+/refund", FLEET),
]
PUBLIC_ADMIN = {("POST", "/admin/v1/auth/login")}


def allowed_roles(method: str, path: str) -> frozenset[Role] | None:
    for methods, pattern, roles in ADMIN_RULES:
        if re.fullmatch(methods, method) and re.match(pattern, path):
            return roles
    return None


def test_every_admin_route_has_a_role_rule(app: Litestar) -> None:
    missing = [
        f"{m} {p}"
        for m, p, _ in routes(app, "/admin/v1/")
        if (m, p) not in PUBLIC_ADMIN and allowed_roles(m, p) is None
    ]
    assert not missing, f"add the roles API.md gives these routes to ADMIN_RULES: {missing}"


async def test_every_admin_route_for_every_role(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    checked = 0
    for method, template, _ in routes(client.app, "/admin/v1/"):
        if (method, template) in PUBLIC_ADMIN:
            continue
        allowed = allowed_roles(method, template)
        assert allowed is not None
        path = PARAM.sub(lambda m: "1" if ":int" in m.group(0) else NO_SUCH_ID, template)
        body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
        r = await client.request(method, path, json=body)
        assert r.status_code == 401, f"{method} {template} without a token: {r.status_code}"
        for role in Role:
            token = staff_token(settings, roles=(role,), staff_id=str(uuid.uuid4()))
            r = await client.request(method, path, json=body, headers=auth(token))
            if role in allowed:
                assert r.status_code not in (401, 403), f"{role} on {method} {template}: {r.text}"
                assert r.status_code < 500, f"{role} on {method} {template}: {r.text}"
            else:
                assert r.status_code == 403, f"{role} on {method} {template}: {r.status_code}"
                assert r.json()["code"] == "forbidden"
        checked += 1
    assert checked >= 10


# --- tokens ------------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def bad_tokens(settings: Settings, driver_id: str, family_id: str) -> dict[str, str]:
    now = int(time.time())
    driver = {"typ": "driver", "sub": driver_id, "sid": family_id, "iat": now, "exp": now + 600}
    staff = {"typ": "staff", "sub": str(uuid.uuid4()), "roles": ["admin"], "exp": now + 600}
    with warnings.catch_warnings():  # the right secret, an algorithm we do not accept
        warnings.simplefilter("ignore")
        hs512 = jwt.encode(driver, settings.jwt_secret, algorithm="HS512")
    return {
        "alg none (driver)": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(driver)}.",
        "alg none (staff)": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(staff)}.",
        "wrong key (driver)": jwt.encode(driver, "another-secret-" + "x" * 40, algorithm="HS256"),
        "wrong key (staff)": jwt.encode(staff, "another-secret-" + "x" * 40, algorithm="HS256"),
        "expired (driver)": jwt.encode(
            {**driver, "iat": now - 7200, "exp": now - 3600}, settings.jwt_secret, "HS256"
        ),
        "expired (staff)": jwt.encode(
            {**staff, "exp": now - 3600}, settings.jwt_secret, algorithm="HS256"
        ),
        "no exp (driver)": jwt.encode(
            {k: v for k, v in driver.items() if k != "exp"}, settings.jwt_secret, "HS256"
        ),
        "HS512 (driver)": hs512,
        "garbage": "not.a.token",
    }


async def test_forged_expired_and_crossed_tokens_are_401_everywhere(
    client: AsyncTestClient[Litestar], db: asyncpg.Connection, settings: Settings
) -> None:
    me = await make_driver(db, settings, phone="+4915166000002")
    tokens = bad_tokens(settings, me["driver_id"], me["family_id"])
    staff = staff_token(settings, roles=(Role.ADMIN,), staff_id=str(uuid.uuid4()))
    driver_routes = [
        (m, p)
        for m, p, h in routes(client.app, "/v1/")
        if "requires_driver" in guard_names(h) and (m, p) != ("POST", "/v1/auth/logout")
    ] + [("POST", "/v1/auth/logout")]
    admin_routes = [
        (m, p)
        for m, p, h in routes(client.app, "/admin/v1/")
        if any(n.startswith("requires_") for n in guard_names(h))
    ]
    assert len(driver_routes) >= 3
    assert len(admin_routes) >= 10
    for kind, candidates, cross in (
        ("driver", driver_routes, staff),
        ("staff", admin_routes, me["access_token"]),
    ):
        for method, template in candidates:
            path = PARAM.sub(lambda m: "1" if ":int" in m.group(0) else NO_SUCH_ID, template)
            body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None
            for name, token in [*tokens.items(), (f"a token of the other kind on {kind}", cross)]:
                r = await client.request(method, path, json=body, headers=auth(token))
                assert r.status_code == 401, f"{name} on {method} {template}: {r.status_code}"
                assert r.json()["code"] == "unauthorized"
    # and the real one still works: the 401s above are the tokens', not the routes'
    r = await client.get("/v1/me", headers=auth(me["access_token"]))
    assert r.status_code == 200, r.text


# --- webhooks ----------------------------------------------------------------------------

PUSH_SECRET = "fuzz-push-secret-0123456789"
STRIPE_SECRET = "whsec_access_matrix_0123456789"
TWILIO_TOKEN = "twilio-auth-token-0123456789abcdef"
PUBLIC_BASE = "https://voltway.example"


@dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Webhook:
    """`sign(at)` → a delivery signed as the platform would at unix time `at`;
    `variants(at)` → the bad, missing (and where the scheme has a clock, stale) ones."""

    good: Callable[[float], Delivery]
    bad: Callable[[float], dict[str, Delivery]]


def _push(at: float, *, secret: str = PUSH_SECRET, drop: bool = False) -> Delivery:
    content_type, body = build_push(
        "SESSION_STOP", "8949000000000000099", secret=secret.encode(), timestamp=platform_date(at)
    )
    if drop:
        body = re.sub(rb"&?signature2=[^&]*", b"", body)
    return Delivery(body, {"content-type": content_type})


def _stripe(at: float, *, secret: str = STRIPE_SECRET, header: bool = True) -> Delivery:
    event = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": "customer.created",
        "created": int(at),
        "data": {"object": {"id": "cus_x", "object": "customer"}},
        "livemode": False,
        "api_version": "2024-06-20",
    }
    payload = json.dumps(event)
    headers = {"content-type": "application/json"}
    if header:
        headers["stripe-signature"] = stripe.WebhookSignature.generate_signature_header(
            payload, secret, timestamp=int(at)
        )
    return Delivery(payload.encode(), headers)


def _twilio(path: str) -> Callable[..., Delivery]:
    def make(at: float, *, token: str = TWILIO_TOKEN, header: bool = True) -> Delivery:
        form = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": "AC" + "0" * 32,
            "From": "+4915166000009",
            "To": "+4915100000000",
            "Body": "STOP",
            "MessageStatus": "delivered",
        }
        headers = {"content-type": "application/x-www-form-urlencoded"}
        if header:
            sig = RequestValidator(token).compute_signature(PUBLIC_BASE + path, form)
            headers["x-twilio-signature"] = sig
        return Delivery(urlencode(form).encode(), headers)

    return make


def _twilio_hook(path: str) -> Webhook:
    make = _twilio(path)
    return Webhook(
        good=lambda at: make(at),
        bad=lambda at: {
            "bad": make(at, token="another-token-0123456789abcdef00"),
            "missing": make(at, header=False),
        },  # Twilio signs no timestamp: nothing can be stale
    )


WEBHOOKS: dict[str, Webhook] = {
    "/webhooks/control-center": Webhook(
        good=lambda at: _push(at),
        bad=lambda at: {
            "bad": _push(at, secret="another-secret"),
            "missing": _push(at, drop=True),
            "stale": _push(at - 3600),
        },
    ),
    "/webhooks/stripe": Webhook(
        good=lambda at: _stripe(at),
        bad=lambda at: {
            "bad": _stripe(at, secret="whsec_another"),
            "missing": _stripe(at, header=False),
            "stale": _stripe(at - 3600),
        },
    ),
    "/webhooks/twilio/status": _twilio_hook("/webhooks/twilio/status"),
    "/webhooks/twilio/inbound": _twilio_hook("/webhooks/twilio/inbound"),
}


def test_every_webhook_has_a_signer(app: Litestar) -> None:
    missing = [f"{m} {p}" for m, p, _ in routes(app, "/webhooks/") if p not in WEBHOOKS]
    assert not missing, f"add how these webhooks are signed to WEBHOOKS: {missing}"


@pytest.fixture
def webhook_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings,
        control_center_push_secret=PUSH_SECRET,
        stripe_webhook_secret=STRIPE_SECRET,
        twilio_auth_token=TWILIO_TOKEN,
        twilio_account_sid="AC" + "0" * 32,
        twilio_from="+4915100000000",
        public_base_url=PUBLIC_BASE,
    )


async def test_bad_missing_and_stale_signatures_change_nothing(
    webhook_settings: Settings, db: asyncpg.Connection
) -> None:
    app = create_app(webhook_settings, run_migrations=False)
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as client:
        staff = staff_token(webhook_settings, roles=(Role.ADMIN,), staff_id=str(uuid.uuid4()))
        await import_fleet(client, staff, [site("WH-1")])
        await make_driver(db, webhook_settings, phone="+4915166000009")
        hooks = [p for _, p, _ in routes(app, "/webhooks/")]
        for path in hooks:
            now = time.time()
            for name, delivery in WEBHOOKS[path].bad(now).items():
                before = await fingerprint(db)
                r = await client.post(path, content=delivery.body, headers=delivery.headers)
                assert 400 <= r.status_code < 500, f"{name} signature on {path}: {r.status_code}"
                assert await fingerprint(db) == before, f"{name} signature on {path} changed data"
            good = WEBHOOKS[path].good(now)
            r = await client.post(path, content=good.body, headers=good.headers)
            assert r.status_code < 300, f"a good signature on {path}: {r.status_code} {r.text}"
