"""PriceBook.site_price_json, the call nearby search makes per site: the JSON of the
`price` block and until when it holds; cached per site, invalidated by `version`."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from app.pricing.book import PriceBook
from app.pricing.engine import compile_tariff
from app.pricing.tariff import Tariff, TariffElement

BERLIN = ZoneInfo("Europe/Berlin")
NOON = datetime(2026, 11, 25, 11, tzinfo=UTC).timestamp()  # 12:00 in Berlin


def tariff(tid: str, elements: list[dict[str, Any]]) -> Tariff:
    return Tariff(
        tariff_id=tid,
        version=1,
        currency="EUR",
        vat_percent="19",
        elements=msgspec.convert(elements, list[TariffElement]),
    )


EVENING = tariff(
    "evening",
    [
        {
            "price_components": [{"type": "ENERGY", "price": "0.60"}],
            "restrictions": {"start_time": "18:00", "end_time": "22:00"},
        },
        {"price_components": [{"type": "ENERGY", "price": "0.40"}]},
    ],
)
FLAT = tariff("flat", [{"price_components": [{"type": "FLAT", "price": "1.00"}]}])


def book_with(*assignments: tuple[bytes, float, str]) -> PriceBook:
    book = PriceBook()
    book.tariffs = {t.tariff_id: compile_tariff(t) for t in (EVENING, FLAT)}
    for site, eff, tid in assignments:
        book.assign(site, BERLIN, eff, tid)
    book.version = 1
    return book


def test_a_site_without_a_tariff_is_null_forever() -> None:
    book = book_with()
    assert book.site_price_json(uuid.uuid4().bytes, NOON) == (b"null", math.inf)


def test_price_now_valid_until_the_next_band_and_cached() -> None:
    site = uuid.uuid4().bytes
    book = book_with((site, 0.0, "evening"))
    body, until = book.site_price_json(site, NOON)
    price = msgspec.json.decode(body)
    assert price["energy_per_kwh"] == "0.40"
    assert price["valid_until"] == "2026-11-25T17:00:00Z"  # 18:00 local
    assert until == datetime(2026, 11, 25, 17, tzinfo=UTC).timestamp()
    again, _ = book.site_price_json(site, NOON + 60)
    assert again is body  # answered from the cache
    evening, until = book.site_price_json(site, until)
    assert msgspec.json.decode(evening)["energy_per_kwh"] == "0.60"
    assert until == datetime(2026, 11, 25, 21, tzinfo=UTC).timestamp()
    # a clock that goes back is answered for its own time, not from the cache
    assert book.site_price_json(site, NOON)[0] == body


def test_sites_with_the_same_assignments_share_one_schedule_and_answer() -> None:
    sites = [uuid.uuid4().bytes for _ in range(3)]
    book = book_with(*[(s, 0.0, "evening") for s in sites], (sites[2], NOON + 60, "flat"))
    assert book.sites[sites[0]] is book.sites[sites[1]]
    assert book.sites[sites[2]] is not book.sites[sites[0]]
    first, _ = book.site_price_json(sites[0], NOON)
    assert book.site_price_json(sites[1], NOON)[0] is first
    # the third site switches to the flat tariff a minute from now
    assert book.site_price_json(sites[2], NOON) == (
        first.replace(b"2026-11-25T17:00:00Z", b"2026-11-25T11:01:00Z"),
        NOON + 60,
    )


def test_a_future_assignment_ends_the_current_price() -> None:
    site = uuid.uuid4().bytes
    switch = NOON + 1800
    book = book_with((site, 0.0, "evening"), (site, switch, "flat"))
    body, until = book.site_price_json(site, NOON)
    assert until == switch
    assert msgspec.json.decode(body)["valid_until"] == "2026-11-25T11:30:00Z"
    body, until = book.site_price_json(site, switch)
    price = msgspec.json.decode(body)
    assert (price["tariff_id"], price["flat"], price["valid_until"]) == ("flat", "1.00", None)
    assert until == math.inf


def test_a_new_version_invalidates_cached_answers() -> None:
    site = uuid.uuid4().bytes
    book = book_with((site, 0.0, "evening"))
    before, _ = book.site_price_json(site, NOON)
    cheaper = msgspec.structs.replace(
        EVENING,
        version=2,
        elements=msgspec.convert(
            [{"price_components": [{"type": "ENERGY", "price": "0.35"}]}], list[TariffElement]
        ),
    )
    book.tariffs["evening"] = compile_tariff(cheaper)
    assert book.site_price_json(site, NOON)[0] is before  # same version: still cached
    version = book.version
    book._bump()
    assert book.version == version + 1
    after, until = book.site_price_json(site, NOON)
    assert msgspec.json.decode(after)["energy_per_kwh"] == "0.35"
    assert until == math.inf


def test_compact_site_schedules_find_every_key_including_trailing_nul_bytes() -> None:
    """After a bulk load the book keeps site keys in a sorted S16 array: a UUID ending in
    0x00 (1 in 256) must still be found, single lookups and vectorised ones alike, and
    assignments made after the load (the overlay) win."""
    import os

    import numpy as np

    from app.pricing.book import Schedule, SiteSchedules

    zone = ZoneInfo("Europe/Berlin")
    a, b = Schedule(zone, ((0.0, "a"),)), Schedule(zone, ((0.0, "b"),))
    keys = [os.urandom(15) + b"\x00", b"\x00" * 16, *(os.urandom(16) for _ in range(200))]
    table = SiteSchedules({k: (a if i % 2 else b) for i, k in enumerate(keys)})
    assert len(table) == len(keys)
    for i, k in enumerate(keys):
        assert table.get(k) is (a if i % 2 else b)
    assert table.get(os.urandom(16)) is None
    late = os.urandom(15) + b"\x00"
    table[late] = a
    table[keys[0]] = a  # re-assigned after the load
    raw = np.frombuffer(b"".join([*keys, late]), dtype=np.uint8).reshape(-1, 16)
    found = table.lookup(raw)
    assert found[0] is a  # the overlay wins
    assert found[1] is a
    assert found[-1] is a
    assert [found[i] for i in range(2, len(keys))] == [
        (a if i % 2 else b) for i in range(2, len(keys))
    ]
    assert len(table) == len(keys) + 1
