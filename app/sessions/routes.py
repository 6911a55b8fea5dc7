"""`/v1/sessions` (the driver's charging sessions) and `GET /admin/v1/sessions`, and the
lifespan that gives this process its session runtime (Stripe client, charger commands,
background tasks: `app.sessions.service.Runtime`)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Litestar, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from app.core.auth import DRIVER_SECURITY, Role, requires_driver, staff_principal
from app.core.clock import Clock
from app.core.deps import ClockDep, Db, Driver
from app.core.errors import DRIVER_UNAUTHORIZED, Forbidden, ServiceUnavailable, problem_doc
from app.sessions import service
from app.sessions.schemas import (
    AdminSessionPage,
    SessionPage,
    SessionStart,
    SessionStarted,
    SessionStatus,
    SessionView,
)

# API.md "Admin: sessions and refunds": operators, admins and viewers read sessions.
ADMIN_READERS = frozenset({Role.ADMIN, Role.OPERATOR, Role.VIEWER})


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    """Register this process's session runtime (after the payments and chargers
    lifespans, whose Stripe client and command router it uses)."""
    runtime = service.Runtime(
        settings=app.state.settings,
        gateway=getattr(app.state, "stripe", None),
        commands=app.state.ocpp_commands,
        clock=Clock(),
    )
    app.state.sessions = runtime
    service.register(app.state.pool, runtime)
    try:
        yield
    finally:
        service.unregister(app.state.pool)
        await runtime.drain()


UNAUTHORIZED = {401: DRIVER_UNAUTHORIZED}
NOT_FOUND = {404: problem_doc("No such session of yours (`session_not_found`)")}


def requires_session_runtime(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    if getattr(connection.app.state, "sessions", None) is None:
        raise ServiceUnavailable("sessions are not available in this process")


def requires_session_reader(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: operators, admins and viewers (401 without a staff token, else 403)."""
    if not ADMIN_READERS.intersection(staff_principal(connection).roles):
        raise Forbidden("your role does not allow reading sessions")


class SessionController(Controller):
    path = "/v1/sessions"
    tags = ["charging sessions"]
    guards = [requires_driver]
    security = DRIVER_SECURITY

    @post(
        "/",
        summary="Start charging: hold on the card, then RemoteStart to the charger",
        status_code=201,
        guards=[requires_session_runtime],
        responses={
            **UNAUTHORIZED,
            402: problem_doc(
                "The hold was declined (`card_declined`) or there is no card on file "
                "(`payment_method_required`); nothing was sent to the charger"
            ),
            404: problem_doc(
                "No such connector (`connector_not_found`) or reservation (`reservation_not_found`)"
            ),
            409: problem_doc(
                "The connector is reserved by someone else, offline or occupied "
                "(`connector_unavailable`), or you have an active session (`session_active`)"
            ),
            503: problem_doc("Payments cannot be reached (`payments_unavailable`)"),
        },
    )
    async def start(
        self, data: JSONBody[SessionStart], driver: Driver, state: State, clock: ClockDep
    ) -> Response[SessionStarted]:
        """A PaymentIntent (`capture_method=manual`) is confirmed off-session on the
        default card first, for the hold amount; then RemoteStartTransaction goes to the
        charger. The session is `STARTING` until the charger starts the transaction;
        `Rejected` or no answer makes it `FAILED` and releases the hold (watch
        `GET /v1/sessions/{id}`). The tariff version in force now is the one billed.
        `Server-Timing` gives the time of our checks (`reserve`), of the hold (`hold`,
        mostly Stripe's) and of the whole start (`start`)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        started = await service.start(
            state.pool,
            state.sessions,
            driver_id=driver.driver_id,
            body=data,
            now=clock.now(),
            timings=timings,
        )
        timings["start"] = time.perf_counter() - t0
        timing = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in timings.items())
        return Response(started, status_code=201, headers={"Server-Timing": timing})

    @get("/", summary="The driver's sessions, newest first", responses=UNAUTHORIZED)
    async def list_sessions(
        self,
        driver: Driver,
        db: Db,
        clock: ClockDep,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> SessionPage:
        return await service.list_for_driver(
            db, driver_id=driver.driver_id, limit=limit, cursor=cursor, now=clock.now()
        )

    @get(
        "/{session_id:str}",
        summary="One session: live energy, power, SoC, cost so far, payment, receipt",
        responses={**UNAUTHORIZED, **NOT_FOUND},
    )
    async def get_session(
        self, driver: Driver, db: Db, clock: ClockDep, session_id: FromPath[str]
    ) -> SessionView:
        """`cost_so_far_minor` is priced with the tariff version locked at start;
        `estimated_minutes_remaining` (to full) and `estimated_minutes_to_80` come from the
        power curve and are estimates. `receipt` is null until the session is billed."""
        return await service.get(
            db, driver_id=driver.driver_id, session_id=session_id, now=clock.now()
        )

    @post(
        "/{session_id:str}/stop",
        summary="Stop charging (RemoteStopTransaction)",
        status_code=202,
        guards=[requires_session_runtime],
        responses={
            **UNAUTHORIZED,
            **NOT_FOUND,
            409: problem_doc("The session is not running any more (`session_not_active`)"),
        },
    )
    async def stop(
        self, driver: Driver, state: State, clock: ClockDep, session_id: FromPath[str]
    ) -> SessionView:
        """The charger receives RemoteStopTransaction; the session completes (and is
        billed) when it reports StopTransaction. A start the charger has not begun yet is
        called off instead (`FAILED`, hold released)."""
        return await service.stop(
            state.pool,
            state.sessions,
            driver_id=driver.driver_id,
            session_id=session_id,
            now=clock.now(),
        )


class AdminSessionController(Controller):
    path = "/admin/v1/sessions"
    tags = ["admin sessions"]

    @get(
        "/",
        summary="Sessions across the fleet with their payment state",
        guards=[requires_session_reader],
    )
    async def list_sessions(
        self,
        db: Db,
        status: FromQuery[SessionStatus | None] = None,
        site_id: Annotated[str | None, QueryParameter(max_length=64)] = None,
        from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
        to: FromQuery[datetime | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> AdminSessionPage:
        """Newest first; `from`/`to` bound the start time (`[from, to)`)."""
        return await service.list_for_admin(
            db,
            status=status,
            site_id=site_id,
            start_from=from_,
            start_to=to,
            limit=limit,
            cursor=cursor,
        )


ROUTES: list[Any] = [SessionController, AdminSessionController]
