"""Driver SMS alerts: the two calls other domains make, in their own transaction.

- `queue_alert(db, kind=…, driver_id=…, now=…, session_id=…, reservation_id=…, facts=…)`
  writes the notification row and, unless the driver opted out, its message and the
  `send_sms` outbox row — all in the caller's transaction (a rollback drops the alert, a
  commit makes it certain). Each kind exists once per session and once per reservation
  (unique indexes, migration 0011): a repeat returns None and writes nothing. A driver who
  replied STOP or set `sms_alerts: false` gets a `suppressed` row and no message, so
  nothing reaches Twilio. Returns the notification id when a message was queued.
- `session_changed(db, session_id=…, now=…)`: after a session's live state changed
  (StartTransaction, MeterValues, StatusNotification, StopTransaction), load it with its
  recent samples, apply the pure rules (`app.notifications.rules`) and queue what is due.

`facts` are what the text may mention (`app.notifications.texts.Facts`: `site_name`,
`timezone`, `energy_wh`, `soc_percent`, `cost_minor`, `currency`, `minutes`, `at`,
`hold_minor`, `amount_minor`, `connector_label`, …); the site of a session is looked up
when the caller does not name it. The worker's LISTEN on `vw_sms` (a trigger on new
messages) hands the job to arq right after the commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from app.core import outbox
from app.core.sql import Executor
from app.notifications import queries, texts
from app.notifications.rules import KINDS, SESSION_KINDS, Sample, SessionState, due_alerts

SEND_SMS_JOB = "send_sms"
SAMPLE_WINDOW = timedelta(minutes=20)  # longer than the 10 idle minutes the rules look at


class UnknownAlertKind(ValueError):
    pass


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def queue_alert(
    db: Executor,
    *,
    kind: str,
    driver_id: uuid.UUID | str,
    now: datetime,
    session_id: uuid.UUID | str | None = None,
    reservation_id: uuid.UUID | str | None = None,
    facts: dict[str, Any] | None = None,
) -> str | None:
    """Queue one alert in the caller's transaction; see the module docstring."""
    if kind not in KINDS:
        raise UnknownAlertKind(f"unknown alert kind {kind!r}")
    did = _uuid(driver_id)
    sid = _uuid(session_id) if session_id is not None else None
    rid = _uuid(reservation_id) if reservation_id is not None else None
    recipient = await queries.alert_recipient(db, driver_id=did)
    if recipient is None:
        return None
    known: dict[str, Any] = dict(facts or {})
    if sid is not None and "site_name" not in known:
        site = await queries.session_site(db, session_id=sid)
        if site is not None:
            known["site_name"] = site.site_name
            known.setdefault("timezone", site.timezone)
    locale = texts.locale_for(recipient.locale, recipient.phone)
    body = texts.render(kind, locale, known)
    suppressed = recipient.opted_out or not recipient.sms_alerts
    notification_id = await queries.insert_notification(
        db,
        driver_id=did,
        kind=kind,
        session_id=sid,
        reservation_id=rid,
        body=body,
        locale=locale,
        facts=known,
        status="suppressed" if suppressed else "queued",
        now=now,
    )
    if notification_id is None or suppressed:
        return None
    message_id = await queries.insert_alert_message(
        db,
        to_phone=recipient.phone,
        driver_id=did,
        body=body,
        notification_id=notification_id,
        now=now,
    )
    await outbox.enqueue(
        db,
        job=SEND_SMS_JOB,
        args={"message_id": str(message_id)},
        dedupe_key=f"sms:{message_id}",
    )
    return str(notification_id)


async def session_state(
    db: Executor, *, session_id: uuid.UUID | str, now: datetime
) -> tuple[queries.SessionForAlerts, SessionState] | None:
    """A session as the rules see it (None for an unknown session)."""
    row = await queries.session_for_alerts(db, session_id=_uuid(session_id))
    if row is None:
        return None
    rows = await queries.recent_samples(
        db, transaction_id=row.transaction_id, since=now - SAMPLE_WINDOW
    )
    samples = [
        Sample(
            at=r.at,
            energy_wh=None
            if r.energy_register_wh is None
            else max(0.0, r.energy_register_wh - row.meter_start_wh),
            power_w=r.power_w,
            soc_percent=r.soc_percent,
        )
        for r in rows
    ]
    state = SessionState(
        status=row.status,
        started_at=row.started_at,
        ended_at=row.ended_at,
        energy_wh=float(row.energy_wh),
        power_w=None if row.power_w is None else float(row.power_w),
        soc_percent=row.soc_percent,
        battery_wh=None if row.battery_wh is None else float(row.battery_wh),
        samples=samples,
        sent=frozenset(row.sent),
    )
    return row, state


async def session_changed(db: Executor, *, session_id: uuid.UUID | str, now: datetime) -> None:
    """Apply the alert rules to a session whose live state just changed (in the caller's
    transaction); queues each alert that became due."""
    loaded = await session_state(db, session_id=session_id, now=now)
    if loaded is None:
        return
    row, state = loaded
    if row.driver_id is None or set(SESSION_KINDS) <= state.sent:
        return
    site = {"site_name": row.site_name, "timezone": row.timezone}
    for due in due_alerts(state, now):
        await queue_alert(
            db,
            kind=due.kind,
            driver_id=row.driver_id,
            now=now,
            session_id=row.session_id,
            facts={**site, **due.facts},
        )
