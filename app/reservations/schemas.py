"""Payloads of `/v1/reservations` and the rows behind them."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from app.reservations.slots import HOLD_MAX_MIN, SLOT_MAX_MIN


class ReservationStatus(enum.StrEnum):
    CONFIRMED = "CONFIRMED"
    ACTIVE = "ACTIVE"
    FULFILLED = "FULFILLED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    MOVED = "MOVED"


LIVE = frozenset({ReservationStatus.CONFIRMED, ReservationStatus.ACTIVE})


class ReservationRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Without `start_at`: hold the connector from now. With it: book that slot."""

    connector_id: uuid.UUID
    start_at: (
        Annotated[
            datetime,
            msgspec.Meta(
                tz=True,
                description="When the slot begins (RFC 3339 with offset, at most 24 h "
                "ahead); leave it out to hold the connector from now",
            ),
        ]
        | None
    ) = None
    duration_min: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=SLOT_MAX_MIN,
                description=f"A hold: default 15, at most {HOLD_MAX_MIN}. A slot: default "
                "the vehicle's 20 → 80 % at min(connector, vehicle) power, 60 without a "
                "vehicle on file",
            ),
        ]
        | None
    ) = None


class Reservation(msgspec.Struct):
    """A reservation as the driver sees it."""

    reservation_id: str
    connector_id: str
    site_id: str
    status: ReservationStatus
    start_at: datetime
    expires_at: datetime
    moved_to: str | None
    charger_id: str = ""
    connector_no: int = 0
    kind: Annotated[str, msgspec.Meta(description="`hold` (from now) or `slot` (later)")] = "hold"
    cancel_reason: (
        Annotated[str, msgspec.Meta(description="`charger_offline`, `driver`, …")] | None
    ) = None
    moved_from: str | None = None
    created_at: datetime | None = None


class ReservationPage(msgspec.Struct):
    items: list[Reservation]
    next_cursor: str | None


class ReservationRow(msgspec.Struct, kw_only=True):
    """A `reservations` row (every column)."""

    reservation_id: uuid.UUID
    ocpp_reservation_id: int
    driver_id: uuid.UUID
    connector_id: uuid.UUID
    charger_id: uuid.UUID
    site_id: uuid.UUID
    connector_no: int
    kind: str
    status: str  # a ReservationStatus, or PENDING (a hold awaiting its charger; never shown)
    start_at: datetime
    expires_at: datetime
    began_at: datetime | None
    charger_reserved_at: datetime | None
    charger_released_at: datetime | None
    moved_from: uuid.UUID | None
    moved_to: uuid.UUID | None
    cancel_reason: str | None
    transaction_id: int | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    def public(self) -> Reservation:
        return Reservation(
            reservation_id=str(self.reservation_id),
            connector_id=str(self.connector_id),
            site_id=str(self.site_id),
            status=ReservationStatus(self.status),
            start_at=self.start_at,
            expires_at=self.expires_at,
            moved_to=None if self.moved_to is None else str(self.moved_to),
            charger_id=str(self.charger_id),
            connector_no=self.connector_no,
            kind=self.kind,
            cancel_reason=self.cancel_reason,
            moved_from=None if self.moved_from is None else str(self.moved_from),
            created_at=self.created_at,
        )


class ConnectorRow(msgspec.Struct, kw_only=True):
    """A connector with its charger's identity and connectivity state."""

    connector_id: uuid.UUID
    charger_id: uuid.UUID
    site_id: uuid.UUID
    connector_no: int
    type: str
    power_w: int
    status: str
    charge_point_id: str
    connectivity: str
    site_name: str
    site_timezone: str


class RequestContext(msgspec.Struct, kw_only=True):
    """The driver and (when it exists) the connector of a reservation request."""

    id_tag: str
    vehicle_battery_wh: int | None
    vehicle_max_ac_w: int | None
    vehicle_max_dc_w: int | None
    connector_id: uuid.UUID | None
    charger_id: uuid.UUID | None
    site_id: uuid.UUID | None
    connector_no: int | None
    type: str | None
    power_w: int | None
    status: str | None
    charge_point_id: str | None
    connectivity: str | None
    site_name: str | None
    site_timezone: str | None

    def connector(self) -> ConnectorRow | None:
        if self.connector_id is None:
            return None
        return msgspec.convert(
            {f: getattr(self, f) for f in ConnectorRow.__struct_fields__}, ConnectorRow
        )


class DriverRow(msgspec.Struct, kw_only=True):
    driver_id: uuid.UUID
    id_tag: str
    vehicle_battery_wh: int | None
    vehicle_max_ac_w: int | None
    vehicle_max_dc_w: int | None


class Checks(msgspec.Struct, kw_only=True):
    """What `create` checks under the driver's lock (see `reservations.checks`)."""

    holding: int
    future: int
    driver_overlap: bool
    connector_overlap: bool
    connector_pending: bool


class EndedRow(msgspec.Struct, kw_only=True):
    reservation_id: uuid.UUID
    connector_id: uuid.UUID
    driver_id: uuid.UUID


class ActivatedRow(msgspec.Struct, kw_only=True):
    reservation_id: uuid.UUID
    connector_id: uuid.UUID


class IdRow(msgspec.Struct, kw_only=True):
    reservation_id: uuid.UUID


class BeganHold(msgspec.Struct, kw_only=True):
    """What `reservation_begin_hold` answers: 'ok' and the new ids, or the rule that refused."""

    verdict: str
    reservation_id: uuid.UUID | None
    ocpp_reservation_id: int | None


class CancelledRow(ReservationRow, kw_only=True):
    """A reservation after the driver's cancel, with its charger's OCPP identity."""

    charge_point_id: str
