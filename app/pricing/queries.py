"""Typed functions over `sql/queries/pricing.sql`: one per block, keyword arguments, rows as
Structs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from app.core.sql import Executor, execute, fetch_all, fetch_one, fetch_returned, fetch_val
from app.pricing.schemas import AssignmentItem
from app.pricing.tariff import Tariff


class TariffRow(Tariff, frozen=True, kw_only=True):
    """A stored tariff version with when it and its tariff were created (admin API)."""

    created_at: datetime
    tariff_created_at: datetime


class SiteAssignmentRow(msgspec.Struct, frozen=True):
    """A site-level assignment with the site's zone (PriceBook)."""

    assignment_id: int
    site_id: uuid.UUID
    tariff_id: str
    effective_from: datetime
    timezone: str


class ScheduleGroup(msgspec.Struct, frozen=True):
    """Sites sharing one schedule: zone, assignments in order, the sites as 16-byte UUIDs."""

    timezone: str
    effs: list[float]
    tariff_ids: list[str]
    site_ids: bytes


class AssignmentCreated(msgspec.Struct, frozen=True):
    assignment_id: int
    created_at: datetime


class ConnectorPlace(msgspec.Struct, frozen=True):
    """A connector with its charger, rated power and the site's zone."""

    connector_id: uuid.UUID
    charger_id: uuid.UUID
    site_id: uuid.UUID
    type: str
    power_w: int
    timezone: str


class ConnectorOwner(msgspec.Struct, frozen=True):
    charger_id: uuid.UUID
    site_id: uuid.UUID


class AssignmentRow(msgspec.Struct, frozen=True):
    """An assignment of a charger or its site, for "which tariff applies when"."""

    assignment_id: int
    tariff_id: str
    charger_level: bool
    effective_from: datetime


class VehicleRow(msgspec.Struct, frozen=True):
    vehicle_battery_wh: int | None
    vehicle_max_ac_w: int | None
    vehicle_max_dc_w: int | None


# ---- tariffs and their versions ---------------------------------------------------------


async def insert_tariff(db: Executor, *, now: datetime) -> uuid.UUID:
    tariff_id: uuid.UUID = await fetch_val(db, "pricing.insert_tariff", now)
    return tariff_id


async def insert_version(
    db: Executor,
    *,
    tariff_id: uuid.UUID,
    version: int,
    name: str,
    currency: str,
    vat_percent: str,
    elements: list[Any],
    created_at: datetime,
    created_by: str,
) -> None:
    await execute(
        db,
        "pricing.insert_version",
        tariff_id,
        version,
        name,
        currency,
        vat_percent,
        elements,
        created_at,
        created_by,
    )


async def lock_tariff(db: Executor, *, tariff_id: uuid.UUID) -> int | None:
    """The current version, the tariff row locked; None for an unknown tariff."""
    current: int | None = await fetch_val(db, "pricing.lock_tariff", tariff_id)
    return current


async def set_current_version(
    db: Executor, *, tariff_id: uuid.UUID, version: int, now: datetime
) -> None:
    await execute(db, "pricing.set_current_version", tariff_id, version, now)


async def get_version(
    db: Executor, *, tariff_id: uuid.UUID, version: int | None
) -> TariffRow | None:
    """One version of a tariff (`version` None = the current one)."""
    return await fetch_one(db, "pricing.get_version", TariffRow, tariff_id, version)


async def list_tariffs(
    db: Executor, *, after_at: datetime | None, after_id: uuid.UUID | None, limit: int
) -> list[TariffRow]:
    """Current versions, newest tariff first, after the keyset when given."""
    return await fetch_all(db, "pricing.list_tariffs", TariffRow, after_at, after_id, limit)


async def current_versions(db: Executor, *, tariff_ids: Sequence[uuid.UUID] | None) -> list[Tariff]:
    """The current version of every tariff (None) or of the given ones."""
    return await fetch_all(db, "pricing.current_versions", Tariff, tariff_ids)


async def tariff_exists(db: Executor, *, tariff_id: uuid.UUID) -> bool:
    return bool(await fetch_val(db, "pricing.tariff_exists", tariff_id))


# ---- assignments ------------------------------------------------------------------------


async def site_exists(db: Executor, *, site_id: uuid.UUID) -> bool:
    return bool(await fetch_val(db, "pricing.site_exists", site_id))


async def charger_exists(db: Executor, *, charger_id: uuid.UUID) -> bool:
    return bool(await fetch_val(db, "pricing.charger_exists", charger_id))


async def insert_assignment(
    db: Executor,
    *,
    tariff_id: uuid.UUID,
    site_id: uuid.UUID | None,
    charger_id: uuid.UUID | None,
    effective_from: datetime,
    now: datetime,
    created_by: str,
) -> AssignmentCreated:
    return await fetch_returned(
        db,
        "pricing.insert_assignment",
        AssignmentCreated,
        tariff_id,
        site_id,
        charger_id,
        effective_from,
        now,
        created_by,
    )


async def site_assignments(
    db: Executor, *, assignment_ids: Sequence[int] | None
) -> list[SiteAssignmentRow]:
    """Site-level assignments (None = all of them) with the site's zone."""
    return await fetch_all(db, "pricing.site_assignments", SiteAssignmentRow, assignment_ids)


async def site_schedules(db: Executor) -> list[ScheduleGroup]:
    return await fetch_all(db, "pricing.site_schedules", ScheduleGroup)


async def assignments_for(
    db: Executor, *, charger_id: uuid.UUID, site_id: uuid.UUID
) -> list[AssignmentRow]:
    """Every assignment of the charger or its site, oldest first."""
    return await fetch_all(db, "pricing.assignments_for", AssignmentRow, charger_id, site_id)


async def list_assignments(
    db: Executor,
    *,
    tariff_id: uuid.UUID | None,
    site_id: uuid.UUID | None,
    charger_id: uuid.UUID | None,
    after_from: datetime | None,
    after_id: int | None,
    now: datetime,
    limit: int,
) -> list[AssignmentItem]:
    """Latest effective_from first, after the keyset when given; `state` as of `now`."""
    return await fetch_all(
        db,
        "pricing.list_assignments",
        AssignmentItem,
        tariff_id,
        site_id,
        charger_id,
        after_from,
        after_id,
        now,
        limit,
    )


# ---- connectors and drivers (quotes, sessions) ------------------------------------------


async def connector_for_quote(
    db: Executor, *, connector_id: uuid.UUID, site_id: uuid.UUID
) -> ConnectorPlace | None:
    return await fetch_one(db, "pricing.connector_for_quote", ConnectorPlace, connector_id, site_id)


async def connector_owner(db: Executor, *, connector_id: uuid.UUID) -> ConnectorOwner | None:
    return await fetch_one(db, "pricing.connector_owner", ConnectorOwner, connector_id)


async def driver_vehicle(db: Executor, *, driver_id: uuid.UUID) -> VehicleRow | None:
    return await fetch_one(db, "pricing.driver_vehicle", VehicleRow, driver_id)


# ---- demo seed --------------------------------------------------------------------------


async def demo_tariff_by_name(db: Executor, *, name: str) -> uuid.UUID | None:
    tariff_id: uuid.UUID | None = await fetch_val(db, "pricing.demo_tariff_by_name", name)
    return tariff_id


async def demo_assign_missing(
    db: Executor, *, tariff_id: uuid.UUID, external_id_prefix: str, effective_from: datetime
) -> int:
    """How many sites got the tariff."""
    return await execute(
        db, "pricing.demo_assign_missing", tariff_id, external_id_prefix, effective_from
    )
