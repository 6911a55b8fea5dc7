"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import MediaType, Response, get
from litestar.datastructures import State

from app.core.observability import metrics_payload
from app.health import queries


class Live(msgspec.Struct):
    status: str


class Ready(msgspec.Struct):
    status: str
    checks: dict[str, str]


@get("/health/live", summary="The process is running", tags=["health"], include_in_schema=True)
async def live() -> Live:
    return Live(status="ok")


async def _check_postgres(state: State) -> str:
    try:
        async with asyncio.timeout(1.5):
            await queries.ping(state.pool)
        return "ok"
    except Exception as exc:  # any failure means "not ready"; say which
        return f"down: {type(exc).__name__}"


async def _check_redis(state: State) -> str:
    try:
        async with asyncio.timeout(1.5):
            await state.redis.ping()
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


@get(
    "/health/ready",
    summary="PostgreSQL and Redis answer",
    description="200 when both answer; 503 naming what is down.",
    tags=["health"],
    responses={},
)
async def ready(state: State) -> Response[Ready]:
    pg, rd = await asyncio.gather(_check_postgres(state), _check_redis(state))
    checks = {"postgres": pg, "redis": rd}
    ok = all(v == "ok" for v in checks.values())
    return Response(
        Ready(status="ok" if ok else "unavailable", checks=checks), status_code=200 if ok else 503
    )


@get("/metrics", summary="Prometheus metrics", tags=["health"], media_type=MediaType.TEXT)
async def metrics() -> Response[bytes]:
    payload, content_type = metrics_payload()
    return Response(payload, media_type=content_type)


ROUTES: list[Any] = [live, ready, metrics]
