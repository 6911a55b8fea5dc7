"""Phone numbers: strict E.164 in, canonical E.164 out (the `phonenumbers` library).

Only numbers that can receive an SMS (mobile, or mobile-or-fixed where the plan cannot
tell) are accepted: premium-rate, shared-cost, toll-free and VoIP ranges are what
SMS-pumping fraud sends codes to."""

from __future__ import annotations

import re

import msgspec
import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
SMS_CAPABLE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})


class InvalidPhone(ValueError):
    """Not an E.164 number at all (malformed, or no such number plan)."""


class UnsupportedPhone(ValueError):
    """A real number we will not text: not a mobile line, or a region not allowed."""


class Phone(msgspec.Struct, frozen=True):
    e164: str
    region: str  # ISO 3166-1 alpha-2, e.g. "DE"
    country_code: int  # the calling code, e.g. 49


def parse_phone(raw: str, allowed_regions: tuple[str, ...] = ()) -> Phone:
    """The canonical number, or InvalidPhone / UnsupportedPhone saying why not."""
    if not E164.fullmatch(raw):
        raise InvalidPhone("use E.164: '+', country code and number, digits only")
    try:
        number = phonenumbers.parse(raw, None)
    except NumberParseException:
        raise InvalidPhone("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid number in its country's numbering plan")
    region = phonenumbers.region_code_for_number(number) or ""
    if allowed_regions and region not in allowed_regions:
        raise UnsupportedPhone("numbers from this country cannot log in")
    if phonenumbers.number_type(number) not in SMS_CAPABLE:
        raise UnsupportedPhone("only mobile numbers can receive a login code")
    return Phone(
        e164=phonenumbers.format_number(number, PhoneNumberFormat.E164),
        region=region,
        country_code=int(number.country_code or 0),
    )
