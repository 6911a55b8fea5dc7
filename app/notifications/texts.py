"""The alert texts, one short SMS per kind, in the driver's language (English and German).

Pure: `render(kind, locale, facts)` → the body. Facts are what the alert knows (see
`Facts`); a missing figure is left out of the sentence rather than shown as a blank.
Texts stay within one GSM-7 segment where they can (160 characters; `€` counts twice),
name the site, and state estimates as estimates ("about").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec
import phonenumbers

LOCALES: Final = ("en", "de")
DEFAULT_LOCALE: Final = "en"
# Regions whose numbers get German texts when the driver chose no language.
GERMAN_REGIONS: Final = frozenset({"DE", "AT", "CH", "LI", "LU"})
CURRENCY_SIGNS: Final = {"EUR": "€", "GBP": "£", "USD": "$", "CHF": "CHF"}
MINOR_DIGITS: Final = {"JPY": 0, "KRW": 0, "ISK": 0, "HUF": 2}


class Facts(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What an alert text may mention; every field is optional."""

    site_name: str | None = None
    timezone: str | None = None  # the site's IANA zone, for times of day
    energy_wh: float | None = None
    soc_percent: float | None = None
    cost_minor: int | None = None
    currency: str | None = None
    minutes: int | None = None  # an estimate (ten_minutes_left)
    at: datetime | None = None  # reservation end / slot start / when parking fees start
    battery_share_percent: float | None = None  # soc_80 without SoC: share of the battery
    parking_minor_per_hour: int | None = None
    hold_minor: int | None = None
    amount_minor: int | None = None
    connector_label: str | None = None  # reservation_moved: the twin connector
    reason: str | None = None  # session_complete: "stopped" or "full"


def locale_for(locale: str | None, phone: str | None) -> str:
    """The driver's chosen language when we have texts in it, else one guessed from the
    number's country, else English."""
    if locale in LOCALES:
        return locale
    if phone:
        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse(phone, None))
        except phonenumbers.NumberParseException:
            region = None
        if region in GERMAN_REGIONS:
            return "de"
    return DEFAULT_LOCALE


def _number(value: float, decimals: int, locale: str) -> str:
    text = f"{value:,.{decimals}f}"
    if locale == "de":
        text = text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    return text


def kwh(energy_wh: float, locale: str) -> str:
    return f"{_number(energy_wh / 1000, 1, locale)} kWh"


def money(minor: int, currency: str | None, locale: str) -> str:
    code = (currency or "EUR").upper()
    digits = MINOR_DIGITS.get(code, 2)
    amount = _number(minor / 10**digits, digits, locale)
    sign = CURRENCY_SIGNS.get(code, code)
    if locale == "de":
        return f"{amount} {sign}"
    return f"{sign}{amount}" if len(sign) == 1 else f"{sign} {amount}"


def percent(value: float, locale: str) -> str:
    return f"{_number(value, 0, locale)} %" if locale == "de" else f"{value:.0f}%"


def clock_time(at: datetime, timezone: str | None) -> str:
    try:
        zone = ZoneInfo(timezone) if timezone else None
    except (KeyError, ValueError):
        zone = None
    local = at.astimezone(zone) if zone else at
    return local.strftime("%H:%M")


# Each template is a format string over the pieces below; `{figures}` is the list of the
# figures known ("12.3 kWh, €4.56 so far, 80%"), left out with its brackets when empty.
TEMPLATES: Final[dict[str, dict[str, str]]] = {
    "session_started": {
        "en": "Voltway: charging started at {site}. We'll text you at 80% and when it's done.",
        "de": "Voltway: Laden an {site} gestartet. Wir schreiben bei 80 % und am Ende.",
    },
    "soc_80": {
        "en": "Voltway: your car is at 80% at {site}{figures}.",
        "de": "Voltway: Ihr Auto ist bei 80 % an {site}{figures}.",
    },
    "soc_80_energy": {
        "en": "Voltway: about {share} of your battery charged at {site}{figures}.",
        "de": "Voltway: etwa {share} Ihrer Batterie geladen an {site}{figures}.",
    },
    "ten_minutes_left": {
        "en": "Voltway: about {minutes} min of charging left at {site}{figures}.",
        "de": "Voltway: noch etwa {minutes} Min. Laden an {site}{figures}.",
    },
    "session_complete": {
        "en": "Voltway: charging complete at {site}{figures}. Thanks!",
        "de": "Voltway: Laden an {site} beendet{figures}. Danke!",
    },
    "session_complete_full": {
        "en": "Voltway: your car is full at {site}{figures}. Please unplug and move on.",
        "de": "Voltway: Ihr Auto ist voll an {site}{figures}. Bitte abstecken.",
    },
    "idle_fee_warning": {
        "en": "Voltway: charging has finished at {site}. Parking costs {price}/h from {time}. "
        "Please move your car.",
        "de": "Voltway: Laden an {site} beendet. Ab {time} kostet Parken {price}/h. "
        "Bitte Auto umparken.",
    },
    "reservation_expiring": {
        "en": "Voltway: your reservation at {site} ends at {time}.",
        "de": "Voltway: Ihre Reservierung an {site} endet um {time}.",
    },
    "reservation_moved": {
        "en": "Voltway: a charger at {site} went offline. Your reservation moved to "
        "{connector} at the same site and time.",
        "de": "Voltway: Ein Ladepunkt an {site} ist offline. Ihre Reservierung wurde auf "
        "{connector} am selben Ort und zur selben Zeit verlegt.",
    },
    "reservation_cancelled": {
        "en": "Voltway: the charger at {site} went offline and no other is free. "
        "Your reservation{when} is cancelled.",
        "de": "Voltway: Der Ladepunkt an {site} ist offline, kein anderer ist frei. "
        "Ihre Reservierung{when} ist storniert.",
    },
    "hold_exhausted": {
        "en": "Voltway: charging at {site} stopped: the cost{cost} reached your card hold{hold}.",
        "de": "Voltway: Laden an {site} gestoppt: die Kosten{cost} erreichen die "
        "Kartenreservierung{hold}.",
    },
    "payment_failed": {
        "en": "Voltway: the payment{amount} for your charge at {site} failed. "
        "Please update your card in the app.",
        "de": "Voltway: Die Zahlung{amount} für Ihr Laden an {site} ist fehlgeschlagen. "
        "Bitte Karte in der App prüfen.",
    },
}
WORDS: Final[dict[str, dict[str, str]]] = {
    "so_far": {"en": "so far", "de": "bisher"},
    "a_site": {"en": "your charger", "de": "Ihrem Ladepunkt"},
    "a_connector": {"en": "another connector", "de": "einen anderen Ladepunkt"},
    "for": {"en": "for", "de": "für"},
}


def _figures(facts: Facts, locale: str, *, soc: bool, cost_label: bool) -> str:
    parts: list[str] = []
    if facts.energy_wh is not None:
        parts.append(kwh(facts.energy_wh, locale))
    if facts.cost_minor is not None:
        cost = money(facts.cost_minor, facts.currency, locale)
        parts.append(f"{cost} {WORDS['so_far'][locale]}" if cost_label else cost)
    if soc and facts.soc_percent is not None:
        parts.append(percent(facts.soc_percent, locale))
    return f" ({', '.join(parts)})" if parts else ""


def render(kind: str, locale: str, facts: Facts | dict[str, Any] | None = None) -> str:
    """The SMS body of an alert of `kind` in `locale` (English when we have no such texts)."""
    if locale not in LOCALES:
        locale = DEFAULT_LOCALE
    f = facts if isinstance(facts, Facts) else msgspec.convert(facts or {}, Facts)
    site = f.site_name or WORDS["a_site"][locale]
    template = kind
    values: dict[str, str] = {"site": site}
    if kind == "soc_80":
        if f.soc_percent is None and f.battery_share_percent is not None:
            template = "soc_80_energy"
            values["share"] = percent(f.battery_share_percent, locale)
        values["figures"] = _figures(f, locale, soc=False, cost_label=True)
    elif kind == "ten_minutes_left":
        values["minutes"] = str(f.minutes if f.minutes is not None else 10)
        values["figures"] = _figures(f, locale, soc=True, cost_label=True)
    elif kind == "session_complete":
        if f.reason == "full":
            template = "session_complete_full"
        values["figures"] = _figures(f, locale, soc=f.reason == "full", cost_label=False)
    elif kind == "idle_fee_warning":
        values["price"] = money(f.parking_minor_per_hour or 0, f.currency, locale)
        values["time"] = clock_time(f.at, f.timezone) if f.at else "now"
    elif kind == "reservation_expiring":
        values["time"] = clock_time(f.at, f.timezone) if f.at else "soon"
    elif kind == "reservation_moved":
        values["connector"] = f.connector_label or WORDS["a_connector"][locale]
    elif kind == "reservation_cancelled":
        values["when"] = f" {WORDS['for'][locale]} {clock_time(f.at, f.timezone)}" if f.at else ""
    elif kind == "hold_exhausted":
        values["cost"] = f" ({money(f.cost_minor, f.currency, locale)})" if f.cost_minor else ""
        values["hold"] = f" ({money(f.hold_minor, f.currency, locale)})" if f.hold_minor else ""
    elif kind == "payment_failed":
        amount = f.amount_minor if f.amount_minor is not None else f.cost_minor
        values["amount"] = f" ({money(amount, f.currency, locale)})" if amount else ""
    try:
        return TEMPLATES[template][locale].format(**values)
    except KeyError:
        raise ValueError(f"no text for alert kind {kind!r}") from None


def status_reply(locale: str, facts: Facts | None) -> str:
    """The answer to an inbound `STATUS`: the live session's figures, or that there is none."""
    if locale not in LOCALES:
        locale = DEFAULT_LOCALE
    if facts is None:
        return {
            "en": "Voltway: you have no charging session right now.",
            "de": "Voltway: Sie laden gerade nicht.",
        }[locale]
    site = facts.site_name or WORDS["a_site"][locale]
    figures = _figures(facts, locale, soc=True, cost_label=True)
    return {
        "en": f"Voltway: charging at {site}{figures}.",
        "de": f"Voltway: Laden an {site}{figures}.",
    }[locale]


REPLIES: Final[dict[str, dict[str, str]]] = {
    "stop": {
        "en": "Voltway: you will get no more SMS alerts. Reply START to turn them back on.",
        "de": "Voltway: Sie erhalten keine SMS-Hinweise mehr. Mit START wieder einschalten.",
    },
    "start": {
        "en": "Voltway: SMS alerts are on again. Reply STOP to turn them off.",
        "de": "Voltway: SMS-Hinweise sind wieder an. Mit STOP ausschalten.",
    },
    "help": {
        "en": "Voltway charging alerts. Reply STATUS for your live session, STOP to end "
        "alerts, START to resume. Support: in the app.",
        "de": "Voltway Lade-Hinweise. STATUS: aktuelles Laden, STOP: keine Hinweise, "
        "START: wieder an. Hilfe: in der App.",
    },
}


def reply(key: str, locale: str) -> str:
    return REPLIES[key][locale if locale in LOCALES else DEFAULT_LOCALE]
