"""Idempotency-Key: one effect, identical replays, a different body with the same key → 422."""

from __future__ import annotations

import asyncio

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.auth import Role
from app.core.settings import Settings
from tests.factories import auth, site, staff_token


async def test_same_key_fifty_times_one_effect(
    client: AsyncTestClient[Litestar], settings: Settings, db: asyncpg.Connection
) -> None:
    headers = {**auth(staff_token(settings, roles=(Role.ADMIN,))), "Idempotency-Key": "k-1"}
    body = {"sites": [site("s1"), site("s2")]}
    responses = await asyncio.gather(
        *(client.post("/admin/v1/fleet/import", json=body, headers=headers) for _ in range(50))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert responses[0].json()["created"]["sites"] == 2
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'fleet.import'") == 1


async def test_same_key_different_body_is_422(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    headers = {**auth(staff_token(settings, roles=(Role.ADMIN,))), "Idempotency-Key": "k-2"}
    first = await client.post(
        "/admin/v1/fleet/import", json={"sites": [site("a")]}, headers=headers
    )
    assert first.status_code == 200
    r = await client.post("/admin/v1/fleet/import", json={"sites": [site("b")]}, headers=headers)
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_to_the_caller(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    a = {**auth(staff_token(settings, roles=(Role.ADMIN,), staff_id="a")), "Idempotency-Key": "k"}
    b = {**auth(staff_token(settings, roles=(Role.ADMIN,), staff_id="b")), "Idempotency-Key": "k"}
    r1 = await client.post("/admin/v1/fleet/import", json={"sites": [site("a")]}, headers=a)
    r2 = await client.post("/admin/v1/fleet/import", json={"sites": [site("b")]}, headers=b)
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert r2.json()["created"]["sites"] == 1


async def test_errors_are_replayed_too_but_not_5xx(
    client: AsyncTestClient[Litestar], settings: Settings
) -> None:
    viewer = {**auth(staff_token(settings, roles=(Role.VIEWER,))), "Idempotency-Key": "k-3"}
    r1 = await client.post("/admin/v1/fleet/import", json={"sites": []}, headers=viewer)
    r2 = await client.post("/admin/v1/fleet/import", json={"sites": []}, headers=viewer)
    assert r1.status_code == r2.status_code == 403
    assert r2.headers.get("idempotent-replayed") == "true"
