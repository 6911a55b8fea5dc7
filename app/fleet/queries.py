"""Typed functions over `sql/queries/fleet.sql`: one per block, keyword arguments, rows as
Structs. The bulk statements take parallel arrays (one round trip per table)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec

from app.core.sql import Executor, fetch_all, fetch_one
from app.fleet.schemas import ChargerHealth, ConnectorOut, SiteRecord


class Upserted(msgspec.Struct, frozen=True):
    """Rows a bulk upsert inserted, and rows it changed (unchanged rows are not touched)."""

    inserted: int
    updated: int


class IccidHolder(msgspec.Struct, frozen=True):
    charge_point_id: str
    iccid: str


class _Ids(msgspec.Struct, frozen=True):
    keys: list[str]
    ids: list[uuid.UUID]


class SiteCharger(msgspec.Struct, frozen=True):
    """A charger of a listed site, with its connectors."""

    site_id: uuid.UUID
    charger_id: str
    charge_point_id: str
    iccid: str | None
    connectors: list[ConnectorOut]


def _upserted(row: Upserted | None) -> Upserted:
    return row or Upserted(inserted=0, updated=0)


def _id_by_key(ids: _Ids | None) -> dict[str, uuid.UUID]:
    return dict(zip(ids.keys, ids.ids, strict=True)) if ids else {}


async def upsert_sites(
    db: Executor,
    *,
    external_ids: Sequence[str],
    names: Sequence[str],
    addresses: Sequence[str],
    lats: Sequence[float],
    lons: Sequence[float],
    timezones: Sequence[str],
) -> Upserted:
    return _upserted(
        await fetch_one(
            db,
            "fleet.upsert_sites",
            Upserted,
            external_ids,
            names,
            addresses,
            lats,
            lons,
            timezones,
        )
    )


async def site_ids_by_external_id(
    db: Executor, *, external_ids: Sequence[str]
) -> dict[str, uuid.UUID]:
    return _id_by_key(await fetch_one(db, "fleet.site_ids_by_external_id", _Ids, external_ids))


async def chargers_by_iccid(db: Executor, *, iccids: Sequence[str]) -> list[IccidHolder]:
    return await fetch_all(db, "fleet.chargers_by_iccid", IccidHolder, iccids)


async def upsert_chargers(
    db: Executor,
    *,
    charge_point_ids: Sequence[str],
    site_ids: Sequence[uuid.UUID],
    password_hashes: Sequence[str],
    iccids: Sequence[str | None],
) -> Upserted:
    return _upserted(
        await fetch_one(
            db,
            "fleet.upsert_chargers",
            Upserted,
            charge_point_ids,
            site_ids,
            password_hashes,
            iccids,
        )
    )


async def charger_ids_by_cpid(
    db: Executor, *, charge_point_ids: Sequence[str]
) -> dict[str, uuid.UUID]:
    return _id_by_key(await fetch_one(db, "fleet.charger_ids_by_cpid", _Ids, charge_point_ids))


async def upsert_connectors(
    db: Executor,
    *,
    charger_ids: Sequence[uuid.UUID],
    site_ids: Sequence[uuid.UUID],
    connector_nos: Sequence[int],
    types: Sequence[str],
    powers_w: Sequence[int],
) -> Upserted:
    return _upserted(
        await fetch_one(
            db,
            "fleet.upsert_connectors",
            Upserted,
            charger_ids,
            site_ids,
            connector_nos,
            types,
            powers_w,
        )
    )


async def list_sites(
    db: Executor, *, external_id: str | None, after: str | None, limit: int
) -> list[SiteRecord]:
    """Ordered by external_id, after the keyset `after` when given."""
    return await fetch_all(db, "fleet.list_sites", SiteRecord, external_id, after, limit)


async def chargers_of_sites(db: Executor, *, site_ids: Sequence[uuid.UUID]) -> list[SiteCharger]:
    return await fetch_all(db, "fleet.chargers_of_sites", SiteCharger, site_ids)


async def list_charger_health(
    db: Executor, *, connectivity: str | None, after: str | None, limit: int
) -> list[ChargerHealth]:
    """Ordered by charge_point_id, after the keyset `after` when given."""
    return await fetch_all(
        db, "fleet.list_charger_health", ChargerHealth, connectivity, after, limit
    )
