"""What the central system does with each OCPP message: plain SQL on the pool, one short
transaction per message (INTEGRATIONS.md §1-2)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from app.core.sql import Q
from app.fleet.service import verify_ocpp_password

log = logging.getLogger("app.chargers")

# OCPP ChargePointStatus → connectors.status (INTEGRATIONS.md §1).
CONNECTOR_STATUS: Final[dict[str, str]] = {
    "Available": "AVAILABLE",
    "Preparing": "OCCUPIED",
    "Charging": "OCCUPIED",
    "SuspendedEV": "OCCUPIED",
    "SuspendedEVSE": "OCCUPIED",
    "Finishing": "OCCUPIED",
    "Reserved": "RESERVED",
    "Unavailable": "UNAVAILABLE",
    "Faulted": "FAULTED",
}
# The open session on a connector follows these OCPP statuses.
SESSION_STATUS: Final[dict[str, str]] = {
    "Charging": "CHARGING",
    "SuspendedEV": "SUSPENDED",
    "SuspendedEVSE": "SUSPENDED",
    "Finishing": "FINISHING",
}
# Reasons the OCPP link itself decides; platform reasons (SIM, data session) and
# quarantines are left alone by a boot or heartbeat.
OCPP_REASONS: Final = frozenset({"ok", "never_connected", "socket_down", "heartbeat_missed"})
SOURCE: Final = "ocpp"


@dataclass(frozen=True, slots=True)
class ChargerIdentity:
    charger_id: uuid.UUID
    charge_point_id: str
    iccid: str | None


async def authenticate(
    pool: asyncpg.Pool, charge_point_id: str, password: str | None
) -> ChargerIdentity | None:
    """The charger when the id exists and the password matches, else None."""
    row = await pool.fetchrow(Q("chargers.credentials"), charge_point_id)
    if row is None or password is None:
        return None
    if not verify_ocpp_password(charge_point_id, password, row["ocpp_password_hash"]):
        return None
    return ChargerIdentity(row["charger_id"], charge_point_id, row["iccid"])


async def _set_state(
    conn: asyncpg.Connection,
    charger_id: uuid.UUID,
    state: str,
    reason: str,
    *,
    seen_at: datetime | None,
    only_from_ocpp_reasons: bool,
) -> bool:
    """Change the verdict (recording the change); False when a non-OCPP verdict stands."""
    current = await conn.fetchrow(Q("chargers.connectivity_for_update"), charger_id)
    if current is None:
        return False
    if only_from_ocpp_reasons and current["reason"] not in OCPP_REASONS:
        if seen_at is not None:
            await conn.execute(Q("chargers.touch"), charger_id, seen_at)
        return False
    await conn.execute(Q("chargers.set_connectivity"), charger_id, state, reason, seen_at)
    if (current["state"], current["reason"]) != (state, reason):
        await conn.execute(
            Q("chargers.record_connectivity_change"),
            charger_id,
            current["state"],
            state,
            reason,
            SOURCE,
        )
    return True


async def connected(pool: asyncpg.Pool, charger: ChargerIdentity, connection_id: uuid.UUID) -> None:
    await pool.execute(Q("chargers.claim_link"), charger.charger_id, connection_id)


async def disconnected(
    pool: asyncpg.Pool, charger: ChargerIdentity, connection_id: uuid.UUID
) -> bool:
    """Mark this connection closed; True when it was still the charger's current one."""
    return bool(await pool.fetchval(Q("chargers.release_link"), charger.charger_id, connection_id))


async def went_offline(
    pool: asyncpg.Pool, charger: ChargerIdentity, connection_id: uuid.UUID
) -> bool:
    """After the grace period: offline/socket_down unless a newer connection exists."""
    async with pool.acquire() as conn, conn.transaction():
        still = await conn.fetchval(
            Q("chargers.link_is_current_and_down"), charger.charger_id, connection_id
        )
        if not still:
            return False
        return await _set_state(
            conn,
            charger.charger_id,
            "offline",
            "socket_down",
            seen_at=None,
            only_from_ocpp_reasons=True,
        )


async def boot(
    pool: asyncpg.Pool, charger: ChargerIdentity, payload: dict[str, Any], now: datetime
) -> str:
    """Bind or check the SIM, then set the verdict; returns the resulting state."""
    iccid = payload.get("iccid")
    info = {k: v for k, v in payload.items() if isinstance(v, str)}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(Q("chargers.record_boot"), charger.charger_id, iccid, info)
        registered = await conn.fetchval(
            "SELECT iccid FROM chargers WHERE charger_id = $1", charger.charger_id
        )
        mismatch = False
        if iccid and registered is None:
            try:
                async with conn.transaction():
                    await conn.execute(Q("chargers.bind_iccid"), charger.charger_id, iccid)
            except asyncpg.UniqueViolationError:  # that SIM belongs to another charger
                mismatch = True
        elif iccid and registered != iccid:
            mismatch = True
        if mismatch:
            log.warning(
                "ICCID mismatch at boot of %s: registered %s, reported %s",
                charger.charge_point_id,
                registered,
                iccid,
            )
            await _set_state(
                conn,
                charger.charger_id,
                "quarantined",
                "iccid_mismatch",
                seen_at=now,
                only_from_ocpp_reasons=False,
            )
            return "quarantined"
        await _set_state(
            conn, charger.charger_id, "online", "ok", seen_at=now, only_from_ocpp_reasons=True
        )
        state = await conn.fetchval(
            "SELECT state FROM charger_connectivity WHERE charger_id = $1", charger.charger_id
        )
        return str(state)


async def heartbeat(pool: asyncpg.Pool, charger: ChargerIdentity, now: datetime) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _set_state(
            conn, charger.charger_id, "online", "ok", seen_at=now, only_from_ocpp_reasons=True
        )


async def status(
    pool: asyncpg.Pool,
    charger: ChargerIdentity,
    connector_no: int,
    ocpp_status: str,
    at: datetime,
) -> None:
    mapped = CONNECTOR_STATUS.get(ocpp_status)
    if mapped is None:
        return
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(Q("chargers.touch"), charger.charger_id, datetime.now(UTC))
        if connector_no == 0:
            # The whole charger: only "out of service" statuses apply to every connector;
            # each connector reports its own Available/Charging/...
            if mapped in ("UNAVAILABLE", "FAULTED"):
                await conn.execute(
                    Q("chargers.set_all_connector_statuses"), charger.charger_id, mapped, at
                )
            return
        await conn.execute(
            Q("chargers.set_connector_status"), charger.charger_id, connector_no, mapped, at
        )
        session_status = SESSION_STATUS.get(ocpp_status)
        if session_status is not None:
            await conn.execute(
                Q("chargers.set_open_session_status"),
                charger.charger_id,
                connector_no,
                session_status,
            )


async def authorize(pool: asyncpg.Pool, id_tag: str) -> str:
    driver = await pool.fetchval(Q("chargers.driver_by_id_tag"), id_tag)
    return "Accepted" if driver is not None else "Invalid"


async def start_transaction(
    pool: asyncpg.Pool,
    charger: ChargerIdentity,
    *,
    connector_no: int,
    id_tag: str,
    meter_start: int,
    started_at: datetime,
    reservation_id: int | None,
) -> tuple[int, str]:
    """Open a session; returns (transactionId, idTagInfo.status)."""
    async with pool.acquire() as conn, conn.transaction():
        driver_id = await conn.fetchval(Q("chargers.driver_by_id_tag"), id_tag)
        connector_id = await conn.fetchval(
            Q("chargers.connector_of_charger"), charger.charger_id, connector_no
        )
        tag_status = "Accepted" if driver_id is not None and connector_id is not None else "Invalid"
        row = await conn.fetchrow(
            Q("chargers.start_session"),
            charger.charger_id,
            connector_id,
            connector_no,
            id_tag,
            tag_status,
            driver_id,
            reservation_id,
            "CHARGING" if tag_status == "Accepted" else "FAILED",
            meter_start,
            started_at,
        )
        assert row is not None
        return int(row["transaction_id"]), str(row["id_tag_status"])


async def stop_transaction(
    pool: asyncpg.Pool,
    charger: ChargerIdentity,
    *,
    transaction_id: int,
    meter_stop: int,
    stopped_at: datetime,
    reason: str | None,
    transaction_data: list[dict[str, Any]] | None,
) -> str | None:
    """Close the session once; a repeat or an unknown id changes nothing. Returns the
    session's idTag status (None when the transaction is not this charger's)."""
    async with pool.acquire() as conn, conn.transaction():
        session = await conn.fetchrow(
            Q("chargers.session_of_charger"), charger.charger_id, transaction_id
        )
        if session is None:
            log.warning(
                "StopTransaction for unknown transaction %s from %s",
                transaction_id,
                charger.charge_point_id,
            )
            return None
        if session["ended_at"] is not None:
            return str(session["id_tag_status"])  # already billed once
        if transaction_data:
            await _store_samples(
                conn, charger, session["connector_no"], transaction_id, transaction_data
            )
        await conn.execute(
            Q("chargers.stop_session"),
            charger.charger_id,
            transaction_id,
            meter_stop,
            stopped_at,
            reason or "Local",
        )
        return str(session["id_tag_status"])


def _to_wh(value: float, unit: str | None) -> float:
    return value * 1000 if unit == "kWh" else value


def _to_w(value: float, unit: str | None) -> float:
    return value * 1000 if unit == "kW" else value


async def _store_samples(
    conn: asyncpg.Connection,
    charger: ChargerIdentity,
    connector_no: int,
    transaction_id: int | None,
    meter_value: list[dict[str, Any]],
) -> tuple[datetime | None, float | None, float | None, float | None]:
    """Insert the samples; returns (latest time, energy Wh, power W, SoC %) of the latest."""
    ats: list[datetime] = []
    measurands: list[str] = []
    values: list[float] = []
    units: list[str | None] = []
    contexts: list[str | None] = []
    phases: list[str | None] = []
    latest: datetime | None = None
    energy = power = soc = None
    for mv in meter_value:
        at = parse_timestamp(mv.get("timestamp"))
        if at is None:
            continue
        for sv in mv.get("sampled_value") or []:
            if sv.get("format") == "SignedData":
                continue
            try:
                value = float(sv["value"])
            except (KeyError, TypeError, ValueError):
                continue
            measurand = sv.get("measurand") or "Energy.Active.Import.Register"
            unit = sv.get("unit")
            ats.append(at)
            measurands.append(measurand)
            values.append(value)
            units.append(unit)
            contexts.append(sv.get("context"))
            phases.append(sv.get("phase"))
            if latest is None or at >= latest:
                if latest is None or at > latest:
                    latest = at
                if sv.get("phase"):
                    continue  # per-phase values; the totals are what the session shows
                if measurand == "Energy.Active.Import.Register":
                    energy = _to_wh(value, unit)
                elif measurand == "Power.Active.Import":
                    power = _to_w(value, unit)
                elif measurand == "SoC":
                    soc = value
    if ats:
        await conn.execute(
            Q("chargers.insert_samples"),
            charger.charger_id,
            connector_no,
            transaction_id,
            ats,
            measurands,
            values,
            units,
            contexts,
            phases,
        )
    return latest, energy, power, soc


async def meter_values(
    pool: asyncpg.Pool,
    charger: ChargerIdentity,
    *,
    connector_no: int,
    transaction_id: int | None,
    meter_value: list[dict[str, Any]],
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if transaction_id is not None:
            session = await conn.fetchrow(
                Q("chargers.session_of_charger"), charger.charger_id, transaction_id
            )
            if session is None:  # not this charger's transaction: keep the samples unlinked
                transaction_id = None
        latest, energy, power, soc = await _store_samples(
            conn, charger, connector_no, transaction_id, meter_value
        )
        if transaction_id is not None and latest is not None:
            await conn.execute(
                Q("chargers.update_session_live"),
                charger.charger_id,
                transaction_id,
                None if energy is None else round(energy),
                None if power is None else round(power),
                soc,
                latest,
            )


def parse_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
