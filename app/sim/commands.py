"""What a simulated charger does with the central system's commands (CS → charger).

``on_*`` answer synchronously from state (the ocpp library reads the next frame only after
a handler returns); ``after_*`` run once the answer is sent and spawn the follow-up CALLs
(StatusNotification, StartTransaction, ...). :class:`~app.sim.transport.SimChargePoint`
routes each action here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import OCPPError

from app.sim import transactions
from app.sim.messages import parse_timestamp
from app.sim.state import (
    AVAILABLE,
    FAULTED,
    PREPARING,
    RESERVED,
    UNAVAILABLE,
    Connector,
    Reservation,
    SimError,
)

if TYPE_CHECKING:
    from app.sim.charge_point import SimCharger

log = logging.getLogger("app.sim")

TRIGGERABLE = ("BootNotification", "Heartbeat", "StatusNotification", "MeterValues")


def on_remote_start(ch: SimCharger, id_tag: str, connector_id: int | None, unique_id: str) -> str:
    ch._record("RemoteStartTransaction", {"id_tag": id_tag, "connector_id": connector_id})
    if ch.options.remote_start_policy == "reject":
        return "Rejected"
    candidates: Iterable[Connector]
    if connector_id is None:
        # A connector reserved for this idTag first, then any free one.
        candidates = sorted(
            ch.connectors.values(),
            key=lambda c: c.reservation is None or c.reservation.id_tag != id_tag,
        )
    elif connector_id in ch.connectors:
        candidates = [ch.connectors[connector_id]]
    else:
        return "Rejected"
    for conn in candidates:
        if _can_start(conn, id_tag):
            conn.claimed = True
            ch._pending_remote[unique_id] = (conn.connector_id, id_tag)
            return "Accepted"
    return "Rejected"


def after_remote_start(ch: SimCharger, unique_id: str) -> None:
    pending = ch._pending_remote.pop(unique_id, None)
    if pending is None:
        return
    connector_no, id_tag = pending
    ch._spawn(_remote_start(ch, ch.connectors[connector_no], id_tag))


async def _remote_start(ch: SimCharger, conn: Connector, id_tag: str) -> None:
    try:
        await transactions.start(ch, conn, id_tag, None, None, True)
    except (SimError, OCPPError, TimeoutError) as exc:
        log.info("%s: remote start failed: %r", ch.charge_point_id, exc)


def _can_start(conn: Connector, id_tag: str) -> bool:
    if conn.transaction is not None or conn.claimed or conn.inoperative:
        return False
    if conn.status == RESERVED or conn.reservation is not None:
        res = conn.reservation
        return res is not None and id_tag in (res.id_tag, res.parent_id_tag)
    return conn.status in (AVAILABLE, PREPARING)


def on_remote_stop(ch: SimCharger, transaction_id: int) -> str:
    ch._record("RemoteStopTransaction", {"transaction_id": transaction_id})
    return "Accepted" if ch._find_transaction(transaction_id) is not None else "Rejected"


def after_remote_stop(ch: SimCharger, transaction_id: int) -> None:
    conn = ch._find_transaction(transaction_id)
    if conn is not None:
        ch._spawn(transactions.end(ch, conn, "Remote"))


def on_reserve_now(
    ch: SimCharger,
    connector_id: int,
    expiry_date: str,
    id_tag: str,
    reservation_id: int,
    parent_id_tag: str | None,
) -> str:
    ch._record(
        "ReserveNow",
        {
            "connector_id": connector_id,
            "expiry_date": expiry_date,
            "id_tag": id_tag,
            "reservation_id": reservation_id,
        },
    )
    conn = ch.connectors.get(connector_id)
    if conn is None:  # includes 0: ReserveConnectorZeroSupported = false
        return "Rejected"
    reservation = Reservation(reservation_id, id_tag, parse_timestamp(expiry_date), parent_id_tag)
    current = conn.reservation
    if current is not None and current.reservation_id == reservation_id:
        conn.clear_reservation()  # the same reservation again: replace it
    elif conn.inoperative or conn.status == UNAVAILABLE:
        return "Unavailable"
    elif conn.status == FAULTED:
        return "Faulted"
    elif (
        current is not None
        or conn.transaction is not None
        or conn.claimed
        or conn.status != AVAILABLE
    ):
        return "Occupied"
    conn.reservation = reservation
    conn.status = RESERVED
    ch._notify()
    return "Accepted"


def after_reservation_change(ch: SimCharger, connector_id: int, reservation_id: int) -> None:
    conn = ch.connectors.get(connector_id)
    if conn is None or conn.reservation is None:
        return
    reservation = conn.reservation
    if reservation.reservation_id != reservation_id:
        return
    ch._spawn(ch._send_status(conn))
    if reservation.expiry is not None and reservation.expiry_task is None:
        reservation.expiry_task = ch._spawn(_expire(ch, conn, reservation))


async def _expire(ch: SimCharger, conn: Connector, reservation: Reservation) -> None:
    assert reservation.expiry is not None
    await asyncio.sleep(max(0.0, (reservation.expiry - ch.clock.now()).total_seconds()))
    if conn.reservation is reservation:
        reservation.expiry_task = None  # we are that task: do not cancel ourselves
        conn.clear_reservation()
        await ch._update_status(conn, AVAILABLE)


def on_cancel_reservation(ch: SimCharger, reservation_id: int) -> str:
    ch._record("CancelReservation", {"reservation_id": reservation_id})
    for conn in ch.connectors.values():
        if conn.reservation is not None and conn.reservation.reservation_id == reservation_id:
            conn.clear_reservation()
            if conn.status == RESERVED:
                conn.status = AVAILABLE
                ch._status_due[reservation_id] = conn
            ch._notify()
            return "Accepted"
    return "Rejected"


def after_cancel_reservation(ch: SimCharger, reservation_id: int) -> None:
    conn = ch._status_due.pop(reservation_id, None)
    if conn is not None:
        ch._spawn(ch._send_status(conn))


def on_change_availability(ch: SimCharger, connector_id: int, kind: str) -> str:
    ch._record("ChangeAvailability", {"connector_id": connector_id, "type": kind})
    if connector_id == 0:
        targets = list(ch.connectors.values())
    elif connector_id in ch.connectors:
        targets = [ch.connectors[connector_id]]
    else:
        return "Rejected"
    scheduled = False
    for conn in targets:
        if kind == "Inoperative":
            if conn.transaction is not None or conn.claimed:
                conn.inoperative_after_tx = True
                scheduled = True
            else:
                conn.inoperative = True
                conn.status = UNAVAILABLE
        else:
            conn.inoperative = conn.inoperative_after_tx = False
            if conn.status == UNAVAILABLE:
                conn.status = RESERVED if conn.reservation is not None else AVAILABLE
    ch._notify()
    return "Scheduled" if scheduled else "Accepted"


def after_change_availability(ch: SimCharger, connector_id: int) -> None:
    for conn in ch.connectors.values():
        if connector_id in (0, conn.connector_id) and conn.transaction is None:
            ch._spawn(ch._send_status(conn))


def on_trigger_message(ch: SimCharger, requested: str, connector_id: int | None) -> str:
    ch._record("TriggerMessage", {"requested_message": requested, "connector_id": connector_id})
    if connector_id is not None and connector_id != 0 and connector_id not in ch.connectors:
        return "Rejected"
    return "Accepted" if requested in TRIGGERABLE else "NotImplemented"


def after_trigger_message(ch: SimCharger, requested: str, connector_id: int | None) -> None:
    if requested == "BootNotification":
        ch._spawn(ch._quiet(ch._call(ch.boot_payload())))
    elif requested == "Heartbeat":
        ch._spawn(ch._quiet(ch._call(("Heartbeat", {}))))
    elif requested == "StatusNotification":
        if connector_id == 0:
            payload = ch.status_payload(0, ch.charger_status, ch.charger_error_code)
            ch._spawn(ch._quiet(ch._call(payload)))
        for conn in ch.connectors.values():
            if connector_id in (None, conn.connector_id):
                ch._spawn(ch._send_status(conn))
    elif requested == "MeterValues":
        for conn in ch.connectors.values():
            if connector_id in (None, 0, conn.connector_id):
                payload = ch.meter_values_payload(conn, context="Trigger")
                ch._spawn(ch._quiet(ch._call(payload)))


def get_configuration(
    ch: SimCharger, keys: list[str] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    ch._record("GetConfiguration", {"key": keys})
    values = {
        "HeartbeatInterval": str(int(ch.heartbeat_interval or 0)),
        "MeterValueSampleInterval": str(int(ch.options.meter_interval_s)),
        "NumberOfConnectors": str(len(ch.connectors)),
        "MeterValuesSampledData": "Energy.Active.Import.Register,Power.Active.Import,SoC",
        "ReserveConnectorZeroSupported": "false",
        "StopTransactionOnInvalidId": "true",
        "TransactionMessageAttempts": str(ch.options.tx_message_attempts),
        "TransactionMessageRetryInterval": str(int(ch.options.tx_retry_interval_s)),
        "SupportedFeatureProfiles": "Core,RemoteTrigger,Reservation",
        **ch.configuration,
    }
    wanted = keys or list(values)
    known = [{"key": k, "readonly": False, "value": values[k]} for k in wanted if k in values]
    unknown = [k for k in wanted if k not in values]
    return known, unknown


def on_change_configuration(ch: SimCharger, key: str, value: str) -> str:
    ch._record("ChangeConfiguration", {"key": key, "value": value})
    try:
        number = float(value)
    except ValueError:
        return "Rejected"
    if key == "HeartbeatInterval" and number >= 0:
        ch.heartbeat_interval = number
        ch.outbox.wakeup.set()
    elif key == "MeterValueSampleInterval" and number > 0:
        ch.options.meter_interval_s = number
    else:
        return "NotSupported"
    ch.configuration[key] = value
    return "Accepted"


async def reset(ch: SimCharger, kind: str) -> None:
    """Reset: end running transactions (reason Hard/SoftReset), then drop the socket."""
    reason = "HardReset" if kind == "Hard" else "SoftReset"
    for conn in ch.connectors.values():
        if conn.transaction is not None:
            ch._spawn(transactions.end(ch, conn, reason))
    await asyncio.sleep(0)
    ch.drop_connection()
