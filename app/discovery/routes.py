"""`GET /v1/chargers/nearby` and `GET /v1/sites/{site_id}` — public, rate-limited per client."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast

from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, QueryParameter

from app.core.errors import RateLimited
from app.core.ratelimit import TokenBuckets
from app.core.settings import Settings
from app.discovery import service
from app.discovery.live import LiveIndex
from app.discovery.schemas import ConnectorType, NearbyPage, SiteDetail

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
    try:
        yield
    finally:
        await live.stop()
        if app.state.geocoder is not None:
            await app.state.geocoder.close()


def _throttle(request: Request[Any, Any, State], state: State) -> None:
    client = request.client.host if request.client else "unknown"
    wait = state.discovery_limits.take(client)
    if wait:
        raise RateLimited(
            "too many discovery requests from this client", retry_after_s=int(wait) + 1
        )


@get(
    "/v1/chargers/nearby",
    summary="Nearby sites with live chargers, nearest first",
    tags=["discovery"],
    media_type=JSON,
)
async def nearby(
    request: Request[Any, Any, State],
    state: State,
    lat: Annotated[float | None, QueryParameter(ge=-90, le=90)] = None,
    lon: Annotated[float | None, QueryParameter(ge=-180, le=180)] = None,
    q: Annotated[str | None, QueryParameter(min_length=2, max_length=200)] = None,
    radius_m: Annotated[int, QueryParameter(ge=1, le=50_000)] = 5000,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    connector_type: FromQuery[ConnectorType | None] = None,
    min_power_kw: Annotated[float | None, QueryParameter(ge=0, le=2000)] = None,
    available_only: FromQuery[bool] = False,
) -> Response[NearbyPage]:
    """Only connectors of chargers that are online appear; a site with none left is
    absent. `distance_m` is the WGS-84 ellipsoidal distance. With `q` (address or place)
    instead of `lat`/`lon`, the position is geocoded (503 `geocoder_unavailable` when no
    geocoder is configured or it fails)."""
    _throttle(request, state)
    if q is not None and (lat is None or lon is None):
        if state.geocoder is None:
            raise service.GeocoderUnavailable("no geocoder is configured (GEOCODER_URL)")
        lat, lon = await state.geocoder.resolve(q)
    lat, lon = service.require_position(lat, lon)
    body = service.nearby(
        state.discovery.index,
        lat=lat,
        lon=lon,
        radius_m=radius_m,
        limit=limit,
        connector_type=connector_type.value if connector_type else None,
        min_power_kw=min_power_kw,
        available_only=available_only,
    )
    return Response(cast(NearbyPage, body), media_type=JSON)


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
    body = service.site_detail(state.discovery.index, site_id)
    return Response(cast(SiteDetail, body), media_type=JSON)


ROUTES: list[Any] = [nearby, site_detail]
