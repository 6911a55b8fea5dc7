"""The preview of a draft tariff: its bands and a sample quote, next to the current
version's, computed by the pure engine; nothing is stored."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from app.admin_page.schemas import PreviewIn, PreviewOut, PreviewSample, PreviewSide, SampleQuote
from app.core.db import Connection
from app.core.errors import FieldError, ValidationFailed
from app.pricing import engine, service
from app.pricing.schemas import quote_lines
from app.pricing.tariff import Tariff

MAX_SAMPLE_H = 48


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}", errors=[FieldError(field=field, message=message)]
    )


def _draft(body: PreviewIn) -> Tariff:
    """The draft as an engine Tariff, or 422 with its problems under `tariff.`."""
    try:
        return service.checked_tariff(body.tariff, tariff_id="draft")
    except ValidationFailed as exc:
        errors = [
            FieldError(field=f"tariff.{e.field}", message=e.message) for e in exc.errors or []
        ]
        raise ValidationFailed(exc.detail, errors=errors) from None


def _quote(t: Tariff, tz: ZoneInfo, sample: PreviewSample) -> SampleQuote:
    start = service.aware(sample.start_at, "sample.start_at")
    bill = engine.quote(
        t, tz, start_at=start, power_kw=sample.power_kw, energy_kwh=sample.energy_kwh
    )
    return SampleQuote(
        currency=bill.currency,
        total_minor=bill.total_minor,
        subtotal_minor=bill.subtotal_minor,
        vat_minor=bill.vat_minor,
        vat_percent=bill.vat_percent,
        lines=quote_lines(bill),
        start_at=start,
        end_at=start + timedelta(hours=sample.energy_kwh / sample.power_kw),
        energy_kwh=sample.energy_kwh,
        power_kw=sample.power_kw,
    )


def _side(
    t: Tariff,
    version: int | None,
    tz: ZoneInfo,
    start: datetime,
    end: datetime,
    sample: PreviewSample | None,
) -> PreviewSide:
    return PreviewSide(
        version=version,
        currency=t.currency,
        bands=service.timeline_bands(t, start, end, tz),
        quote=_quote(t, tz, sample) if sample is not None else None,
    )


async def preview(conn: Connection, body: PreviewIn) -> PreviewOut:
    """Bands of the draft over `[from, to)` in `timezone` (at most 31 days), and the sample
    quote; the same for the current version of `tariff_id` when given."""
    tz = service.zone(body.timezone)
    start, end = service.aware(body.from_, "from"), service.aware(body.to, "to")
    if end <= start:
        raise _invalid("to", "must be after from")
    if end - start > service.MAX_TIMELINE:
        raise _invalid("to", "at most 31 days after from")
    if body.sample is not None and body.sample.energy_kwh / body.sample.power_kw > MAX_SAMPLE_H:
        raise _invalid("sample.energy_kwh", f"would take more than {MAX_SAMPLE_H} h")
    draft = _draft(body)
    current = None
    if body.tariff_id is not None:
        cur = await service.current_tariff(conn, body.tariff_id)
        current = _side(cur, cur.version, tz, start, end, body.sample)
    return PreviewOut(
        timezone=body.timezone,
        from_=start,
        to=end,
        draft=_side(draft, None, tz, start, end, body.sample),
        current=current,
    )
