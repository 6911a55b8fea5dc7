"""Payloads of the session routes and the session rows as the service sees them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from app.payments.schemas import PaymentSummary
from app.sessions.billing import Receipt

SessionStatus = Literal["STARTING", "CHARGING", "SUSPENDED", "FINISHING", "COMPLETED", "FAILED"]

OpaqueId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class SessionStart(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Start charging on a connector (optionally on the driver's reservation of it)."""

    connector_id: OpaqueId
    reservation_id: OpaqueId | None = None


class SessionStarted(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    status: SessionStatus
    preauth_minor: int
    currency: str
    tariff_id: str
    tariff_version: int
    connector_id: str
    transaction_id: int


class SessionView(msgspec.Struct, frozen=True, kw_only=True):
    session_id: str
    status: SessionStatus
    connector_id: str | None
    site_id: str
    reservation_id: str | None
    started_at: datetime
    ended_at: datetime | None
    energy_kwh: float
    power_kw: float | None
    soc_percent: float | None
    cost_so_far_minor: int | None
    estimated_minutes_remaining: int | None
    """About how long until the battery is full (from the power curve); null = unknown."""
    currency: str | None
    tariff_id: str | None
    tariff_version: int | None
    payment: PaymentSummary
    receipt: Receipt | None
    estimated_minutes_to_80: int | None = None
    charger_id: str = ""
    connector_no: int = 0
    stop_requested_at: datetime | None = None
    failure_reason: str | None = None


class SessionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SessionView]
    next_cursor: str | None = None


class AdminSessionView(msgspec.Struct, frozen=True, kw_only=True):
    """A session as operators see it: who, where, what state, and its payment."""

    session_id: str
    status: SessionStatus
    origin: str
    driver_id: str | None
    charge_point_id: str
    charger_id: str
    connector_id: str | None
    connector_no: int
    site_id: str
    transaction_id: int
    started_at: datetime
    ended_at: datetime | None
    energy_kwh: float
    currency: str | None
    tariff_id: str | None
    tariff_version: int | None
    total_minor: int | None
    payment: PaymentSummary
    failure_reason: str | None
    billed_at: datetime | None


class AdminSessionPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AdminSessionView]
    next_cursor: str | None = None


# --- Rows ----------------------------------------------------------------------------


class StartConnector(msgspec.Struct, kw_only=True):
    connector_id: uuid.UUID
    connector_no: int
    connector_status: str
    power_w: int
    charger_id: uuid.UUID
    charge_point_id: str
    site_id: uuid.UUID
    timezone: str
    connectivity: str
    id_tag: str | None


class NewSession(msgspec.Struct, kw_only=True):
    """A session just written (insert_starting, begin_held) with its OCPP transactionId."""

    session_id: uuid.UUID
    transaction_id: int


class ActiveSession(msgspec.Struct, kw_only=True):
    session_id: uuid.UUID
    status: str
    charger_id: uuid.UUID
    preauth_minor: int | None


class HoldTotal(msgspec.Struct, kw_only=True):
    preauth_minor: int
    holds: int


class LockedSession(msgspec.Struct, kw_only=True):
    session_id: uuid.UUID
    status: str
    preauth_minor: int | None
    holds: int
    billed_at: datetime | None
    hold_exhausted_at: datetime | None


class SessionRow(msgspec.Struct, kw_only=True):
    session_id: uuid.UUID
    transaction_id: int
    origin: str
    status: str
    driver_id: uuid.UUID | None
    id_tag: str
    charger_id: uuid.UUID
    charge_point_id: str
    connector_id: uuid.UUID | None
    connector_no: int
    site_id: uuid.UUID
    timezone: str
    connector_power_w: int | None
    reservation_uuid: uuid.UUID | None
    started_at: datetime
    ended_at: datetime | None
    meter_start_wh: int
    meter_stop_wh: int | None
    energy_wh: int
    power_w: int | None
    soc_percent: float | None
    last_meter_at: datetime | None
    charging_ended_at: datetime | None
    tariff_id: uuid.UUID | None
    tariff_version: int | None
    currency: str | None
    preauth_minor: int | None
    holds: int
    subtotal_minor: int | None
    vat_minor: int | None
    total_minor: int | None
    receipt: dict[str, Any] | None
    billed_at: datetime | None
    stop_requested_at: datetime | None
    hold_exhausted_at: datetime | None
    failure_reason: str | None
    created_at: datetime
    vehicle_battery_wh: int | None
    vehicle_max_ac_w: int | None
    vehicle_max_dc_w: int | None
    connector_type: str | None


class ConnectorRef(msgspec.Struct, kw_only=True):
    connector_id: uuid.UUID
    connector_no: int


class SessionRef(msgspec.Struct, kw_only=True):
    session_id: uuid.UUID


class ReadingRow(msgspec.Struct, kw_only=True):
    at: datetime
    wh: float


class SocRow(msgspec.Struct, kw_only=True):
    at: datetime
    soc: float
