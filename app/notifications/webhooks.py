"""Twilio's webhooks (INTEGRATIONS.md §4): status callbacks and inbound replies.

Both are form-encoded and signed: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, the
full public URL + the sorted form fields)), checked with the official
`twilio.request_validator.RequestValidator` against `PUBLIC_BASE_URL` + the path and query
the platform called (behind a proxy the URL we see is not the one Twilio signed). A bad or
missing signature → 403 and nothing changes.

Inbound keywords (case-insensitive, the first word): `STOP, STOPALL, UNSUBSCRIBE, CANCEL,
END, QUIT` opt the number out (every alert queued for it is suppressed, no later alert
reaches Twilio); `START, YES, UNSTOP` opt it back in; `HELP` explains; `STATUS` answers
with the driver's live session. Replies are TwiML.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from twilio.request_validator import (
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from app.core.errors import DomainError
from app.core.settings import Settings
from app.core.sql import Executor, execute
from app.notifications import queries, texts
from app.notifications.alerts import cost_so_far

STOP_WORDS: Final = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS: Final = frozenset({"START", "YES", "UNSTOP"})
MAX_FORM_BYTES: Final = 64 * 1024
MAX_FORM_FIELDS: Final = 100
TWILIO_STATUSES: Final = frozenset(
    {
        "accepted",
        "scheduled",
        "queued",
        "sending",
        "sent",
        "delivered",
        "undelivered",
        "failed",
        "read",
        "canceled",
        "receiving",
        "received",
    }
)


class BadTwilioSignature(DomainError):
    status, code, title = 403, "invalid_signature", "The Twilio signature is not valid"


class FormFields:
    """Form fields as Twilio's validator reads them (`getall` for repeated names)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(dict.fromkeys(k for k, _ in self.pairs))

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name]

    def get(self, name: str, default: str = "") -> str:
        values = self.getall(name)
        return values[0] if values else default


def parse_form(body: bytes) -> FormFields:
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        pairs = []
    return FormFields(pairs)


def public_url(settings: Settings, path: str, query: str, seen_url: str) -> str:
    """The URL Twilio called: `PUBLIC_BASE_URL` + path (+ query), else the one we saw."""
    base = settings.public_base_url.rstrip("/")
    if not base:
        return seen_url
    return f"{base}{path}" + (f"?{query}" if query else "")


def verify(
    settings: Settings, url: str, form: FormFields, signature: str, settings_header: str
) -> None:
    """Raise `BadTwilioSignature` unless Twilio signed this request (no token → never)."""
    token = settings.twilio_auth_token
    if not token or not signature:
        raise BadTwilioSignature("missing signature")
    algorithm = get_signature_algorithm(settings_header)
    if not RequestValidator(token).validate(url, form, signature, algorithm=algorithm):
        raise BadTwilioSignature("signature does not match")


SIGNATURE_SETTINGS = SIGNATURE_SETTINGS_HEADER


def twiml(message: str | None) -> str:
    if not message:
        return '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Response><Message>{escape(message)}</Message></Response>"
    )


async def apply_status(
    db: Executor, form: FormFields, message_id: str | None, now: datetime
) -> bool:
    """A status callback moves the message forward (`sent` → `delivered`, …); stale or
    unknown callbacks change nothing. True when a message changed."""
    status = form.get("MessageStatus").strip().lower() or form.get("SmsStatus").strip().lower()
    sid = form.get("MessageSid") or form.get("SmsSid")
    if status not in TWILIO_STATUSES or not sid:
        return False
    code_raw = form.get("ErrorCode").strip()
    code = int(code_raw) if code_raw.isdigit() else None
    mid: uuid.UUID | None = None
    if message_id:
        try:
            mid = uuid.UUID(message_id)
        except ValueError:
            mid = None
    changed = await queries.apply_status_callback(
        db, message_id=mid, provider_sid=sid, status=status, error_code=code, now=now
    )
    if changed and code == 21610:
        to = form.get("To")
        if to:
            await execute(db, "notifications.opt_out", to, "twilio_21610")
    return changed


async def handle_inbound(db: Executor, form: FormFields, now: datetime) -> str | None:
    """The reply to an inbound SMS (None: no reply)."""
    phone = form.get("From").strip()
    words = form.get("Body").strip().split()
    keyword = words[0].upper().strip(".!") if words else ""
    driver = await queries.driver_by_phone(db, phone=phone) if phone else None
    locale = texts.locale_for(driver.locale if driver else None, phone)
    if keyword in STOP_WORDS:
        await execute(db, "notifications.opt_out", phone, "inbound_stop")
        await execute(db, "notifications.suppress_queued_to", phone, now)
        return texts.reply("stop", locale)
    if keyword in START_WORDS:
        await execute(db, "notifications.opt_in", phone)
        return texts.reply("start", locale)
    if keyword in ("HELP", "INFO"):
        return texts.reply("help", locale)
    if keyword == "STATUS":
        if driver is None:
            return texts.status_reply(locale, None)
        live = await queries.live_session_of_driver(db, driver_id=driver.driver_id)
        if live is None:
            return texts.status_reply(locale, None)
        cost, currency = await cost_so_far(db, session_id=live.session_id, now=now)
        facts = texts.Facts(
            site_name=live.site_name,
            energy_wh=float(live.energy_wh),
            soc_percent=live.soc_percent,
            cost_minor=cost,
            currency=currency,
        )
        return texts.status_reply(locale, facts)
    return None
