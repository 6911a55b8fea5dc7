"""Discovery payloads. Responses are rendered from pre-built JSON fragments by
`render.site_detail` for speed; these Structs are the contract they must match
(OpenAPI is generated from them and the tests decode every response with them)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import msgspec


class ConnectorType(enum.StrEnum):
    CCS2 = "CCS2"
    CHADEMO = "CHADEMO"
    TYPE2 = "TYPE2"
    CCS1 = "CCS1"
    NACS = "NACS"
    GBT = "GBT"


class ConnectorStatus(enum.StrEnum):
    AVAILABLE = "AVAILABLE"
    OCCUPIED = "OCCUPIED"
    RESERVED = "RESERVED"
    UNAVAILABLE = "UNAVAILABLE"
    FAULTED = "FAULTED"


class Connector(msgspec.Struct, forbid_unknown_fields=True):
    connector_id: str
    charger_id: str
    connector_no: int
    type: ConnectorType
    power_kw: float
    status: ConnectorStatus


class Price(msgspec.Struct):
    """The tariff in force now at the site (decimal strings excl. VAT, as in OCPI)."""

    tariff_id: str
    currency: str
    energy_per_kwh: str | None
    time_per_hour: str | None
    flat: str | None
    idle_per_hour: str | None
    vat_percent: str
    valid_until: datetime | None


class PriceBand(msgspec.Struct):
    from_: datetime = msgspec.field(name="from")
    to: datetime | None = None
    energy_per_kwh: str | None = None
    time_per_hour: str | None = None
    flat: str | None = None
    idle_per_hour: str | None = None


class Site(msgspec.Struct, forbid_unknown_fields=True):
    site_id: str
    name: str
    address: str
    lat: float
    lon: float
    timezone: str
    distance_m: float | None
    available_count: int
    connectors: list[Connector]
    price: Price | None


class SiteDetail(Site, forbid_unknown_fields=True):
    price_timeline: list[PriceBand] = []


class NearbyPage(msgspec.Struct, forbid_unknown_fields=True):
    items: list[Site]
    next_cursor: str | None = None


class NearbyParams(msgspec.Struct, kw_only=True):
    """Query parameters of `GET /v1/chargers/nearby` (parsed by app/core/query.py)."""

    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
    q: Annotated[str, msgspec.Meta(min_length=2, max_length=200)] | None = None
    radius_m: Annotated[int, msgspec.Meta(ge=1, le=50_000)] = 5000
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    connector_type: ConnectorType | None = None
    min_power_kw: Annotated[float, msgspec.Meta(ge=0, le=2000)] | None = None
    available_only: bool = False
