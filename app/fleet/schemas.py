"""Fleet onboarding and fleet listing payloads."""

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


class Connectivity(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    QUARANTINED = "quarantined"
    DEGRADED = "degraded"


ChargePointId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:\-]{1,48}$")]
# OCPP 1.6 security whitepaper: the Basic-auth password is 16 to 40 characters.
OcppPassword = Annotated[str, msgspec.Meta(min_length=16, max_length=40)]
Iccid = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{18,22}$")]


class ConnectorIn(msgspec.Struct, forbid_unknown_fields=True):
    connector_no: Annotated[int, msgspec.Meta(ge=1, le=99)]
    type: ConnectorType
    power_kw: Annotated[float, msgspec.Meta(gt=0, le=2000)]


class ChargerIn(msgspec.Struct, forbid_unknown_fields=True):
    charge_point_id: ChargePointId
    ocpp_password: OcppPassword
    connectors: Annotated[list[ConnectorIn], msgspec.Meta(min_length=1, max_length=99)]
    iccid: Iccid | None = None


class SiteIn(msgspec.Struct, forbid_unknown_fields=True):
    external_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    address: Annotated[str, msgspec.Meta(max_length=500)] = ""
    chargers: Annotated[list[ChargerIn], msgspec.Meta(max_length=500)] = []


class FleetImport(msgspec.Struct, forbid_unknown_fields=True):
    """Bulk onboarding: sites with their chargers and connectors."""

    sites: list[SiteIn]


class FleetImportLoose(msgspec.Struct):
    """The envelope decoded first, so each site is validated on its own."""

    sites: list[msgspec.Raw]


class Counts(msgspec.Struct):
    sites: int = 0
    chargers: int = 0
    connectors: int = 0


class RowFieldError(msgspec.Struct):
    field: str
    message: str


class FailedSite(msgspec.Struct):
    index: int
    external_id: str | None
    errors: list[RowFieldError]


class ImportResult(msgspec.Struct):
    created: Counts
    updated: Counts
    failed: list[FailedSite]


class ConnectorOut(msgspec.Struct):
    connector_id: str
    connector_no: int
    type: str
    power_kw: float


class ChargerOut(msgspec.Struct):
    charger_id: str
    charge_point_id: str
    iccid: str | None
    connectors: list[ConnectorOut]


class SiteRecord(msgspec.Struct, frozen=True):
    """A site as stored (the row of `fleet.list_sites`)."""

    site_id: str
    external_id: str
    name: str
    address: str
    lat: float
    lon: float
    timezone: str


class SiteOut(SiteRecord, frozen=True):
    chargers: list[ChargerOut]


class SitePage(msgspec.Struct):
    items: list[SiteOut]
    next_cursor: str | None


class ChargerHealth(msgspec.Struct):
    charger_id: str
    charge_point_id: str
    site_id: str
    iccid: str | None
    connectivity: str
    connectivity_reason: str
    last_seen_at: datetime | None
    stale: bool
    sim_status: str | None
    imei: str | None


class ChargerHealthPage(msgspec.Struct):
    items: list[ChargerHealth]
    next_cursor: str | None
