"""Payloads of the tariff preview (`POST /admin/v1/tariff-previews`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from app.pricing.schemas import QuoteLine, TariffIn, TimelineBand


class PreviewSample(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A synthetic session to quote: `energy_kwh` at a constant `power_kw` from `start_at`."""

    start_at: datetime
    energy_kwh: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 30.0
    power_kw: Annotated[float, msgspec.Meta(gt=0, le=2000)] = 50.0


class PreviewIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A draft tariff, optionally compared with the current version of `tariff_id`."""

    tariff: TariffIn
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    from_: datetime = msgspec.field(name="from")
    to: datetime
    tariff_id: str | None = None
    sample: PreviewSample | None = None


class SampleQuote(msgspec.Struct, frozen=True, kw_only=True):
    """Line amounts exclude VAT; `total_minor` = lines + `vat_minor`."""

    currency: str
    total_minor: int
    subtotal_minor: int
    vat_minor: int
    vat_percent: str
    lines: list[QuoteLine]
    start_at: datetime
    end_at: datetime
    energy_kwh: float
    power_kw: float


class PreviewSide(msgspec.Struct, frozen=True, kw_only=True):
    version: int | None
    """The stored version (null for the draft)."""
    currency: str
    bands: list[TimelineBand]
    quote: SampleQuote | None = None


class PreviewOut(msgspec.Struct, frozen=True, kw_only=True):
    timezone: str
    from_: datetime = msgspec.field(name="from")
    to: datetime
    draft: PreviewSide
    current: PreviewSide | None = None
    """The current version of `tariff_id`, when one was named."""
