"""`/v1/auth/*` (SMS-code login, refresh, logout) and `/v1/me` (profile and vehicle)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.params import JSONBody

from app.core.auth import DRIVER_SECURITY, requires_driver
from app.core.clientaddr import client_address
from app.core.deps import ClockDep, Db, Driver
from app.core.errors import DRIVER_UNAUTHORIZED, problem_doc
from app.identity import service
from app.identity.schemas import (
    DriverProfile,
    OtpChallenge,
    OtpRequest,
    ProfilePatch,
    RefreshRequest,
    TokenRequest,
    TokenResponse,
)
from app.notifications.service import enqueue_now

UNAUTHORIZED = {401: DRIVER_UNAUTHORIZED}


def client_ip(request: Request[Any, Any, Any]) -> str:
    return client_address(request)


class DriverAuthController(Controller):
    path = "/v1/auth"
    tags = ["driver auth"]

    @post(
        "/otp",
        summary="Send a login code by SMS",
        status_code=202,
        responses={
            429: problem_doc("A send limit was hit (`rate_limited`); see `Retry-After`"),
            503: problem_doc("Limits cannot be checked right now; nothing was sent"),
        },
    )
    async def request_otp(
        self,
        request: Request[Any, Any, State],
        data: JSONBody[OtpRequest],
        db: Db,
        state: State,
        clock: ClockDep,
    ) -> Response[OtpChallenge]:
        """Sends a 6-digit code, valid 5 minutes, to a mobile number in E.164. The answer
        is the same whether or not the number belongs to a driver. Malformed number →
        422 `validation_failed`; a country or line type we do not text → 422
        `phone_not_supported`; per-number, per-address, per-country and global limits →
        429 `rate_limited` with `Retry-After`."""
        challenge, queued = await service.request_otp(
            db, state.redis, state.settings, data, client_ip(request), clock.now()
        )
        # Runs after the response, i.e. after the request's transaction has committed.
        task = BackgroundTask(enqueue_now, state.redis, state.pool, state.settings, [queued])
        return Response(challenge, status_code=202, background=task)

    @post(
        "/token",
        summary="Exchange the SMS code for tokens",
        status_code=200,
        responses={
            401: problem_doc(
                "Wrong code (`invalid_code`), too many wrong codes (`challenge_locked`), "
                "expired (`challenge_expired`) or already used (`challenge_used`)"
            )
        },
    )
    async def exchange_code(
        self, data: JSONBody[TokenRequest], db: Db, state: State, clock: ClockDep
    ) -> TokenResponse:
        """A 15-minute access token (JWT, `sub` = driver id) and a 30-day refresh token
        that works once. The driver is created on first login."""
        return await service.exchange_code(db, state.settings, data, clock.now())

    @post(
        "/refresh",
        summary="Rotate the refresh token",
        status_code=200,
        responses={
            401: problem_doc(
                "Unknown, expired or revoked refresh token; a used one (`refresh_token_reused`)"
                " also ends the whole login"
            )
        },
    )
    async def refresh(
        self, data: JSONBody[RefreshRequest], db: Db, state: State, clock: ClockDep
    ) -> TokenResponse:
        """A new access token and a new refresh token; the presented one is spent.
        Presenting a spent one again revokes every token of that login."""
        return await service.refresh(db, state.settings, data, clock.now())

    @post(
        "/logout",
        summary="End this login",
        status_code=204,
        guards=[requires_driver],
        security=DRIVER_SECURITY,
        responses=UNAUTHORIZED,
    )
    async def logout(self, driver: Driver, db: Db, clock: ClockDep) -> None:
        """Revokes the refresh tokens and access tokens of the login this token is from."""
        await service.logout(db, driver, clock.now())


class MeController(Controller):
    path = "/v1/me"
    tags = ["driver profile"]
    guards = [requires_driver]
    security = DRIVER_SECURITY

    @get("/", summary="The driver's profile and vehicle", responses=UNAUTHORIZED)
    async def get_me(self, driver: Driver, db: Db) -> DriverProfile:
        return await service.get_profile(db, driver.driver_id)

    @patch("/", summary="Update name, email, vehicle or SMS alerts", responses=UNAUTHORIZED)
    async def patch_me(
        self, driver: Driver, db: Db, data: JSONBody[ProfilePatch], clock: ClockDep
    ) -> DriverProfile:
        """Only the fields given change; `null` clears `name`, `email` or `vehicle`."""
        return await service.update_profile(db, driver.driver_id, data, clock.now())


ROUTES: list[Any] = [DriverAuthController, MeController]
