"""Liveness, readiness (naming what is down) and Prometheus metrics."""

from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.embedded import free_port
from app.core.settings import Settings
from app.main import create_app


async def test_live_and_ready(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    r = await client.get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_ready_is_503_naming_redis_when_it_is_down(settings: Settings) -> None:
    dead = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with AsyncTestClient(app=create_app(dead, run_migrations=False)) as c:
        r = await c.get("/health/ready")
        assert (await c.get("/health/live")).status_code == 200
    assert r.status_code == 503
    body = r.json()
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"].startswith("down")


async def test_ready_is_503_naming_postgres_when_it_is_down(settings: Settings) -> None:
    dead = msgspec.structs.replace(
        settings, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    )
    async with AsyncTestClient(app=create_app(dead, run_migrations=False)) as c:
        r = await c.get("/health/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["postgres"].startswith("down")
    assert r.json()["checks"]["redis"] == "ok"


async def test_metrics_are_prometheus_text(client: AsyncTestClient[Litestar]) -> None:
    await client.get("/health/live")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert 'http_requests_total{method="GET",route="/health/live",status="200"}' in r.text
