"""Pricing payloads: the admin tariff API and the driver-facing quote / cheapest start."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from app.pricing.engine import Bill
from app.pricing.tariff import ComponentType, TariffElement, TariffRestrictions

VatPercentIn = Annotated[
    str | int | float,
    msgspec.Meta(
        description='A decimal string (`"7.7"`) or a JSON number (`19`, `19.0`); '
        "answered as a decimal string",
        examples=["19"],
    ),
]


PriceIn = Annotated[
    str | int | float,
    msgspec.Meta(
        description='Excluding VAT: a decimal string (`"0.3900"`) or a JSON number (`0.39`); '
        "answered as a decimal string",
        examples=["0.3900"],
    ),
]


class PriceComponentIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One priced dimension as an admin sends it (`price` a string or a number)."""

    type: ComponentType
    price: PriceIn
    step_size: int = 1


class TariffElementIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    price_components: list[PriceComponentIn]
    restrictions: TariffRestrictions | None = None


class TariffIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A tariff as published by a pricing admin (OCPI 2.2.1 elements, prices excl. VAT).
    Prices and `vat_percent` may be JSON numbers; the stored tariff has decimal strings."""

    name: str = msgspec.field(default="")
    currency: str
    vat_percent: VatPercentIn
    elements: list[TariffElementIn]


class TariffRef(msgspec.Struct, frozen=True, kw_only=True):
    tariff_id: str
    version: int


class TariffOut(msgspec.Struct, frozen=True, kw_only=True):
    tariff_id: str
    version: int
    name: str
    currency: str
    vat_percent: str
    elements: list[TariffElement]
    created_at: datetime
    version_created_at: datetime


class TariffPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TariffOut]
    next_cursor: str | None = None


class AssignmentIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Exactly one of `site_id` and `charger_id`."""

    tariff_id: str
    effective_from: datetime
    site_id: str | None = None
    charger_id: str | None = None


class AssignmentOut(msgspec.Struct, frozen=True, kw_only=True):
    assignment_id: int
    tariff_id: str
    site_id: str | None
    charger_id: str | None
    effective_from: datetime
    created_at: datetime


class AssignmentItem(AssignmentOut, frozen=True, kw_only=True):
    """An assignment with where it applies; `state` at the time of the request."""

    created_by: str | None
    site_name: str
    """The site, or the charger's site."""
    timezone: str
    charge_point_id: str | None
    state: Literal["scheduled", "in_force", "superseded"]


class AssignmentPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AssignmentItem]
    next_cursor: str | None = None


class TimelineBand(msgspec.Struct, frozen=True, kw_only=True):
    from_: datetime = msgspec.field(name="from")
    to: datetime
    energy_per_kwh: str | None
    time_per_hour: str | None
    flat: str | None
    idle_per_hour: str | None


class Timeline(msgspec.Struct, frozen=True, kw_only=True):
    tariff_id: str
    version: int
    currency: str
    timezone: str
    bands: list[TimelineBand]


class QuoteLine(msgspec.Struct, frozen=True, kw_only=True):
    component: ComponentType
    band_from: datetime
    band_to: datetime
    quantity: float
    unit: Literal["kWh", "h", "session"]
    unit_price: str
    amount_minor: int


def quote_lines(bill: Bill) -> list[QuoteLine]:
    """The engine's bill lines as the API shows them (quotes, previews, receipts)."""
    return [
        QuoteLine(
            component=line.component,
            band_from=line.band_from,
            band_to=line.band_to,
            quantity=float(line.quantity),
            unit=line.unit,
            unit_price=line.unit_price,
            amount_minor=line.amount_minor,
        )
        for line in bill.lines
    ]


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """Line amounts exclude VAT; `total_minor` = sum of lines + `vat_minor`."""

    currency: str
    total_minor: int
    lines: list[QuoteLine]
    vat_minor: int
    subtotal_minor: int
    vat_percent: str
    tariff_id: str
    tariff_version: int
    start_at: datetime
    end_at: datetime
    energy_kwh: float
    power_kw: float


class CheapestStartOut(msgspec.Struct, frozen=True, kw_only=True):
    start_at: datetime
    total_minor: int
    saving_minor_vs_now: int
    currency: str
    now_total_minor: int
    energy_kwh: float
    power_kw: float
    tariff_id: str
