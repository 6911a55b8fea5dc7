"""What the central system does with each OCPP message: plain SQL on the pool, one short
transaction per message (INTEGRATIONS.md §1-2)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg

from app.chargers import queries as q
from app.connectivity import service as connectivity
from app.fleet.service import verify_ocpp_password
from app.sessions import service as sessions
from app.sessions import state as session_state

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
# The running session on a connector follows these OCPP statuses (app/sessions/state.py).
SESSION_STATUS: Final[dict[str, str]] = session_state.BY_OCPP_STATUS
# The link's signals (socket, boot ICCID, last seen) are recorded here; the state is
# decided by app.connectivity.service.settle from every stored signal.
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
    row = await q.credentials(pool, charge_point_id=charge_point_id)
    if row is None or password is None:
        return None
    if not verify_ocpp_password(charge_point_id, password, row.ocpp_password_hash):
        return None
    return ChargerIdentity(row.charger_id, charge_point_id, row.iccid)


async def connected(pool: asyncpg.Pool, charger: ChargerIdentity, connection_id: uuid.UUID) -> None:
    """This connection holds the charger now; many connections in a short window alert."""
    await q.claim_link(pool, charger_id=charger.charger_id, connection_id=connection_id)
    async with pool.acquire() as conn:
        await connectivity.link_opened(
            conn, charger.charger_id, datetime.now(UTC), connectivity.config_for(pool)
        )


async def disconnected(
    pool: asyncpg.Pool, charger: ChargerIdentity, connection_id: uuid.UUID
) -> bool:
    """Mark this connection closed; True when it was still the charger's current one."""
    return await q.release_link(pool, charger_id=charger.charger_id, connection_id=connection_id)


async def went_offline(
    pool: asyncpg.Pool, charger: ChargerIdentity, connection_id: uuid.UUID
) -> bool:
    """After the grace period: settle (offline/socket_down) unless a newer connection
    exists; True when the state changed."""
    async with pool.acquire() as conn, conn.transaction():
        still = await q.link_is_current_and_down(
            conn, charger_id=charger.charger_id, connection_id=connection_id
        )
        if not still:
            return False
        _, changed = await connectivity.settle_charger(
            conn,
            charger.charger_id,
            connectivity.config_for(pool).health,
            datetime.now(UTC),
            source=SOURCE,
        )
        return changed


async def boot(
    pool: asyncpg.Pool, charger: ChargerIdentity, payload: dict[str, Any], now: datetime
) -> str:
    """Record the boot (the ICCID it reports; the first one binds the charger's SIM) and
    settle; returns the resulting state (an ICCID other than the registered one, or one
    registered to another charger, quarantines)."""
    iccid = payload.get("iccid")
    info = {k: v for k, v in payload.items() if isinstance(v, str)}
    async with pool.acquire() as conn, conn.transaction():
        # The connectivity row first: the lock order of every settle.
        await q.lock_connectivity(conn, charger_id=charger.charger_id)
        await q.record_boot(conn, charger_id=charger.charger_id, iccid=iccid, info=info)
        registered = await q.registered_iccid(conn, charger_id=charger.charger_id)
        if iccid and registered is None:
            try:
                async with conn.transaction():
                    await q.bind_iccid(conn, charger_id=charger.charger_id, iccid=iccid)
            except asyncpg.UniqueViolationError:  # that SIM belongs to another charger
                registered = "(another charger's)"
        if iccid and registered is not None and registered != iccid:
            log.warning(
                "ICCID at boot of %s: registered %s, reported %s",
                charger.charge_point_id,
                registered,
                iccid,
            )
        await q.touch(conn, charger_id=charger.charger_id, now=now)
        row, _ = await connectivity.settle_charger(
            conn, charger.charger_id, connectivity.config_for(pool).health, now, source=SOURCE
        )
        return row.state if row is not None else "offline"


async def heartbeat(pool: asyncpg.Pool, charger: ChargerIdentity, now: datetime) -> None:
    """The charger was seen now: settle (back online after an outage)."""
    async with pool.acquire() as conn, conn.transaction():
        await q.touch(conn, charger_id=charger.charger_id, now=now)
        await connectivity.settle_charger(
            conn, charger.charger_id, connectivity.config_for(pool).health, now, source=SOURCE
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
        await q.touch(conn, charger_id=charger.charger_id, now=datetime.now(UTC))
        if connector_no == 0:
            # The whole charger: only "out of service" statuses apply to every connector;
            # each connector reports its own Available/Charging/...
            if mapped in ("UNAVAILABLE", "FAULTED"):
                await q.set_all_connector_statuses(
                    conn, charger_id=charger.charger_id, status=mapped, at=at
                )
            return
        await q.set_connector_status(
            conn, charger_id=charger.charger_id, connector_no=connector_no, status=mapped, at=at
        )
        session_status = SESSION_STATUS.get(ocpp_status)
        if session_status is not None:
            changed = await q.set_open_session_status(
                conn,
                charger_id=charger.charger_id,
                connector_no=connector_no,
                status=session_status,
                idle=session_state.is_idle(ocpp_status),
                at=at,
                live_statuses=session_state.LIVE,
            )
            paid = [r.session_id for r in changed if r.paid]
            if paid:
                await sessions.live_changed(conn, paid, datetime.now(UTC), meter=False)


async def authorize(pool: asyncpg.Pool, charger: ChargerIdentity, id_tag: str) -> str:
    """Authorize: a driver's app idTag is accepted only with a hold in place (their
    STARTING session here, or one placed now while the charger waits —
    `app.sessions.service.authorize_at_charger`); unknown tags are `Invalid`."""
    driver = await q.driver_by_id_tag(pool, id_tag=id_tag)
    if driver is None:
        return "Invalid"
    return await sessions.authorize_at_charger(
        pool, charger_id=charger.charger_id, driver_id=driver
    )


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
    """Open a session; returns (transactionId, idTagInfo.status).

    The driver's held STARTING session on this charger (from the app, or from Authorize)
    becomes CHARGING; without one a hold is placed now (a start at the charger that
    skipped Authorize). Anything else is recorded as a FAILED session with the status the
    charger gets (`Invalid`, `Blocked`, `ConcurrentTx`) and must stop on. A repeated
    StartTransaction gets the same transactionId back."""
    async with pool.acquire() as conn:
        again = await q.session_by_start(
            conn, charger_id=charger.charger_id, connector_no=connector_no, started_at=started_at
        )
        if again is not None:
            return again.transaction_id, again.id_tag_status
        driver_id = await q.driver_by_id_tag(conn, id_tag=id_tag)
        connector_id = await q.connector_of_charger(
            conn, charger_id=charger.charger_id, connector_no=connector_no
        )
    tag_status = "Invalid"
    if driver_id is not None and connector_id is not None:
        for attempt in range(2):
            async with pool.acquire() as conn, conn.transaction():
                tx = await sessions.begin_transaction(
                    conn,
                    charger_id=charger.charger_id,
                    driver_id=driver_id,
                    connector_id=connector_id,
                    connector_no=connector_no,
                    id_tag=id_tag,
                    meter_start_wh=meter_start,
                    started_at=started_at,
                    reservation_id=reservation_id,
                    now=datetime.now(UTC),
                )
            if tx is not None:
                return tx, "Accepted"
            if attempt:
                break
            # No connection is held meanwhile: the hold needs the pool, and so may every
            # other charger starting at this moment.
            tag_status = await sessions.hold_at_charger(
                pool,
                charger_id=charger.charger_id,
                driver_id=driver_id,
                connector=(connector_id, connector_no),
            )
            if tag_status != "Accepted":
                break
    row = await q.start_session(
        pool,
        charger_id=charger.charger_id,
        connector_id=connector_id,
        connector_no=connector_no,
        id_tag=id_tag,
        id_tag_status=tag_status,
        driver_id=driver_id,
        reservation_id=reservation_id,
        failed_status="FAILED",
        meter_start=meter_start,
        started_at=started_at,
    )
    assert row is not None
    return row.transaction_id, row.id_tag_status


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
    """Close the session once and bill it once (`app.sessions.service.
    transaction_stopped`: the bill's primary key makes a repeat, or a late one after a
    reconnect, a no-op); an unknown id changes nothing. Returns the session's idTag
    status (None when the transaction is not this charger's)."""
    async with pool.acquire() as conn, conn.transaction():
        session = await q.session_of_charger(
            conn, charger_id=charger.charger_id, transaction_id=transaction_id
        )
        if session is None:
            log.warning(
                "StopTransaction for unknown transaction %s from %s",
                transaction_id,
                charger.charge_point_id,
            )
            return None
        if session.ended_at is not None:
            return session.id_tag_status  # already closed (and billed) once
        if transaction_data:
            await _store_samples(
                conn, charger, session.connector_no, transaction_id, transaction_data
            )
        await q.stop_session(
            conn,
            charger_id=charger.charger_id,
            transaction_id=transaction_id,
            meter_stop=meter_stop,
            stopped_at=stopped_at,
            reason=reason or "Local",
        )
        await sessions.transaction_stopped(
            conn, session_id=session.session_id, now=datetime.now(UTC)
        )
        return session.id_tag_status


def _to_wh(value: float, unit: str | None) -> float:
    return value * 1000 if unit == "kWh" else value


def _to_w(value: float, unit: str | None) -> float:
    return value * 1000 if unit == "kW" else value


@dataclass(slots=True)
class Samples:
    """The sampled values of one MeterValues (or transactionData) list, column-wise, and
    the totals of the latest timestamp: time, energy (Wh), power (W), SoC (%)."""

    ats: list[datetime]
    measurands: list[str]
    values: list[float]
    units: list[str | None]
    contexts: list[str | None]
    phases: list[str | None]
    latest: datetime | None = None
    energy: float | None = None
    power: float | None = None
    soc: float | None = None


def parse_samples(meter_value: list[dict[str, Any]]) -> Samples:
    out = Samples([], [], [], [], [], [])
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
            out.ats.append(at)
            out.measurands.append(measurand)
            out.values.append(value)
            out.units.append(unit)
            out.contexts.append(sv.get("context"))
            out.phases.append(sv.get("phase"))
            if out.latest is None or at >= out.latest:
                if out.latest is None or at > out.latest:
                    out.latest = at
                if sv.get("phase"):
                    continue  # per-phase values; the totals are what the session shows
                if measurand == "Energy.Active.Import.Register":
                    out.energy = _to_wh(value, unit)
                elif measurand == "Power.Active.Import":
                    out.power = _to_w(value, unit)
                elif measurand == "SoC":
                    out.soc = value
    return out


async def _store_samples(
    conn: asyncpg.Connection,
    charger: ChargerIdentity,
    connector_no: int,
    transaction_id: int | None,
    meter_value: list[dict[str, Any]],
) -> tuple[datetime | None, float | None, float | None, float | None]:
    """Insert the samples; returns (latest time, energy Wh, power W, SoC %) of the latest."""
    samples = parse_samples(meter_value)
    if samples.ats:
        await q.insert_samples(
            conn,
            charger_id=charger.charger_id,
            connector_no=connector_no,
            transaction_id=transaction_id,
            columns=(
                samples.ats,
                samples.measurands,
                samples.values,
                samples.units,
                samples.contexts,
                samples.phases,
            ),
        )
    return samples.latest, samples.energy, samples.power, samples.soc


def parse_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
