"""`POST /webhooks/control-center` (the platform's push events), the operator's
`POST /admin/v1/fleet/chargers/{charger_id}/release` and `GET /admin/v1/alerts`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl

import msgspec
from litestar import Controller, Litestar, Request, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, QueryParameter

from app.connectivity import alerts, service
from app.connectivity.push import PushError, parse_form_event, parse_json_event, verify_event
from app.connectivity.schemas import AlertKind, AlertPage, PushAck, ReleaseResult
from app.core.auth import Permission, requires
from app.core.deps import ClockDep, Db, Staff
from app.core.errors import DomainError, FieldError, ValidationFailed

MAX_PUSH_BYTES: Final = 256 * 1024


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "The body is too large"


def _form_fields(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=32, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return {}
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


class ControlCenterWebhook(Controller):
    path = "/webhooks/control-center"
    tags = ["integrations"]

    @post(
        "/",
        summary="Push events from the connectivity platform (Cisco IoT Control Center)",
        status_code=200,
    )
    async def push(
        self, request: Request[Any, Any, State], db: Db, clock: ClockDep, state: State
    ) -> PushAck:
        """Form-encoded (`data` is Jasper XML) or JSON. `signature2` =
        base64(HMAC-SHA256(secret, timestamp)) is checked before anything is parsed;
        a bad, missing or stale signature → 403 and nothing is stored. Duplicates of an
        `eventId` answer 200 without being applied again."""
        settings = state.settings
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_PUSH_BYTES:
            raise PayloadTooLarge(f"at most {MAX_PUSH_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_PUSH_BYTES:
            raise PayloadTooLarge(f"at most {MAX_PUSH_BYTES} bytes")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        is_json = content_type == "application/json" or content_type.endswith("+json")
        obj: Any = None
        if is_json:
            try:
                obj = msgspec.json.decode(body)
            except msgspec.DecodeError:
                obj = None
            fields: Any = obj if isinstance(obj, dict) else {}
        else:
            fields = _form_fields(body)
        now = clock.now()
        secret = settings.control_center_push_secret.encode("utf-8")
        if not verify_event(fields, secret, now, settings.control_center_push_max_age_s):
            raise service.InvalidSignature("signature2 is missing, wrong or too old")
        try:
            event = parse_json_event(obj) if is_json else parse_form_event(fields)
        except PushError as exc:
            raise ValidationFailed(exc.message, errors=[FieldError("body", exc.message)]) from None
        config = service.health_config(settings)
        return await service.receive_push(db, event, str(fields["signature2"]), now, config)


class ChargerReleaseController(Controller):
    path = "/admin/v1/fleet/chargers"
    tags = ["fleet"]

    @post(
        "/{charger_id:str}/release",
        summary="Lift a charger's quarantine and bind it to its SIM's current IMEI",
        status_code=200,
        guards=[requires(Permission.FLEET_WRITE)],
    )
    async def release(
        self,
        request: Request[Any, Any, State],
        db: Db,
        staff: Staff,
        clock: ClockDep,
        state: State,
        charger_id: FromPath[str],
    ) -> ReleaseResult:
        """Audited. Reasons other than quarantine (SIM not activated, link down) still
        apply afterwards; 404 for an unknown charger."""
        return await service.release(
            db,
            charger_id,
            actor=staff,
            now=clock.now(),
            config=service.health_config(state.settings),
            request_id=request.scope.get("state", {}).get("request_id"),
        )


class AlertController(Controller):
    path = "/admin/v1/alerts"
    tags = ["fleet"]

    @get(
        "/",
        summary="Operator alerts about charger connectivity, newest first",
        guards=[requires(Permission.READ)],
    )
    async def list_alerts(
        self,
        db: Db,
        kind: FromQuery[AlertKind | None] = None,
        open_only: Annotated[
            bool,
            QueryParameter(name="open", description="only alerts nobody acknowledged yet"),
        ] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: FromQuery[str | None] = None,
    ) -> AlertPage:
        """Raised on quarantine, on an outage longer than `OFFLINE_ALERT_AFTER_S` (once per
        outage), on data-usage threshold events, on flapping connections, and on payment
        problems (a capture that failed, a dispute, a stale hold, a mismatch with Stripe:
        these name a session or PaymentIntent instead of a charger)."""
        return await alerts.list_alerts(
            db, kind=kind, open_only=open_only, limit=limit, cursor=cursor
        )


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    """The OCPP handlers decide connectivity with this app's rules (they get only the
    pool): register them under the pool."""
    service.register(app.state.pool, app.state.settings)
    try:
        yield
    finally:
        service.unregister(app.state.pool)


ROUTES: list[Any] = [ControlCenterWebhook, ChargerReleaseController, AlertController]
