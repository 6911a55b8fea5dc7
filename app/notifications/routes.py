"""Notification routes: the driver's alerts (`GET /v1/me/notifications`), Twilio's
webhooks (`POST /webhooks/twilio/status`, `POST /webhooks/twilio/inbound`), the operator's
`POST /admin/v1/alerts/{alert_id}/acknowledge`, and the demo sink's `GET /dev/sms`.

`GET /dev/sms` is not registered at all otherwise (`demo_routes`), and never in the OpenAPI
document: it shows login codes in clear, which only a laptop demo may do."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Final

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, QueryParameter

from app.core.auth import DRIVER_SECURITY, Permission, requires, requires_driver
from app.core.deps import ClockDep, Db, Driver, Staff
from app.core.errors import DomainError
from app.core.pagination import CursorTime, decode_cursor, encode_cursor
from app.core.settings import Settings
from app.notifications import operator, queries, service, webhooks
from app.notifications.schemas import AlertAcknowledged, DevSmsPage, Notification, NotificationPage

TWIML: Final = "text/xml"


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "The body is too large"


class MyNotifications(Controller):
    path = "/v1/me/notifications"
    tags = ["notifications"]
    guards = [requires_driver]
    security = DRIVER_SECURITY

    @get("/", summary="The SMS alerts the driver was sent, or would have been")
    async def list_notifications(
        self,
        driver: Driver,
        db: Db,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: FromQuery[str | None] = None,
    ) -> NotificationPage:
        """Newest first. `status`: `queued`, `sent`, `delivered`, `undelivered`, `failed`, or
        `suppressed` (the driver replied STOP or set `sms_alerts: false`: nothing reached
        Twilio). Each kind at most once per session or reservation."""
        before = decode_cursor(cursor, tuple[CursorTime, uuid.UUID])
        rows = await queries.driver_notifications(
            db, driver_id=uuid.UUID(driver.driver_id), before=before, limit=limit + 1
        )
        items = [Notification(**_fields(r)) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor((last.created_at, last.notification_id))
        return NotificationPage(items=items, next_cursor=next_cursor)


def _fields(row: queries.NotificationRow) -> dict[str, Any]:
    return {f: getattr(row, f) for f in row.__struct_fields__}


async def _signed_form(request: Request[Any, Any, State]) -> webhooks.FormFields:
    """The form of a Twilio webhook, once its X-Twilio-Signature checked out (else 403)."""
    settings: Settings = request.app.state.settings
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > webhooks.MAX_FORM_BYTES:
        raise PayloadTooLarge(f"at most {webhooks.MAX_FORM_BYTES} bytes")
    body = await request.body()
    if len(body) > webhooks.MAX_FORM_BYTES:
        raise PayloadTooLarge(f"at most {webhooks.MAX_FORM_BYTES} bytes")
    form = webhooks.parse_form(body)
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = webhooks.public_url(settings, request.url.path, query, str(request.url))
    webhooks.verify(
        settings,
        url,
        form,
        request.headers.get("x-twilio-signature", ""),
        request.headers.get(webhooks.SIGNATURE_SETTINGS, ""),
    )
    return form


class TwilioWebhooks(Controller):
    path = "/webhooks/twilio"
    tags = ["integrations"]

    @post("/status", summary="Twilio message status callbacks", status_code=204)
    async def status(
        self,
        request: Request[Any, Any, State],
        db: Db,
        clock: ClockDep,
        message_id: FromQuery[str | None] = None,
    ) -> None:
        """Form-encoded (`MessageSid`, `MessageStatus`, `ErrorCode`), signed with
        `X-Twilio-Signature` (bad → 403). Moves the notification's status forward
        (`sent` → `delivered` / `undelivered` / `failed`); late or repeated callbacks
        change nothing; 21610 marks the number opted out."""
        form = await _signed_form(request)
        await webhooks.apply_status(db, form, message_id, clock.now())

    @post(
        "/inbound",
        summary="Inbound SMS: STOP, START, HELP, STATUS",
        status_code=200,
        media_type=TWIML,
    )
    async def inbound(
        self, request: Request[Any, Any, State], db: Db, clock: ClockDep
    ) -> Response[str]:
        """Form-encoded (`From`, `To`, `Body`), signed with `X-Twilio-Signature` (bad →
        403). `STOP` (and STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT) opts the number out of
        alerts, `START` (YES, UNSTOP) back in, `HELP` explains, `STATUS` answers with the
        live session (energy, cost so far, SoC). The answer is TwiML (`text/xml`)."""
        form = await _signed_form(request)
        reply = await webhooks.handle_inbound(db, form, clock.now())
        return Response(webhooks.twiml(reply), media_type=TWIML, status_code=200)


class AlertAcknowledgeController(Controller):
    path = "/admin/v1/alerts"
    tags = ["fleet"]

    @post(
        "/{alert_id:int}/acknowledge",
        summary="Acknowledge an operator alert",
        status_code=200,
        guards=[requires(Permission.FLEET_WRITE)],
    )
    async def acknowledge(
        self,
        request: Request[Any, Any, State],
        db: Db,
        staff: Staff,
        clock: ClockDep,
        alert_id: FromPath[int],
    ) -> AlertAcknowledged:
        """Operators and admins; audited. A second acknowledgement answers the first one;
        an unknown alert → 404."""
        return await operator.acknowledge(
            db,
            alert_id=alert_id,
            actor=staff,
            now=clock.now(),
            request_id=request.scope.get("state", {}).get("request_id"),
        )


@get("/dev/sms", summary="Demo SMS sink: recent messages", include_in_schema=False)
async def dev_sms(
    db: Db,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 20,
    to: FromQuery[str | None] = None,
) -> DevSmsPage:
    """Newest first; `?to=+4915…` filters by recipient."""
    return await service.recent_sink_messages(db, to=to, limit=limit)


def demo_routes(settings: Settings) -> list[Any]:
    """The routes that exist only when the demo sink is the SMS sender."""
    return [dev_sms] if service.sender_kind(settings) == "sink" else []


ROUTES: list[Any] = [MyNotifications, TwilioWebhooks, AlertAcknowledgeController]
