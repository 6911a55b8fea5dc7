"""`GET /admin/v1/analytics/usage` (JSON, or CSV with `Accept: text/csv` / `?format=csv`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import FromQuery, QueryParameter

from app.analytics import service
from app.analytics.schemas import GroupBy, Usage
from app.core.auth import Permission, requires
from app.core.deps import ClockDep, Db

CSV = "text/csv"


@dataclass
class UsageOperation(Operation):
    """The same answer is also offered as CSV: describe both media types."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse) and ok.content is not None:
            ok.content[CSV] = OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.STRING,
                    description="One line per group and a `total` line: key,label,site_id,"
                    "sessions,energy_kwh,occupied_h,available_h,utilisation, then one "
                    "revenue_<currency>_minor column per currency.",
                )
            )


class AnalyticsController(Controller):
    path = "/admin/v1/analytics"
    tags = ["analytics"]

    @get(
        "/usage",
        summary="Sessions, kWh, revenue and utilisation per site, hour of day or day",
        guards=[requires(Permission.READ)],
        operation_class=UsageOperation,
    )
    async def usage(
        self,
        request: Request[Any, Any, State],
        db: Db,
        clock: ClockDep,
        from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
        to: FromQuery[datetime | None] = None,
        group_by: FromQuery[GroupBy] = "day",
        format: Annotated[
            Literal["json", "csv"] | None,
            QueryParameter(description="`csv` = the same as `Accept: text/csv`"),
        ] = None,
        limit: Annotated[
            int, QueryParameter(ge=1, le=10_000, description="at most this many sites")
        ] = 500,
    ) -> Response[Usage]:
        """Over `[from, to)` (default: the last 7 days; at most 366). A session counts in
        `sessions`, `energy_kwh` and `revenue` where it started and occupies its connector
        wherever it overlaps (open sessions until now). `utilisation` = occupied
        connector-hours / available connector-hours (every connector from its creation).
        Hours and days are each site's local ones (DST-exact); `group_by=site` lists the
        busiest sites first."""
        report = await service.usage(
            db, start=from_, end=to, group_by=group_by, now=clock.now(), limit=limit
        )
        wants = format or (
            "csv"
            if request.accept.best_match(["application/json", CSV], default="application/json")
            == CSV
            else "json"
        )
        if wants == "csv":
            name = f"usage-{group_by}-{report.from_:%Y%m%d}-{report.to:%Y%m%d}.csv"
            return Response(
                content=service.to_csv(report),  # type: ignore[arg-type]
                media_type=f"{CSV}; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        return Response(content=report)


ROUTES: list[Any] = [AnalyticsController]
