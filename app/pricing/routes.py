"""Admin tariff API (`/admin/v1/tariffs`, `/admin/v1/tariff-assignments`), the public quote
and cheapest-start endpoints, and the lifespan that keeps each worker's PriceBook fresh."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Litestar, Request, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from app.core.auth import Permission, requires, verified_driver
from app.core.clientaddr import client_address
from app.core.deps import ClockDep, Db, PublicLimits, Staff
from app.core.errors import RateLimited, problem_doc
from app.core.ratelimit import TokenBuckets
from app.core.settings import Settings
from app.pricing import service
from app.pricing.book import PriceBook
from app.pricing.schemas import (
    AssignmentIn,
    AssignmentOut,
    AssignmentPage,
    CheapestStartOut,
    Quote,
    TariffIn,
    TariffOut,
    TariffPage,
    TariffRef,
    Timeline,
)


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    """Load the PriceBook (`app.state.prices`) and keep it fresh while the worker runs."""
    settings: Settings = app.state.settings
    book = PriceBook(settings.database_url, resync_s=settings.discovery_resync_s)
    await book.start(app.state.pool)
    app.state.prices = book
    try:
        yield
    finally:
        await book.stop()


TARIFF_404 = {404: problem_doc("No such tariff or version (`tariff_not_found`)")}
ASSIGN_404 = {
    404: problem_doc("The tariff, site or charger does not exist (`tariff_not_found`, …)")
}
PUBLIC_RESPONSES = {
    401: problem_doc("A bearer token was sent but is not a live driver token (`unauthorized`)"),
    404: problem_doc("Unknown site or connector, or no tariff applies then (`no_tariff`)"),
    429: problem_doc("Too many requests from this client (`rate_limited`); see `Retry-After`"),
}
# Public, but a driver token (optional) lets the driver's vehicle shape the answer.
OPTIONAL_DRIVER: list[dict[str, list[str]]] = [{}, {"driverBearer": []}]


def _request_id(request: Request[Any, Any, State]) -> str | None:
    rid = request.scope.get("state", {}).get("request_id")
    return str(rid) if rid is not None else None


class TariffController(Controller):
    path = "/admin/v1/tariffs"
    tags = ["pricing"]

    @post(
        "/",
        summary="Publish a tariff (version 1)",
        status_code=201,
        guards=[requires(Permission.PRICING_WRITE)],
    )
    async def create(
        self,
        request: Request[Any, Any, State],
        db: Db,
        staff: Staff,
        clock: ClockDep,
        data: JSONBody[TariffIn],
    ) -> TariffRef:
        """OCPI 2.2.1 elements: per component type, the first element whose restrictions
        all hold supplies the price. Every problem is listed in a 422 `errors`. Audited."""
        return await service.create_tariff(
            db, data, actor=staff, now=clock.now(), request_id=_request_id(request)
        )

    @put(
        "/{tariff_id:str}",
        summary="Publish a new version of a tariff",
        status_code=200,
        guards=[requires(Permission.PRICING_WRITE)],
        responses=TARIFF_404,
    )
    async def update(
        self,
        request: Request[Any, Any, State],
        db: Db,
        staff: Staff,
        clock: ClockDep,
        tariff_id: FromPath[str],
        data: JSONBody[TariffIn],
    ) -> TariffRef:
        """Versions are immutable: earlier ones stay readable with `?version=`, and a
        session keeps the version it started with. Audited with before and after."""
        return await service.update_tariff(
            db, tariff_id, data, actor=staff, now=clock.now(), request_id=_request_id(request)
        )

    @get(
        "/", summary="Tariffs (current versions), newest first", guards=[requires(Permission.READ)]
    )
    async def list_tariffs(
        self,
        db: Db,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> TariffPage:
        return await service.list_tariffs(db, limit=limit, cursor=cursor)

    @get(
        "/{tariff_id:str}",
        summary="One tariff",
        guards=[requires(Permission.READ)],
        responses=TARIFF_404,
    )
    async def get_tariff(
        self,
        db: Db,
        tariff_id: FromPath[str],
        version: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> TariffOut:
        """The current version, or `?version=` for an earlier one."""
        return await service.get_tariff(db, tariff_id, version)

    @get(
        "/{tariff_id:str}/timeline",
        summary="A tariff's price bands over a period, in a time zone",
        guards=[requires(Permission.READ)],
        responses=TARIFF_404,
    )
    async def timeline(
        self,
        db: Db,
        clock: ClockDep,
        tariff_id: FromPath[str],
        from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
        to: FromQuery[datetime | None] = None,
        timezone: Annotated[str, QueryParameter(min_length=1, max_length=64)] = "UTC",
        version: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> Timeline:
        """Bands `[from, to)` over which the displayed prices (a session starting then)
        stay constant, evaluated in `timezone` (DST-exact). Defaults: the next 24 h; at
        most 31 days."""
        start = from_ or clock.now()
        end = to or start
        if to is None:
            with contextlib.suppress(OverflowError):  # far-future `from`: 422 in the service
                end = start + timedelta(hours=24)
        return await service.timeline(
            db, tariff_id, version=version, start=start, end=end, timezone=timezone
        )


class AssignmentController(Controller):
    path = "/admin/v1/tariff-assignments"
    tags = ["pricing"]

    @post(
        "/",
        summary="Assign a tariff to a site or a charger from a moment on",
        status_code=201,
        guards=[requires(Permission.PRICING_WRITE)],
        responses=ASSIGN_404,
    )
    async def assign(
        self,
        request: Request[Any, Any, State],
        db: Db,
        staff: Staff,
        clock: ClockDep,
        data: JSONBody[AssignmentIn],
    ) -> AssignmentOut:
        """Exactly one of `site_id`, `charger_id`. Charger-level beats site-level; per
        level the assignment with the latest `effective_from` <= t applies. Audited."""
        return await service.assign(
            db, data, actor=staff, now=clock.now(), request_id=_request_id(request)
        )

    @get(
        "/",
        summary="Where tariffs are assigned (sites and chargers), latest first",
        guards=[requires(Permission.READ)],
    )
    async def list_assignments(
        self,
        db: Db,
        clock: ClockDep,
        tariff_id: FromQuery[str | None] = None,
        site_id: FromQuery[str | None] = None,
        charger_id: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
        cursor: FromQuery[str | None] = None,
    ) -> AssignmentPage:
        """Filter by `tariff_id`, `site_id` (site-level) or `charger_id`; `state` says
        whether an assignment is `scheduled`, `in_force` or `superseded` now."""
        return await service.list_assignments(
            db,
            tariff_id=tariff_id,
            site_id=site_id,
            charger_id=charger_id,
            limit=limit,
            cursor=cursor,
            now=clock.now(),
        )


# ---- public, driver-facing --------------------------------------------------------------


def _throttle(request: Request[Any, Any, State], limits: TokenBuckets) -> None:
    """The public routes' per-client token buckets (shared with nearby search)."""
    wait = limits.take(client_address(request))
    if wait:
        raise RateLimited(
            "too many discovery requests from this client", retry_after_s=int(wait) + 1
        )


async def _vehicle(request: Request[Any, Any, State], state: State) -> service.Vehicle | None:
    """The signed-in driver's vehicle; no token = anonymous (a bad token is 401)."""
    if not request.headers.get("authorization"):
        return None
    principal = await verified_driver(request)
    return await service.driver_vehicle(state.pool, principal.driver_id)


@get(
    "/v1/sites/{site_id:str}/quote",
    summary="What a charge would cost, line by line",
    tags=["discovery"],
    responses=PUBLIC_RESPONSES,
    security=OPTIONAL_DRIVER,
)
async def quote(
    request: Request[Any, Any, State],
    state: State,
    public_limits: PublicLimits,
    site_id: FromPath[str],
    connector_id: Annotated[str, QueryParameter(min_length=1, max_length=64)],
    start_at: FromQuery[datetime | None] = None,
    energy_kwh: Annotated[float | None, QueryParameter(gt=0, le=1000)] = None,
    duration_min: Annotated[float | None, QueryParameter(gt=0, le=1440)] = None,
) -> Quote:
    """By `energy_kwh` (at the connector's rated power, capped by the signed-in driver's
    vehicle) or by `duration_min`. Without either, a signed-in driver with a vehicle gets
    20 → 80 % of the battery. Line amounts exclude VAT and are rounded half-up each;
    `vat_minor` = half-up(sum of lines × vat_percent / 100). 404 `no_tariff` when no
    tariff applies at `start_at` (default: now)."""
    _throttle(request, public_limits)
    book: PriceBook = state.prices
    return await service.quote(
        state.pool,
        book,
        site_id=site_id,
        connector_id=connector_id,
        start_at=start_at,
        energy_kwh=energy_kwh,
        duration_min=duration_min,
        vehicle=await _vehicle(request, state),
        now=book.clock.now(),
    )


@get(
    "/v1/sites/{site_id:str}/cheapest-start",
    summary="When to start charging to pay least",
    tags=["discovery"],
    responses=PUBLIC_RESPONSES,
    security=OPTIONAL_DRIVER,
)
async def cheapest_start(
    request: Request[Any, Any, State],
    state: State,
    public_limits: PublicLimits,
    site_id: FromPath[str],
    connector_id: Annotated[str, QueryParameter(min_length=1, max_length=64)],
    energy_kwh: Annotated[float | None, QueryParameter(gt=0, le=1000)] = None,
    within_h: Annotated[float, QueryParameter(gt=0, le=168)] = 24,
) -> CheapestStartOut:
    """The start within `within_h` hours with the lowest total (earliest on ties), each
    start priced with the tariff in force then; `saving_minor_vs_now` against starting
    now. A signed-in driver's vehicle caps the power and, without `energy_kwh`, sets the
    energy to 20 → 80 % of its battery."""
    _throttle(request, public_limits)
    book: PriceBook = state.prices
    return await service.cheapest_start(
        state.pool,
        book,
        site_id=site_id,
        connector_id=connector_id,
        energy_kwh=energy_kwh,
        within_h=within_h,
        vehicle=await _vehicle(request, state),
        now=book.clock.now(),
    )


ROUTES: list[Any] = [TariffController, AssignmentController, quote, cheapest_start]
