"""Tariff data model (OCPI 2.2.1 Tariff module, snake_case as in API.md) and its validation.

Choices made here, relied on by ``app.pricing.engine``:

* ``price`` and ``vat_percent`` are decimal *strings* (``"0.3900"``, ``"19"``, ``"7.7"``): no
  float ever touches money. Prices exclude VAT, as in OCPI 2.2.1.
* ``min_kwh``/``max_kwh``/``min_power``/``max_power`` are JSON numbers (OCPI ``number``); the
  engine reads them through their shortest decimal representation (``22.5`` is exactly 22.5).
* ``min_duration``/``max_duration`` are whole seconds; ``step_size`` is Wh for ``ENERGY`` and
  seconds for ``TIME``/``PARKING_TIME`` (ignored for ``FLAT``); ``0`` means "no rounding".
* Every range is half-open ``[min, max)``; ``start_time``/``end_time`` may wrap past midnight.
"""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Literal

import msgspec

ComponentType = Literal["ENERGY", "TIME", "FLAT", "PARKING_TIME"]
DayOfWeek = Literal["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]

DAYS_OF_WEEK: tuple[DayOfWeek, ...] = (
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
)
COMPONENT_TYPES: tuple[ComponentType, ...] = ("ENERGY", "TIME", "FLAT", "PARKING_TIME")

# ISO 4217 active codes → minor-unit exponent (number of decimals of the minor unit).
# Funds/metal codes (XAU, XDR, ...) are left out on purpose: nobody pays for charging in them.
_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DECIMALS = "CLF UYW"
_TWO_DECIMALS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN "
    "BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR "
    "LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD "
    "PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN "
    "SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW "
    "ZWG"
)
CURRENCY_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_TWO_DECIMALS.split(), 2),
    **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
    **dict.fromkeys(_FOUR_DECIMALS.split(), 4),
}

MAX_PRICE_DECIMALS = 6
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_DATE = re.compile(r"[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]+)?")


class PriceComponent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One priced dimension of a tariff element; ``price`` excludes VAT."""

    type: ComponentType
    price: str
    step_size: int = 1


class TariffRestrictions(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True
):
    """When a tariff element applies; every field is optional and all given fields must hold."""

    start_time: str | None = None
    end_time: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    day_of_week: list[DayOfWeek] | None = None
    min_kwh: float | None = None
    max_kwh: float | None = None
    min_power: float | None = None
    max_power: float | None = None
    min_duration: int | None = None
    max_duration: int | None = None

    def has_session_limits(self) -> bool:
        """True when the element depends on the session (energy, power or duration so far)."""
        return any(
            v is not None
            for v in (
                self.min_kwh,
                self.max_kwh,
                self.min_power,
                self.max_power,
                self.min_duration,
                self.max_duration,
            )
        )


class TariffElement(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Price components plus the restrictions under which they apply."""

    price_components: list[PriceComponent]
    restrictions: TariffRestrictions | None = None


class Tariff(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A versioned tariff; ``vat_percent`` is a decimal string such as ``"19"`` or ``"7.7"``."""

    tariff_id: str
    version: int
    currency: str
    vat_percent: str
    elements: list[TariffElement]
    name: str = ""


def currency_exponent(currency: str) -> int:
    """Minor-unit exponent of an ISO 4217 code (2 for EUR, 0 for JPY); KeyError if unknown."""
    return CURRENCY_EXPONENTS[currency]


def parse_decimal(raw: str) -> Decimal | None:
    """A plain non-negative decimal string (no sign, no exponent) as a Decimal, else None."""
    if not isinstance(raw, str) or _DECIMAL.fullmatch(raw) is None:
        return None
    try:
        return Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the regex already guarantees a number
        return None


def parse_hhmm(raw: str) -> int | None:
    """Minutes after local midnight for ``"HH:MM"`` (24 h, leading zeros), else None."""
    if not isinstance(raw, str) or _HHMM.fullmatch(raw) is None:
        return None
    return int(raw[:2]) * 60 + int(raw[3:])


def parse_day(raw: str) -> date | None:
    """A ``YYYY-MM-DD`` calendar date, else None."""
    if not isinstance(raw, str) or _DATE.fullmatch(raw) is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def _check_range(
    errors: list[tuple[str, str]],
    prefix: str,
    name: str,
    lo: float | None,
    hi: float | None,
) -> None:
    for label, value in ((f"min_{name}", lo), (f"max_{name}", hi)):
        if value is None:
            continue
        if isinstance(value, bool) or not math.isfinite(value):
            errors.append((f"{prefix}.{label}", "must be a finite number"))
        elif value < 0:
            errors.append((f"{prefix}.{label}", "must not be negative"))
    if (
        lo is not None
        and hi is not None
        and math.isfinite(lo)
        and math.isfinite(hi)
        and not lo < hi
    ):
        errors.append((f"{prefix}.max_{name}", f"must be greater than min_{name}"))


def _validate_restrictions(
    errors: list[tuple[str, str]], prefix: str, r: TariffRestrictions
) -> None:
    start = end = None
    if r.start_time is not None:
        start = parse_hhmm(r.start_time)
        if start is None:
            errors.append((f"{prefix}.start_time", "must be HH:MM (24 h, e.g. 07:30)"))
    if r.end_time is not None:
        end = parse_hhmm(r.end_time)
        if end is None:
            errors.append((f"{prefix}.end_time", "must be HH:MM (24 h, e.g. 22:00)"))
    if start is not None and start == end:
        errors.append((f"{prefix}.end_time", "must differ from start_time (omit both for all day)"))
    d0 = d1 = None
    if r.start_date is not None:
        d0 = parse_day(r.start_date)
        if d0 is None:
            errors.append((f"{prefix}.start_date", "must be a date YYYY-MM-DD"))
    if r.end_date is not None:
        d1 = parse_day(r.end_date)
        if d1 is None:
            errors.append((f"{prefix}.end_date", "must be a date YYYY-MM-DD"))
    if d0 is not None and d1 is not None and not d0 < d1:
        errors.append((f"{prefix}.end_date", "must be after start_date (end is exclusive)"))
    if r.day_of_week is not None:
        seen: set[str] = set()
        for j, day in enumerate(r.day_of_week):
            if day not in DAYS_OF_WEEK:
                errors.append((f"{prefix}.day_of_week[{j}]", "must be MONDAY … SUNDAY"))
            elif day in seen:
                errors.append((f"{prefix}.day_of_week[{j}]", f"{day} is listed twice"))
            seen.add(day)
    _check_range(errors, prefix, "kwh", r.min_kwh, r.max_kwh)
    _check_range(errors, prefix, "power", r.min_power, r.max_power)
    for label, secs in (("min_duration", r.min_duration), ("max_duration", r.max_duration)):
        if secs is not None and secs < 0:
            errors.append((f"{prefix}.{label}", "must not be negative"))
    if (
        r.min_duration is not None
        and r.max_duration is not None
        and not r.min_duration < r.max_duration
    ):
        errors.append((f"{prefix}.max_duration", "must be greater than min_duration"))


def validate_tariff(t: Tariff) -> list[tuple[str, str]]:
    """Every problem with a tariff as ``(field, message)`` pairs; empty when it can be used.

    Field paths look like ``elements[1].price_components[0].price`` so that they can go
    straight into a 422 ``errors: [{field, message}]`` answer.
    """
    errors: list[tuple[str, str]] = []
    if t.currency not in CURRENCY_EXPONENTS:
        errors.append(("currency", f"unknown ISO 4217 currency code {t.currency!r}"))
    vat = parse_decimal(t.vat_percent)
    if vat is None:
        errors.append(("vat_percent", "must be a decimal string such as '19' or '7.7'"))
    elif vat > 100:
        errors.append(("vat_percent", "must be between 0 and 100"))
    elif -vat.as_tuple().exponent > MAX_PRICE_DECIMALS:  # type: ignore[operator]
        errors.append(("vat_percent", f"at most {MAX_PRICE_DECIMALS} decimals"))
    if t.version < 1:
        errors.append(("version", "must be 1 or more"))
    if not t.elements:
        errors.append(("elements", "at least one tariff element is required"))
    priced_any = False
    for i, element in enumerate(t.elements):
        prefix = f"elements[{i}]"
        if not element.price_components:
            errors.append((f"{prefix}.price_components", "at least one price component"))
        seen: set[str] = set()
        for j, pc in enumerate(element.price_components):
            where = f"{prefix}.price_components[{j}]"
            priced_any = True
            if pc.type in seen:
                errors.append((f"{where}.type", f"{pc.type} appears twice in one element"))
            seen.add(pc.type)
            price = parse_decimal(pc.price)
            if price is None:
                if pc.price.strip().startswith("-"):
                    errors.append((f"{where}.price", "must not be negative"))
                else:
                    errors.append((f"{where}.price", "must be a decimal string like '0.3900'"))
            elif -price.as_tuple().exponent > MAX_PRICE_DECIMALS:  # type: ignore[operator]
                errors.append((f"{where}.price", f"at most {MAX_PRICE_DECIMALS} decimals"))
            if pc.step_size < 0:
                errors.append((f"{where}.step_size", "must not be negative"))
        if element.restrictions is not None:
            _validate_restrictions(errors, f"{prefix}.restrictions", element.restrictions)
    if t.elements and not priced_any:
        errors.append(("elements", "no element prices anything (ENERGY, TIME, FLAT, ...)"))
    return errors
