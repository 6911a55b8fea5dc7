"""Tariff publishing (immutable versions, audited), assignments, timelines, and the
driver-facing quote and cheapest start. Prices come from `app.pricing.engine`."""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from app.core import audit
from app.core.auth import StaffPrincipal
from app.core.db import Connection
from app.core.errors import DomainError, FieldError, NotFound, ValidationFailed
from app.core.pagination import CursorInt, CursorTime, decode_cursor, encode_cursor
from app.pricing import engine, queries
from app.pricing.book import PriceBook, tariff_from_row
from app.pricing.schemas import (
    AssignmentIn,
    AssignmentOut,
    AssignmentPage,
    CheapestStartOut,
    Quote,
    TariffIn,
    TariffOut,
    TariffPage,
    TariffRef,
    Timeline,
    TimelineBand,
    quote_lines,
)
from app.pricing.tariff import PriceComponent, Tariff, TariffElement, validate_tariff

MAX_TIMELINE = timedelta(days=31)
MIN_YEAR, MAX_YEAR = 1971, 2999
MAX_SESSION_H = 48
MAX_QUOTE_AHEAD = timedelta(days=7)
MAX_QUOTE_BEHIND = timedelta(days=1)
# Vehicle defaults for "charge me up": 20 % → 80 % of the battery.
SOC_FROM, SOC_TO = 0.2, 0.8
AC_TYPES = frozenset({"TYPE2"})


class TariffNotFound(NotFound):
    code, title = "tariff_not_found", "No such tariff (or version)"


class SiteNotFound(NotFound):
    code, title = "site_not_found", "No such site"


class ChargerNotFound(NotFound):
    code, title = "charger_not_found", "No such charger"


class ConnectorNotFound(NotFound):
    code, title = "connector_not_found", "No such connector at this site"


class NoTariff(DomainError):
    status, code, title = 404, "no_tariff", "No tariff applies here at that time"


class VehicleIncompatible(DomainError):
    status, code, title = 422, "vehicle_incompatible", "Your vehicle cannot charge here"


def _uuid(raw: str, error: DomainError) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except (ValueError, TypeError, AttributeError):
        raise error from None


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}", errors=[FieldError(field=field, message=message)]
    )


def zone(name: str, field: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise _invalid(field, "must be an IANA time zone such as Europe/Berlin") from None


def aware(dt: datetime, field: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise _invalid(field, "must carry a UTC offset (RFC 3339)")
    try:
        out = dt.astimezone(UTC)
    except OverflowError:
        out = datetime.min.replace(tzinfo=UTC)
    if not MIN_YEAR <= out.year <= MAX_YEAR:
        raise _invalid(field, f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return out


# ---- admin: tariffs -------------------------------------------------------------------


def decimal_text(value: str | int | float) -> str:
    """A JSON number as the decimal string the engine reads (`19` → "19", `19.0` → "19.0",
    `1e-7` → "0.0000001"); strings pass as they are (validation judges them)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)  # "inf"/"nan": refused as not a decimal
    return format(Decimal(repr(value)), "f")


def checked_tariff(body: TariffIn, tariff_id: str = "new", version: int = 1) -> Tariff:
    """The body as an engine Tariff, or 422 with every problem found."""
    tariff = Tariff(
        tariff_id=tariff_id,
        version=version,
        currency=body.currency,
        vat_percent=decimal_text(body.vat_percent),
        elements=[
            TariffElement(
                price_components=[
                    PriceComponent(type=c.type, price=decimal_text(c.price), step_size=c.step_size)
                    for c in e.price_components
                ],
                restrictions=e.restrictions,
            )
            for e in body.elements
        ],
        name=body.name,
    )
    errors = validate_tariff(tariff)
    if len(body.name) > 200:
        errors.append(("name", "at most 200 characters"))
    if "\x00" in body.name:
        errors.append(("name", "must not contain NUL characters"))
    if len(body.elements) > 100:
        errors.append(("elements", "at most 100 elements"))
    if errors:
        raise ValidationFailed(
            "the tariff is not valid: " + "; ".join(f"{f}: {m}" for f, m in errors),
            errors=[FieldError(field=f, message=m) for f, m in errors],
        )
    return tariff


def _snapshot(t: Tariff) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(t)
    return out


def _out(row: queries.TariffRow) -> TariffOut:
    return TariffOut(
        tariff_id=row.tariff_id,
        version=row.version,
        name=row.name,
        currency=row.currency,
        vat_percent=row.vat_percent,
        elements=row.elements,
        created_at=row.tariff_created_at,
        version_created_at=row.created_at,
    )


async def _write_version(
    conn: Connection, t: Tariff, tid: uuid.UUID, now: datetime, actor: StaffPrincipal
) -> None:
    await queries.insert_version(
        conn,
        tariff_id=tid,
        version=t.version,
        name=t.name,
        currency=t.currency,
        vat_percent=t.vat_percent,
        elements=msgspec.to_builtins(t.elements),
        created_at=now,
        created_by=actor.email or actor.staff_id,
    )


async def create_tariff(
    conn: Connection,
    body: TariffIn,
    *,
    actor: StaffPrincipal,
    now: datetime,
    request_id: str | None,
) -> TariffRef:
    checked = checked_tariff(body)
    tid = await queries.insert_tariff(conn, now=now)
    t = msgspec.structs.replace(checked, tariff_id=str(tid))
    await _write_version(conn, t, tid, now, actor)
    await audit.record(
        conn,
        actor=actor,
        action="tariff.create",
        entity_type="tariff",
        entity_id=str(tid),
        after=_snapshot(t),
        request_id=request_id,
    )
    return TariffRef(tariff_id=str(tid), version=1)


async def update_tariff(
    conn: Connection,
    tariff_id: str,
    body: TariffIn,
    *,
    actor: StaffPrincipal,
    now: datetime,
    request_id: str | None,
) -> TariffRef:
    """A new immutable version; earlier versions stay readable (`?version=`)."""
    tid = _uuid(tariff_id, TariffNotFound())
    checked = checked_tariff(body, tariff_id=str(tid))
    current = await queries.lock_tariff(conn, tariff_id=tid)
    if current is None:
        raise TariffNotFound()
    stored = await queries.get_version(conn, tariff_id=tid, version=current)
    assert stored is not None  # the tariff row is locked and versions are never deleted
    before = tariff_from_row(stored)
    t = msgspec.structs.replace(checked, version=current + 1)
    await _write_version(conn, t, tid, now, actor)
    await queries.set_current_version(conn, tariff_id=tid, version=t.version, now=now)
    await audit.record(
        conn,
        actor=actor,
        action="tariff.update",
        entity_type="tariff",
        entity_id=str(tid),
        before=_snapshot(before),
        after=_snapshot(t),
        request_id=request_id,
    )
    return TariffRef(tariff_id=str(tid), version=t.version)


async def _stored(conn: Connection, tariff_id: str, version: int | None) -> queries.TariffRow:
    tid = _uuid(tariff_id, TariffNotFound())
    row = await queries.get_version(conn, tariff_id=tid, version=version)
    if row is None:
        raise TariffNotFound()
    return row


async def get_tariff(conn: Connection, tariff_id: str, version: int | None) -> TariffOut:
    return _out(await _stored(conn, tariff_id, version))


async def current_tariff(conn: Connection, tariff_id: str) -> Tariff:
    """The current version of a stored tariff as the engine's Tariff (404 when none)."""
    return tariff_from_row(await _stored(conn, tariff_id, None))


async def list_tariffs(conn: Connection, *, limit: int, cursor: str | None) -> TariffPage:
    after = decode_cursor(cursor, tuple[CursorTime, uuid.UUID])
    at, last = after if after else (None, None)
    rows = await queries.list_tariffs(conn, after_at=at, after_id=last, limit=limit + 1)
    items = [_out(r) for r in rows[:limit]]
    nxt = None
    if len(rows) > limit:
        tail = rows[limit - 1]
        nxt = encode_cursor((tail.tariff_created_at, uuid.UUID(tail.tariff_id)))
    return TariffPage(items=items, next_cursor=nxt)


async def timeline(
    conn: Connection,
    tariff_id: str,
    *,
    version: int | None,
    start: datetime,
    end: datetime,
    timezone: str,
) -> Timeline:
    tz = zone(timezone)
    start, end = aware(start, "from"), aware(end, "to")
    if end <= start:
        raise _invalid("to", "must be after from")
    if end - start > MAX_TIMELINE:
        raise _invalid("to", "at most 31 days after from")
    t = await _stored(conn, tariff_id, version)  # a Tariff with its timestamps
    return Timeline(
        tariff_id=t.tariff_id,
        version=t.version,
        currency=t.currency,
        timezone=timezone,
        bands=timeline_bands(t, start, end, tz),
    )


def timeline_bands(t: Tariff, start: datetime, end: datetime, tz: ZoneInfo) -> list[TimelineBand]:
    """The tariff's price bands over `[start, end)` in `tz`, as the API answers them
    (the timeline here, the admin page's preview)."""
    return [
        TimelineBand(
            from_=b.from_,
            to=b.to,
            energy_per_kwh=b.energy_per_kwh,
            time_per_hour=b.time_per_hour,
            flat=b.flat,
            idle_per_hour=b.idle_per_hour,
        )
        for b in engine.bands(t, start, end, tz)
    ]


# ---- admin: assignments ---------------------------------------------------------------


async def assign(
    conn: Connection,
    body: AssignmentIn,
    *,
    actor: StaffPrincipal,
    now: datetime,
    request_id: str | None,
) -> AssignmentOut:
    if (body.site_id is None) == (body.charger_id is None):
        raise ValidationFailed(
            "give exactly one of site_id and charger_id",
            errors=[
                FieldError(field="site_id", message="exactly one of site_id, charger_id"),
                FieldError(field="charger_id", message="exactly one of site_id, charger_id"),
            ],
        )
    effective_from = aware(body.effective_from, "effective_from")
    tid = _uuid(body.tariff_id, TariffNotFound())
    if not await queries.tariff_exists(conn, tariff_id=tid):
        raise TariffNotFound()
    site_id = charger_id = None
    if body.site_id is not None:
        site_id = _uuid(body.site_id, SiteNotFound())
        if not await queries.site_exists(conn, site_id=site_id):
            raise SiteNotFound()
    else:
        assert body.charger_id is not None
        charger_id = _uuid(body.charger_id, ChargerNotFound())
        if not await queries.charger_exists(conn, charger_id=charger_id):
            raise ChargerNotFound()
    row = await queries.insert_assignment(
        conn,
        tariff_id=tid,
        site_id=site_id,
        charger_id=charger_id,
        effective_from=effective_from,
        now=now,
        created_by=actor.email or actor.staff_id,
    )
    out = AssignmentOut(
        assignment_id=row.assignment_id,
        tariff_id=str(tid),
        site_id=str(site_id) if site_id else None,
        charger_id=str(charger_id) if charger_id else None,
        effective_from=effective_from,
        created_at=row.created_at,
    )
    await audit.record(
        conn,
        actor=actor,
        action="tariff.assign",
        entity_type="site" if site_id else "charger",
        entity_id=str(site_id or charger_id),
        before=None,
        after=msgspec.to_builtins(out),
        request_id=request_id,
    )
    return out


async def list_assignments(
    conn: Connection,
    *,
    tariff_id: str | None,
    site_id: str | None,
    charger_id: str | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> AssignmentPage:
    """Which sites and chargers a tariff is (or will be) assigned to, latest first."""
    after = decode_cursor(cursor, tuple[CursorTime, CursorInt])
    items = await queries.list_assignments(
        conn,
        tariff_id=_uuid(tariff_id, _invalid("tariff_id", "must be a UUID")) if tariff_id else None,
        site_id=_uuid(site_id, _invalid("site_id", "must be a UUID")) if site_id else None,
        charger_id=_uuid(charger_id, _invalid("charger_id", "must be a UUID"))
        if charger_id
        else None,
        after_from=after[0] if after else None,
        after_id=after[1] if after else None,
        now=now,
        limit=limit + 1,
    )
    nxt = None
    if len(items) > limit:
        items = items[:limit]
        nxt = encode_cursor((items[-1].effective_from, items[-1].assignment_id))
    return AssignmentPage(items=items, next_cursor=nxt)


# ---- which tariff applies when -------------------------------------------------------


class Assignment(NamedTuple):
    tariff_id: str
    charger_level: bool
    effective_from: datetime


def effective_at(rows: Sequence[Assignment], at: datetime) -> str | None:
    """Charger-level beats site-level; per level the latest effective_from <= at wins
    (rows are ordered oldest first, so a later row wins a tie)."""
    best: dict[bool, str] = {}
    for r in rows:
        if r.effective_from <= at:
            best[r.charger_level] = r.tariff_id
    return best.get(True, best.get(False))


def periods(
    rows: Sequence[Assignment], start: datetime, end: datetime
) -> list[tuple[datetime, datetime, str | None]]:
    """[start, end) cut where the applicable tariff changes."""
    cuts = sorted({r.effective_from for r in rows if start < r.effective_from < end})
    edges = [start, *cuts, end]
    out: list[tuple[datetime, datetime, str | None]] = []
    for a, b in itertools.pairwise(edges):
        tid = effective_at(rows, a)
        if out and out[-1][2] == tid:
            out[-1] = (out[-1][0], b, tid)
        else:
            out.append((a, b, tid))
    return out


# ---- driver-facing: quote and cheapest start ------------------------------------------


class Vehicle(NamedTuple):
    battery_kwh: float
    max_ac_kw: float
    max_dc_kw: float


class _Place(NamedTuple):
    tz: ZoneInfo
    power_kw: float
    rows: list[Assignment]


async def driver_vehicle(pool: asyncpg.Pool, driver_id: str) -> Vehicle | None:
    row = await queries.driver_vehicle(pool, driver_id=uuid.UUID(driver_id))
    if (
        row is None
        or row.vehicle_battery_wh is None
        or row.vehicle_max_ac_w is None
        or row.vehicle_max_dc_w is None
    ):
        return None
    return Vehicle(
        battery_kwh=row.vehicle_battery_wh / 1000,
        max_ac_kw=row.vehicle_max_ac_w / 1000,
        max_dc_kw=row.vehicle_max_dc_w / 1000,
    )


async def _place(
    pool: asyncpg.Pool, site_id: str, connector_id: str, vehicle: Vehicle | None
) -> _Place:
    sid = _uuid(site_id, SiteNotFound())
    cid = _uuid(connector_id, ConnectorNotFound())
    async with pool.acquire() as conn:
        row = await queries.connector_for_quote(conn, connector_id=cid, site_id=sid)
        if row is None:
            if await queries.site_exists(conn, site_id=sid):
                raise ConnectorNotFound()
            raise SiteNotFound()
        raw = await queries.assignments_for(conn, charger_id=row.charger_id, site_id=sid)
    power = row.power_w / 1000
    if vehicle is not None:
        cap = vehicle.max_ac_kw if row.type in AC_TYPES else vehicle.max_dc_kw
        if cap <= 0:
            raise VehicleIncompatible(
                f"the vehicle on your profile cannot charge on a {row.type} connector"
            )
        power = min(power, cap)
    rows = [Assignment(r.tariff_id, r.charger_level, r.effective_from) for r in raw]
    return _Place(tz=ZoneInfo(row.timezone), power_kw=power, rows=rows)


async def _compiled(pool: asyncpg.Pool, book: PriceBook, tariff_id: str) -> engine.CompiledTariff:
    ct = book.tariffs.get(tariff_id)
    if ct is None:  # published a moment ago and not heard yet
        rows = await queries.current_versions(pool, tariff_ids=[uuid.UUID(tariff_id)])
        if not rows:
            raise NoTariff()
        ct = engine.compile_tariff(rows[0])
    return ct


def _check_length(energy_kwh: float, power_kw: float) -> None:
    if energy_kwh / power_kw > MAX_SESSION_H:
        raise _invalid(
            "energy_kwh", f"would take more than {MAX_SESSION_H} h at {power_kw:g} kW here"
        )


def _energy(energy_kwh: float | None, vehicle: Vehicle | None, field: str) -> float:
    if energy_kwh is not None:
        return energy_kwh
    if vehicle is not None:
        return round(vehicle.battery_kwh * (SOC_TO - SOC_FROM), 3)
    raise _invalid(field, "required (or sign in with a vehicle on your profile)")


async def quote(
    pool: asyncpg.Pool,
    book: PriceBook,
    *,
    site_id: str,
    connector_id: str,
    start_at: datetime | None,
    energy_kwh: float | None,
    duration_min: float | None,
    vehicle: Vehicle | None,
    now: datetime,
) -> Quote:
    """A quote by energy charges at the connector's rated power (capped by the vehicle);
    by duration, for that long at that power. The tariff is the one in force at start."""
    if energy_kwh is not None and duration_min is not None:
        raise _invalid("duration_min", "give energy_kwh or duration_min, not both")
    start = now if start_at is None else aware(start_at, "start_at")
    if start > now + MAX_QUOTE_AHEAD:
        raise _invalid("start_at", "at most 7 days ahead")
    if start < now - MAX_QUOTE_BEHIND:
        raise _invalid("start_at", "at most 1 day in the past")
    if duration_min is None:
        energy_kwh = _energy(energy_kwh, vehicle, "energy_kwh")
    place = await _place(pool, site_id, connector_id, vehicle)
    if energy_kwh is not None:
        _check_length(energy_kwh, place.power_kw)
    tariff_id = effective_at(place.rows, start)
    if tariff_id is None:
        raise NoTariff()
    ct = await _compiled(pool, book, tariff_id)
    if duration_min is not None:
        bill = engine.quote(
            ct, place.tz, start_at=start, power_kw=place.power_kw, duration_min=duration_min
        )
        end = start + timedelta(minutes=duration_min)
        kwh = round(place.power_kw * duration_min / 60, 3)
    else:
        assert energy_kwh is not None
        bill = engine.quote(
            ct, place.tz, start_at=start, power_kw=place.power_kw, energy_kwh=energy_kwh
        )
        end = start + timedelta(hours=energy_kwh / place.power_kw)
        kwh = energy_kwh
    return Quote(
        currency=bill.currency,
        total_minor=bill.total_minor,
        lines=quote_lines(bill),
        vat_minor=bill.vat_minor,
        subtotal_minor=bill.subtotal_minor,
        vat_percent=bill.vat_percent,
        tariff_id=bill.tariff_id,
        tariff_version=bill.tariff_version,
        start_at=start,
        end_at=end,
        energy_kwh=kwh,
        power_kw=place.power_kw,
    )


async def cheapest_start(
    pool: asyncpg.Pool,
    book: PriceBook,
    *,
    site_id: str,
    connector_id: str,
    energy_kwh: float | None,
    within_h: float,
    vehicle: Vehicle | None,
    now: datetime,
) -> CheapestStartOut:
    """The cheapest start in [now, now + within_h], each start priced with the tariff in
    force at that start (sessions keep the tariff they start with)."""
    kwh = _energy(energy_kwh, vehicle, "energy_kwh")
    place = await _place(pool, site_id, connector_id, vehicle)
    _check_length(kwh, place.power_kw)
    now = now.astimezone(UTC)
    end = now + timedelta(hours=within_h)
    spans = periods(place.rows, now, end)
    first = spans[0][2]
    if first is None:
        raise NoTariff()
    ct_now = await _compiled(pool, book, first)
    now_total = engine.quote(
        ct_now, place.tz, start_at=now, power_kw=place.power_kw, energy_kwh=kwh
    ).total_minor
    best_at, best_total = now, now_total
    for i, (a, b, tid) in enumerate(spans):
        if tid is None:
            continue
        ct = ct_now if tid == first else await _compiled(pool, book, tid)
        if ct.currency != ct_now.currency:
            continue  # totals in different currencies do not compare
        hours = (b - a).total_seconds() / 3600
        if i < len(spans) - 1:
            hours -= 1e-6  # a start at b belongs to the next tariff
        if hours <= 0:
            continue
        found = engine.cheapest_start(
            ct, place.tz, a, kwh, place.power_kw, within_h=min(hours, 168)
        )
        if found.total_minor < best_total:
            best_at, best_total = found.start_at, found.total_minor
    return CheapestStartOut(
        start_at=best_at,
        total_minor=best_total,
        saving_minor_vs_now=now_total - best_total,
        currency=ct_now.currency,
        now_total_minor=now_total,
        energy_kwh=kwh,
        power_kw=place.power_kw,
        tariff_id=first,
    )


# ---- for the sessions domain -------------------------------------------------------------


async def tariff_for_session(conn: Connection, connector_id: str, at: datetime) -> Tariff | None:
    """The tariff version a session starting `at` on this connector locks (store its
    `tariff_id` and `version` on the session; bill it later with `tariff_version`)."""
    cid = _uuid(connector_id, ConnectorNotFound())
    owner = await queries.connector_owner(conn, connector_id=cid)
    if owner is None:
        raise ConnectorNotFound()
    raw = await queries.assignments_for(conn, charger_id=owner.charger_id, site_id=owner.site_id)
    rows = [Assignment(r.tariff_id, r.charger_level, r.effective_from) for r in raw]
    tariff_id = effective_at(rows, at)
    if tariff_id is None:
        return None
    row = await queries.get_version(conn, tariff_id=uuid.UUID(tariff_id), version=None)
    assert row is not None  # an assigned tariff exists (foreign key) with its current version
    return tariff_from_row(row)


async def tariff_version(conn: Connection, tariff_id: str, version: int) -> Tariff:
    """One stored (immutable) tariff version, e.g. the one a session locked at start."""
    return tariff_from_row(await _stored(conn, tariff_id, version))
