"""The demo SMS sink (RUNNING.md: Twilio unset in demo mode): each message is printed to
the terminal and kept in `sms_messages` (provider `sink`) for `GET /dev/sms`.

Demo only: it shows login codes in clear, which is the point on a laptop and never
acceptable anywhere else, so it is chosen only when `APP_DEMO` is on and Twilio is not
configured (`sender_kind`)."""

from __future__ import annotations

import sys
import uuid
from datetime import datetime

from app.notifications.twilio import SentSms


class SmsSink:
    name = "sink"

    async def send(
        self,
        to: str,
        body: str,
        *,
        status_callback: str | None = None,
        validity_period_s: int | None = None,
    ) -> SentSms:
        sid = "SINK" + uuid.uuid4().hex
        print(f"[demo SMS sink] to {to}: {body}", file=sys.stdout, flush=True)
        return SentSms(sid=sid, status="sent")

    async def find_sent(self, to: str, body: str, *, since: datetime) -> SentSms | None:
        return None  # the sink keeps nothing of its own: a resend is printed twice

    async def aclose(self) -> None:
        return None
