"""Bad input is refused as a class, at the door: every case schemathesis or a person found
as a 500 once, plus the abuse limits (body size, query size, JSON depth)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from app.core.errors import EXCEPTION_HANDLERS
from app.core.limits import (
    MAX_JSON_DEPTH,
    RequestLimitsMiddleware,
    decode_json_body,
    json_escapes_nul,
)
from app.core.settings import Settings
from tests.factories import auth, make_driver, staff_token

ZERO_ID = "00000000-0000-0000-0000-000000000000"


def _is_problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status, body
    assert body["code"] == code, body


@pytest.fixture
async def driver_headers(db: asyncpg.Connection, settings: Settings) -> dict[str, str]:
    driver = await make_driver(db, settings)
    return auth(driver["access_token"])


@pytest.fixture
def staff_headers(settings: Settings) -> dict[str, str]:
    from app.core.auth import Role

    return auth(staff_token(settings, roles=(Role.ADMIN,), staff_id=ZERO_ID))


NUL_PATHS = [
    "/admin/v1/fleet/sites?external_id=a%00b",
    "/admin/v1/audit-log?entity_type=%00",
    "/admin/v1/fleet/chargers?cursor=%00",
    "/v1/chargers/nearby?lat=1%00&lon=2",
    f"/admin/v1/tariffs/{ZERO_ID}%00",
]


async def test_nul_in_path_or_query_is_422(
    client: AsyncTestClient[Litestar], staff_headers: dict[str, str]
) -> None:
    for path in NUL_PATHS:
        r = await client.get(path, headers=staff_headers)
        _is_problem(r, 422, "validation_failed")


async def test_nul_in_json_bodies_is_422_and_escaped_backslash_is_not(
    client: AsyncTestClient[Litestar],
    driver_headers: dict[str, str],
    staff_headers: dict[str, str],
) -> None:
    r = await client.patch("/v1/me", content=b'{"name": "a\\u0000b"}', headers=driver_headers)
    _is_problem(r, 422, "validation_failed")
    assert r.json()["errors"][0]["field"] == "body"
    site = {"external_id": "X\u0000", "name": "n", "address": "a", "lat": 1, "lon": 1}
    r = await client.post(
        "/admin/v1/fleet/import",
        json={"sites": [{**site, "timezone": "Europe/Berlin", "chargers": []}]},
        headers=staff_headers,
    )
    _is_problem(r, 422, "validation_failed")
    # `\\u0000` in JSON is a backslash and the text "u0000": fine.
    r = await client.patch("/v1/me", content=b'{"name": "a\\\\u0000b"}', headers=driver_headers)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "a\\u0000b"


def test_json_nul_escape_parity() -> None:
    assert json_escapes_nul(b'"\\u0000"')
    assert not json_escapes_nul(b'"\\\\u0000"')
    assert json_escapes_nul(b'"\\\\\\u0000"')
    assert not json_escapes_nul(b'"u0000"')


async def test_integer_beyond_postgres_range_is_not_500(
    client: AsyncTestClient[Litestar], staff_headers: dict[str, str]
) -> None:
    for path in (
        f"/admin/v1/tariffs/{ZERO_ID}?version=3000000000",
        f"/admin/v1/tariffs/{ZERO_ID}/timeline?version=3000000000",
    ):
        r = await client.get(path, headers=staff_headers)
        assert r.status_code in (404, 422), r.text


async def test_denormal_float_is_422(
    client: AsyncTestClient[Litestar], driver_headers: dict[str, str]
) -> None:
    vehicle = {"battery_kwh": 5e-324, "max_ac_kw": 11, "max_dc_kw": 50, "connector_types": []}
    r = await client.patch("/v1/me", json={"vehicle": vehicle}, headers=driver_headers)
    _is_problem(r, 422, "validation_failed")


async def test_deep_json_is_422(
    client: AsyncTestClient[Litestar],
    driver_headers: dict[str, str],
    staff_headers: dict[str, str],
) -> None:
    for depth in (MAX_JSON_DEPTH + 1, 100_000):
        body = b"[" * depth + b"]" * depth
        r = await client.patch("/v1/me", content=body, headers=driver_headers)
        _is_problem(r, 422, "validation_failed")
        r = await client.post("/admin/v1/tariffs", content=body, headers=staff_headers)
        _is_problem(r, 422, "validation_failed")
        deep_site = b'{"sites": [' + b"[" * depth + b"]" * depth + b"]}"
        r = await client.post("/admin/v1/fleet/import", content=deep_site, headers=staff_headers)
        assert r.status_code in (200, 422), r.text  # a bad site is reported, never a 500


async def test_body_not_utf8_is_422(
    client: AsyncTestClient[Litestar],
    driver_headers: dict[str, str],
    staff_headers: dict[str, str],
) -> None:
    r = await client.patch("/v1/me", content=b'{"name": "\xff\xfe"}', headers=driver_headers)
    _is_problem(r, 422, "validation_failed")
    r = await client.post(
        "/admin/v1/fleet/import", content=b'{"sites": ["\xff"]}', headers=staff_headers
    )
    _is_problem(r, 422, "validation_failed")


async def test_body_json_types_are_strict(
    client: AsyncTestClient[Litestar], driver_headers: dict[str, str]
) -> None:
    r = await client.patch("/v1/me", json={"sms_alerts": 0}, headers=driver_headers)
    _is_problem(r, 422, "validation_failed")
    assert r.json()["errors"][0]["field"] == "sms_alerts"


async def test_forged_cursors_are_422(
    client: AsyncTestClient[Litestar], staff_headers: dict[str, str]
) -> None:
    for path in ("/admin/v1/audit-log", "/admin/v1/fleet/sites", "/admin/v1/fleet/chargers"):
        for cursor in ("AAAA", "eyJhIjoxfQ", "W10", "bnVsbA", "!!", "e30", "W1tdXQ"):
            r = await client.get(path, params={"cursor": cursor}, headers=staff_headers)
            _is_problem(r, 422, "validation_failed")


# --- abuse limits ------------------------------------------------------------------------


async def test_two_megabyte_json_is_413_on_every_kind_of_route(
    client: AsyncTestClient[Litestar],
    driver_headers: dict[str, str],
    staff_headers: dict[str, str],
) -> None:
    big = json.dumps({"name": "a" * (2 * 1024 * 1024)}).encode()
    for method, path, headers in [
        ("PATCH", "/v1/me", driver_headers),
        ("POST", "/v1/auth/otp", {}),
        ("POST", "/admin/v1/tariffs", staff_headers),
        ("POST", "/webhooks/control-center", {}),
        ("GET", "/health/live", {}),
    ]:
        r = await client.request(
            method, path, content=big, headers={**headers, "content-type": "application/json"}
        )
        _is_problem(r, 413, "payload_too_large")
    # refused at the door, and counted as what it was (not as a 500)
    metrics = (await client.get("/metrics")).text
    assert 'path="/v1/me"' in metrics or "/v1/me" in metrics
    assert any('status="413"' in line and "/v1/me" in line for line in metrics.splitlines())


async def test_fleet_import_keeps_its_larger_limit(
    client: AsyncTestClient[Litestar], staff_headers: dict[str, str]
) -> None:
    padding = " " * (2 * 1024 * 1024)
    r = await client.post(
        "/admin/v1/fleet/import",
        content=('{"sites": []' + padding + "}").encode(),
        headers={**staff_headers, "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text


async def test_streamed_body_is_cut_off_at_the_limit(settings: Settings) -> None:
    """No Content-Length (chunked): the middleware counts while the handler reads."""
    seen: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            seen.append(len(message.get("body", b"")))
            if not message.get("more_body"):
                break

    class _State:
        pass

    state = _State()
    state.settings = settings  # type: ignore[attr-defined]

    class _App:
        pass

    fake_app = _App()
    fake_app.state = state  # type: ignore[attr-defined]
    chunk = b"x" * 65536
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += 1
        return {"type": "http.request", "body": chunk, "more_body": sent < 1000}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/me",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "app": fake_app,
    }
    from app.core.limits import PayloadTooLarge

    with pytest.raises(PayloadTooLarge):
        await RequestLimitsMiddleware(app)(scope, receive, None)
    assert sent * len(chunk) <= settings.request_max_body_bytes + len(chunk)


async def test_query_parameter_count_and_length_limits(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    many = "&".join(f"p{i}=1" for i in range(settings.request_max_query_params + 1))
    r = await client.get(f"/v1/chargers/nearby?lat=1&lon=2&{many}")
    _is_problem(r, 422, "validation_failed")
    r = await client.get("/v1/chargers/nearby", params={"lat": "1", "lon": "2", "q": "x" * 9000})
    _is_problem(r, 422, "validation_failed")
    r = await client.get("/v1/chargers/nearby", params={"lat": "1", "lon": "2"})
    assert r.status_code == 200, r.text


def test_json_depth_limit_counts_levels() -> None:
    ok = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert decode_json_body(ok) is not None
    with pytest.raises(Exception, match="nests deeper"):
        decode_json_body(b"[" + ok + b"]")


async def test_options_lists_every_method_of_the_path(client: AsyncTestClient[Litestar]) -> None:
    r = await client.options("/admin/v1/tariffs")
    assert r.status_code == 204
    assert set(r.headers["allow"].split(", ")) >= {"GET", "POST", "OPTIONS"}
    r = await client.options("/v1/me")
    assert r.status_code == 204
    assert set(r.headers["allow"].split(", ")) >= {"GET", "PATCH", "OPTIONS"}


# --- the database safety net -------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.NumericValueOutOfRangeError("value out of range"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence 0x00"),
        asyncpg.exceptions.InvalidDatetimeFormatError("bad date"),
        asyncpg.exceptions.DataError("invalid input for query argument $1"),
        asyncpg.exceptions.CheckViolationError("violates check constraint"),
        asyncpg.exceptions.NotNullViolationError("null value"),
    ],
)
async def test_values_the_database_refuses_are_422_not_500(exc: Exception) -> None:
    """Class 22 (data exception) and CHECK/NOT NULL violations: whatever boundary type
    missed a value, the client gets the 422 problem, never a 500."""

    @get("/boom", sync_to_thread=False)
    def boom() -> None:
        raise exc

    app = Litestar([boom], exception_handlers=EXCEPTION_HANDLERS)
    async with AsyncTestClient(app=app) as c:
        r = await c.get("/boom")
    _is_problem(r, 422, "validation_failed")
    assert str(exc) not in r.text  # the database's words stay in our log


async def test_other_recursion_errors_stay_500() -> None:
    @get("/deep", sync_to_thread=False)
    def deep() -> None:
        raise RecursionError("maximum recursion depth exceeded")

    app = Litestar([deep], exception_handlers=EXCEPTION_HANDLERS)
    async with AsyncTestClient(app=app) as c:
        r = await c.get("/deep")
    _is_problem(r, 500, "internal_error")
