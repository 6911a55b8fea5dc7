"""Every error is an RFC 9457 problem with a stable code; never a stack trace."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from tests.factories import auth, staff_token

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def assert_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    assert body["code"] == code
    assert "Traceback" not in r.text
    return body


async def test_unknown_route_is_404_problem(client: AsyncTestClient[Litestar]) -> None:
    assert_problem(await client.get("/no/such/route"), 404, "not_found")


async def test_wrong_method_is_405_problem(client: AsyncTestClient[Litestar]) -> None:
    assert_problem(await client.delete("/health/live"), 405, "method_not_allowed")


async def test_validation_is_422_with_fields(client: AsyncTestClient[Litestar]) -> None:
    r = await client.post(
        "/admin/v1/auth/login", json={"email": "a@b.c", "password": "x", "totp_code": "12ab56"}
    )
    body = assert_problem(r, 422, "validation_failed")
    assert body["errors"] == [{"field": "totp_code", "message": body["errors"][0]["message"]}]


async def test_unknown_body_field_is_422(client: AsyncTestClient[Litestar]) -> None:
    r = await client.post(
        "/admin/v1/auth/login",
        json={"email": "a@b.c", "password": "x", "totp_code": "123456", "role": "admin"},
    )
    body = assert_problem(r, 422, "validation_failed")
    assert body["errors"][0]["field"] in {"role", "body"}


async def test_malformed_json_is_422(client: AsyncTestClient[Litestar]) -> None:
    r = await client.post(
        "/admin/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(r, 422, "validation_failed")


async def test_bad_query_parameter_is_422(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    token = staff_token(settings, roles=(Role.VIEWER,))
    r = await client.get("/admin/v1/fleet/sites?limit=0", headers=auth(token))
    body = assert_problem(r, 422, "validation_failed")
    assert body["errors"][0]["field"] == "limit"


async def test_missing_token_is_401(client: AsyncTestClient[Litestar]) -> None:
    r = await client.get("/admin/v1/audit-log")
    assert_problem(r, 401, "unauthorized")


async def test_forged_tokens_are_401(client: AsyncTestClient[Litestar], settings: Settings) -> None:
    import jwt

    claims = {"typ": "staff", "sub": "x", "roles": ["admin"], "exp": 4102444800}
    none_alg = jwt.encode(claims, key="", algorithm="none")
    wrong_key = jwt.encode(claims, "another-secret-of-sufficient-length-123", algorithm="HS256")
    expired = jwt.encode({**claims, "exp": 1}, settings.jwt_secret, algorithm="HS256")
    driver = jwt.encode({**claims, "typ": "driver"}, settings.jwt_secret, algorithm="HS256")
    for token in (none_alg, wrong_key, expired, driver, "garbage"):
        r = await client.get("/admin/v1/audit-log", headers=auth(token))
        assert_problem(r, 401, "unauthorized")


async def test_forbidden_is_403(client: AsyncTestClient[Litestar], settings: Settings) -> None:
    token = staff_token(settings, roles=(Role.VIEWER,))
    r = await client.post("/admin/v1/fleet/import", json={"sites": []}, headers=auth(token))
    assert_problem(r, 403, "forbidden")


async def test_every_response_carries_a_request_id(client: AsyncTestClient[Litestar]) -> None:
    r = await client.get("/health/live", headers={"X-Request-ID": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    r = await client.get("/health/live")
    assert len(r.headers["x-request-id"]) == 32
