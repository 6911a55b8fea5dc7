"""`/v1/reservations`: hold a connector now or book a slot, list, read, cancel (API.md)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Response, delete, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from app.chargers.commands import CommandClient
from app.core.auth import DRIVER_SECURITY, requires_driver
from app.core.deps import ClockDep, Db, Driver
from app.core.errors import DRIVER_UNAUTHORIZED, problem_doc
from app.reservations import service
from app.reservations.schemas import Reservation, ReservationPage, ReservationRequest

UNAUTHORIZED = DRIVER_UNAUTHORIZED
NOT_FOUND = problem_doc("No such reservation, or another driver's (`not_found`)")


def _config(state: State) -> service.ReservationsConfig:
    config = state.get("reservations_config")
    if isinstance(config, service.ReservationsConfig):
        return config
    config = service.config_from_env()
    state.reservations_config = config
    return config


class ReservationController(Controller):
    path = "/v1/reservations"
    tags = ["reservations"]
    guards = [requires_driver]
    security = DRIVER_SECURITY

    @post(
        "/",
        summary="Hold a connector now, or book a slot later",
        status_code=201,
        responses={
            401: UNAUTHORIZED,
            404: problem_doc("No such connector (`connector_not_found`)"),
            409: problem_doc(
                "The connector is reserved for that time, its charger is offline, "
                "quarantined or occupied, or the charger refused ReserveNow "
                "(`connector_unavailable`); or the driver already holds a connector, has "
                "3 future slots or another reservation at that time (`reservation_limit`)"
            ),
        },
    )
    async def create(
        self,
        driver: Driver,
        data: JSONBody[ReservationRequest],
        state: State,
        clock: ClockDep,
    ) -> Reservation:
        """Without `start_at` the connector is held from now (default 15, at most 30
        minutes) and the charger receives ReserveNow: any answer but `Accepted`, or none,
        is 409 `connector_unavailable` and nothing is kept. With `start_at` (at most 24 h
        ahead) the slot is booked and the charger receives ReserveNow when it begins;
        `duration_min` defaults to the driver's vehicle going from 20 % to 80 % at
        min(connector, vehicle) power (60 min without a vehicle). Double booking is
        refused by the database. `Idempotency-Key` replays the first answer."""
        # On the pool, not the request's `db`: a hold must not keep a connection while the
        # charger answers (service.create).
        commands: CommandClient = state.ocpp_commands
        return await service.create(
            state.pool,
            commands,
            driver_id=driver.driver_id,
            data=data,
            now=clock.now(),
            config=_config(state),
        )

    @get("/", summary="The driver's reservations, newest first", responses={401: UNAUTHORIZED})
    async def list_reservations(
        self,
        driver: Driver,
        db: Db,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> ReservationPage:
        return await service.list_for_driver(
            db, driver_id=driver.driver_id, limit=limit, cursor=cursor
        )

    @get(
        "/{reservation_id:str}",
        summary="One of the driver's reservations",
        responses={401: UNAUTHORIZED, 404: NOT_FOUND},
    )
    async def get_reservation(
        self, driver: Driver, db: Db, reservation_id: FromPath[str]
    ) -> Reservation:
        """`moved_to` names the reservation that replaced a MOVED one (the charger went
        offline); a CANCELLED one says why in `cancel_reason`."""
        return await service.get(db, driver_id=driver.driver_id, reservation_id=reservation_id)

    @delete(
        "/{reservation_id:str}",
        summary="Cancel a reservation",
        status_code=200,
        responses={
            401: UNAUTHORIZED,
            404: NOT_FOUND,
            409: problem_doc(
                "The reservation is already over or being charged on "
                "(`reservation_not_cancellable`)"
            ),
        },
    )
    async def cancel(
        self, driver: Driver, reservation_id: FromPath[str], state: State, clock: ClockDep
    ) -> Response[Reservation]:
        """The reservation becomes CANCELLED (the connector is free in search at once) and
        the charger receives CancelReservation. Cancelling again answers the same."""
        now = clock.now()
        # one statement on the pool (service.cancel): no request transaction needed
        reservation, release = await service.cancel(
            state.pool, driver_id=driver.driver_id, reservation_id=reservation_id, now=now
        )
        background = None
        if release is not None:  # runs after the response, i.e. after the commit
            commands: CommandClient = state.ocpp_commands
            background = BackgroundTask(
                service.release_after_commit,
                state.pool,
                commands,
                release,
                now=now,
                config=_config(state),
            )
        return Response(reservation, status_code=200, background=background)


ROUTES: list[Any] = [ReservationController]
