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
from zoneinfo import ZoneInfo

import msgspec

from app.core import outbox
from app.core.sql import Executor
from app.notifications import queries, texts
from app.notifications.rules import (
    KINDS,
    SESSION_KINDS,
    Sample,
    SessionState,
    due_alerts,
    is_full,
    needs_samples,
    parking_outlook,
)
from app.notifications.service import SEND_SMS_JOB

# An alert's outbox row is due for the relay (→ arq send_sms) only this long after it was
# queued: until then the worker's dispatcher (app/notifications/dispatch.py) has it.
FAST_PATH_GRACE = timedelta(seconds=30)
SAMPLE_WINDOW = timedelta(minutes=20)  # longer than the 10 idle minutes the rules look at
# the kinds whose text names the cost so far (priced only when one of them is due)
COST_KINDS = frozenset({"soc_80", "ten_minutes_left", "session_complete"})


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
        # the worker's dispatcher sends it at once; the relay only if it did not
        available_at=now + FAST_PATH_GRACE,
    )
    return str(notification_id)


async def cost_so_far(
    db: Executor, *, session_id: uuid.UUID | str, now: datetime
) -> tuple[int | None, str | None]:
    """The session's cost so far (its bill once billed) and currency, from the sessions
    domain's pricing of the locked tariff version; (None, None) when it cannot say."""
    from app.sessions import queries as session_queries  # sessions imports this module
    from app.sessions import service as sessions

    row = await session_queries.session(db, session_id=_uuid(session_id))
    if row is None:
        return None, None
    if row.total_minor is not None:
        return row.total_minor, row.currency
    try:
        cost = await sessions.running_cost(db, row, now)
    except (ValueError, LookupError):  # samples the engine refuses: leave the cost out
        cost = None
    return cost, row.currency


def ocpp_status_of(row: queries.SessionForAlerts) -> str | None:
    """The connector's OCPP status as the session row keeps it: `charging_ended_at` is set
    only in SuspendedEV / Finishing (migration 0010), so a SUSPENDED session without it is
    paused by the charger (SuspendedEVSE)."""
    if row.status == "CHARGING":
        return "Charging"
    if row.status == "SUSPENDED":
        return "SuspendedEV" if row.charging_ended_at is not None else "SuspendedEVSE"
    if row.status == "FINISHING":
        return "Finishing"
    return None


async def session_state(
    db: Executor, *, session_id: uuid.UUID | str, now: datetime
) -> tuple[queries.SessionForAlerts, SessionState] | None:
    """A session as the rules see it (None for an unknown session)."""
    row = await queries.session_for_alerts(db, session_id=_uuid(session_id))
    if row is None:
        return None
    state = SessionState(
        status=row.status,
        ocpp_status=ocpp_status_of(row),
        started_at=row.started_at,
        ended_at=row.ended_at,
        energy_wh=float(row.energy_wh),
        power_w=None if row.power_w is None else float(row.power_w),
        soc_percent=row.soc_percent,
        battery_wh=None if row.battery_wh is None else float(row.battery_wh),
        sent=frozenset(row.sent),
    )
    if not needs_samples(state):
        return row, state
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
    state = msgspec.structs.replace(state, samples=samples)
    return row, state


async def _with_parking(
    db: Executor, row: queries.SessionForAlerts, state: SessionState, now: datetime
) -> SessionState:
    """The state with the parking outlook of its locked tariff, once the car is full."""
    if (
        "idle_fee_warning" in state.sent
        or row.tariff_id is None
        or row.tariff_version is None
        or not is_full(state, now)
    ):
        return state
    from app.sessions import service as sessions  # sessions imports this module

    tariff = await sessions.compiled_tariff(db, row.tariff_id, row.tariff_version)
    outlook = parking_outlook(
        tariff,
        ZoneInfo(row.timezone),
        started_at=row.started_at,
        charging_end=row.charging_ended_at or now,
        energy_wh=row.energy_wh,
    )
    if outlook is None:
        return state
    starts, per_hour = outlook
    return msgspec.structs.replace(state, parking_starts_at=starts, parking_minor_per_hour=per_hour)


async def session_changed(db: Executor, *, session_id: uuid.UUID | str, now: datetime) -> None:
    """Apply the alert rules to a session whose live state just changed (in the caller's
    transaction); queues each alert that became due."""
    loaded = await session_state(db, session_id=session_id, now=now)
    if loaded is None:
        return
    row, state = loaded
    if row.driver_id is None or set(SESSION_KINDS) <= state.sent:
        return
    if row.ended_at is not None and "session_complete" in state.sent:
        return
    state = await _with_parking(db, row, state, now)
    due = due_alerts(state, now)
    if not due:
        return
    known: dict[str, Any] = {"site_name": row.site_name, "timezone": row.timezone}
    if any(d.kind in COST_KINDS for d in due):
        cost, currency = await cost_so_far(db, session_id=row.session_id, now=now)
        if cost is not None:
            known["cost_minor"] = cost
        known["currency"] = currency or row.currency
    elif row.currency:
        known["currency"] = row.currency
    for d in due:
        facts = {**known, **d.facts}
        if d.kind not in COST_KINDS:
            facts.pop("cost_minor", None)
        await queue_alert(
            db,
            kind=d.kind,
            driver_id=row.driver_id,
            now=now,
            session_id=row.session_id,
            facts=facts,
        )
