"""`/admin/v1/auth/login` and `/admin/v1/audit-log`."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.params import FromQuery, JSONBody, QueryParameter

from app.admin import service
from app.admin.schemas import AuditPage, LoginRequest, LoginResponse
from app.core.auth import Permission, requires
from app.core.clientaddr import client_address
from app.core.deps import ClockDep, Db


def client_ip(request: Request[Any, Any, Any]) -> str:
    return client_address(request)


class StaffAuthController(Controller):
    path = "/admin/v1/auth"
    tags = ["admin"]

    @post("/login", summary="Staff login with password and TOTP code", status_code=200)
    async def login(
        self,
        request: Request[Any, Any, State],
        data: JSONBody[LoginRequest],
        db: Db,
        state: State,
        clock: ClockDep,
    ) -> LoginResponse:
        """Returns a bearer token for `/admin/v1`. Wrong credentials → 401
        `invalid_credentials`; repeated failures → 429 with `Retry-After`."""
        return await service.login(
            db, state.redis, state.settings, data, client_ip(request), clock.now()
        )


class AuditLogController(Controller):
    path = "/admin/v1/audit-log"
    tags = ["admin"]
    guards = [requires(Permission.READ)]

    @get("/", summary="Who changed what, when, from what to what")
    async def list_audit(
        self,
        db: Db,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: FromQuery[str | None] = None,
        entity_type: FromQuery[str | None] = None,
        entity_id: FromQuery[str | None] = None,
    ) -> AuditPage:
        return await service.list_audit(
            db, limit=limit, cursor=cursor, entity_type=entity_type, entity_id=entity_id
        )


ROUTES: list[Any] = [StaffAuthController, AuditLogController]
