"""`GET /v1/chargers/nearby` and `GET /v1/sites/{site_id}` — public, rate-limited per client."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any, cast

from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec
from litestar.params import FromPath

from app.core.clientaddr import client_address
from app.core.errors import RateLimited
from app.core.openapi import query_operation
from app.core.query import JSONBody, parse_query
from app.core.ratelimit import TokenBuckets
from app.core.settings import Settings
from app.discovery import service
from app.discovery.live import LiveIndex, release_memory
from app.discovery.schemas import NearbyPage, NearbyParams, SiteDetail

JSON = "application/json"


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    """Load the fleet index and keep it fresh for as long as the worker runs."""
    settings: Settings = app.state.settings
    live = LiveIndex(settings.database_url, resync_s=settings.discovery_resync_s)
    await live.start(app.state.pool)
    app.state.discovery = live
    app.state.discovery_limits = TokenBuckets(
        settings.discovery_rate_per_s, settings.discovery_burst
    )
    app.state.geocoder = service.Geocoder(settings.geocoder_url) if settings.geocoder_url else None
    release_memory()  # the load's temporaries back to the OS; app/core/gcpolicy.py freezes the rest
    try:
        yield
    finally:
        await live.stop()
        if app.state.geocoder is not None:
            await app.state.geocoder.close()


def _throttle(request: Request[Any, Any, State], state: State) -> None:
    wait = state.discovery_limits.take(client_address(request))
    if wait:
        raise RateLimited(
            "too many discovery requests from this client", retry_after_s=int(wait) + 1
        )


@get(
    "/v1/chargers/nearby",
    summary="Nearby sites with live chargers, nearest first",
    tags=["discovery"],
    media_type=JSON,
    operation_class=query_operation(NearbyParams),
    responses={
        200: ResponseSpec(NearbyPage, description="Sites, nearest first", generate_examples=False)
    },
)
async def nearby(request: Request[Any, Any, State]) -> JSONBody:
    """Only connectors of chargers that are online appear; a site with none left is
    absent. `distance_m` is the WGS-84 ellipsoidal distance. With `q` (address or place)
    instead of `lat`/`lon`, the position is geocoded (503 `geocoder_unavailable` when no
    geocoder is configured or it fails).

    The hottest route: it parses its own query string (app/core/query.py) and answers
    pre-rendered JSON from the in-memory index, bypassing Litestar's per-parameter
    extraction and response encoding (`JSONBody`; measured in bench/README.md)."""
    state = request.app.state
    _throttle(request, state)
    p = parse_query(request, NearbyParams)
    lat, lon = p.lat, p.lon
    if p.q is not None and (lat is None or lon is None):
        if state.geocoder is None:
            raise service.GeocoderUnavailable("no geocoder is configured (GEOCODER_URL)")
        lat, lon = await state.geocoder.resolve(p.q)
    lat, lon = service.require_position(lat, lon)
    body = service.nearby(
        state.discovery.index,
        lat=lat,
        lon=lon,
        radius_m=p.radius_m,
        limit=p.limit,
        connector_type=p.connector_type.value if p.connector_type else None,
        min_power_kw=p.min_power_kw,
        available_only=p.available_only,
        prices=state.prices,
    )
    return JSONBody(body)


@get(
    "/v1/sites/{site_id:str}",
    summary="One site with its live connectors and the price timeline",
    tags=["discovery"],
    media_type=JSON,
)
async def site_detail(
    request: Request[Any, Any, State], state: State, site_id: FromPath[str]
) -> Response[SiteDetail]:
    """404 `site_not_found` for an unknown site and for a site none of whose chargers is
    online (the same sites nearby search hides)."""
    _throttle(request, state)
    body = service.site_detail(state.discovery.index, site_id, state.prices)
    return Response(cast(SiteDetail, body), media_type=JSON)


ROUTES: list[Any] = [nearby, site_detail]
