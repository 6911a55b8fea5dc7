"""`GET /dev/sms`: the demo SMS sink's recent messages (demo mode without Twilio only).

Not registered at all otherwise (`demo_routes`), and never in the OpenAPI document: it
shows login codes in clear, which only a laptop demo may do."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.params import FromQuery, QueryParameter

from app.core.deps import Db
from app.core.settings import Settings
from app.notifications import service
from app.notifications.schemas import DevSmsPage


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


ROUTES: list[Any] = []
