"""`/admin/v1/fleet`: bulk onboarding and fleet listings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.openapi.spec import OpenAPIMediaType as OAMediaType
from litestar.openapi.spec import OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromQuery, QueryParameter

from app.core.auth import Permission, requires
from app.core.deps import Db, Staff
from app.core.errors import DomainError, FieldError, ValidationFailed
from app.core.openapi import inline_schema, schema_from_dict
from app.fleet import service
from app.fleet.schemas import ChargerHealthPage, Connectivity, FleetImport, ImportResult, SitePage


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "The body is too large"


class UnsupportedMediaType(DomainError):
    status, code, title = 415, "unsupported_media_type", "Send JSON or CSV"


@dataclass
class ImportOperation(Operation):
    """The import reads its own body (JSON or CSV); describe both in OpenAPI."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="JSON as below, or CSV with one row per connector (columns "
            "external_id,name,address,lat,lon,timezone,charge_point_id,ocpp_password,"
            "iccid,connector_no,type,power_kw).",
            content={
                "application/json": OAMediaType(
                    schema=schema_from_dict(inline_schema(FleetImport))
                ),
                "text/csv": OAMediaType(schema=Schema(type=OpenAPIType.STRING)),
            },
        )


class FleetController(Controller):
    path = "/admin/v1/fleet"
    tags = ["fleet"]

    @post(
        "/import",
        summary="Bulk onboarding of sites, chargers and connectors",
        status_code=200,
        guards=[requires(Permission.FLEET_WRITE)],
        operation_class=ImportOperation,
        opt={"max_body_bytes": "fleet_import_max_bytes"},  # app/core/limits.py
    )
    async def import_fleet(
        self,
        request: Request[Any, Any, State],
        db: Db,
        staff: Staff,
        state: State,
    ) -> ImportResult:
        """Idempotent by `external_id` / `charge_point_id`: re-importing the same data
        creates and updates nothing. Sites with errors are listed in `failed` (by index
        into `sites`) and skipped; the good ones are applied. Nothing is ever deleted."""
        limit = state.settings.fleet_import_max_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"at most {limit} bytes per import")
        body = await request.body()
        if len(body) > limit:
            raise PayloadTooLarge(f"at most {limit} bytes per import")
        content_type = request.headers.get("content-type", "application/json").split(";")[0]
        content_type = content_type.strip().lower()
        if content_type in ("text/csv", "application/csv"):
            try:
                text = body.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ValidationFailed(
                    "the CSV is not UTF-8", errors=[FieldError("body", "not UTF-8")]
                ) from None
            raw_sites: list[Any] = service.parse_csv(text)
        elif content_type in ("application/json", "") or content_type.endswith("+json"):
            raw_sites = service.decode_json_sites(body)
        else:
            raise UnsupportedMediaType(f"content type {content_type!r} is not accepted")
        return await service.import_fleet(
            db, raw_sites, actor=staff, request_id=request.scope.get("state", {}).get("request_id")
        )

    @get(
        "/sites",
        summary="Onboarded sites with their chargers and connectors",
        guards=[requires(Permission.READ)],
    )
    async def list_sites(
        self,
        db: Db,
        external_id: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> SitePage:
        return await service.list_sites(db, external_id=external_id, limit=limit, cursor=cursor)

    @get("/chargers", summary="Charger connectivity health", guards=[requires(Permission.READ)])
    async def list_chargers(
        self,
        db: Db,
        connectivity: FromQuery[Connectivity | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> ChargerHealthPage:
        return await service.list_charger_health(
            db,
            connectivity=connectivity.value if connectivity else None,
            limit=limit,
            cursor=cursor,
        )


ROUTES: list[Any] = [FleetController]
