"""Transactions of a simulated charger: StartTransaction, the car charging with
MeterValues in simulated time, StopTransaction (queued in the outbox while offline)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, cast

from app.sim import library, messages
from app.sim.options import SessionPlan
from app.sim.state import (
    AVAILABLE,
    CHARGING,
    FINISHING,
    PREPARING,
    SUSPENDED_EV,
    UNAVAILABLE,
    Connector,
    Transaction,
)
from app.sim.vehicle import Vehicle

if TYPE_CHECKING:
    from app.sim.charge_point import SimCharger

__all__ = ["charge", "end", "remote_plan", "start"]


async def start(
    ch: SimCharger,
    conn: Connector,
    id_tag: str,
    reservation_id: int | None,
    plan: SessionPlan | None,
    charge_car: bool,
) -> Transaction:
    """StartTransaction for a connector already claimed by the caller."""
    reservation = conn.reservation
    if reservation_id is None and reservation is not None:
        reservation_id = reservation.reservation_id
    previous = conn.status
    try:
        await ch._update_status(conn, PREPARING)
        meter_start = round(conn.meter_wh)
        started_at = ch.clock.now()
        result = await ch._call(
            messages.start_transaction(
                conn.connector_id, id_tag, meter_start, started_at, reservation_id
            )
        )
    except Exception:
        conn.claimed = False
        await ch._update_status(conn, previous)
        raise
    finally:
        conn.claimed = False
    info = result.get("idTagInfo") or {}
    tx = Transaction(
        transaction_id=int(result["transactionId"]),
        connector_id=conn.connector_id,
        id_tag=id_tag,
        id_tag_status=str(info.get("status", "Invalid")),
        meter_start_wh=meter_start,
        started_at=started_at,
        reservation_id=reservation_id,
    )
    conn.transaction = tx
    if reservation is not None and reservation.reservation_id == reservation_id:
        conn.clear_reservation()
    ch._notify()
    if tx.id_tag_status != "Accepted":
        # StopTransactionOnInvalidId: the charger ends what the CS refused.
        await end(ch, conn, "DeAuthorized")
        return tx
    if charge_car:
        if plan is None:
            plan = remote_plan(ch)
        if plan is not None:
            tx.vehicle = Vehicle(
                plan.battery_kwh,
                plan.start_soc,
                conn.max_power_w,
                max_car_power_w=plan.car_max_power_w,
                target_soc=plan.target_soc,
            )
    await ch._update_status(conn, CHARGING)
    if tx.vehicle is not None and plan is not None:
        conn.charging_task = ch._spawn(charge(ch, conn, tx, plan))
    return tx


def remote_plan(ch: SimCharger) -> SessionPlan | None:
    """The car that shows up for a remote start (``options.remote_start_plan``)."""
    plan = ch.options.remote_start_plan
    if plan is None or isinstance(plan, SessionPlan):
        return plan
    return plan()


async def charge(ch: SimCharger, conn: Connector, tx: Transaction, plan: SessionPlan) -> None:
    """Charge the car, one MeterValues per interval of simulated time, then finish."""
    vehicle = tx.vehicle
    assert vehicle is not None
    opts = ch.options
    conn.soc = vehicle.soc if plan.report_soc else None
    conn.power_w = vehicle.power_w
    ch._enqueue(ch.meter_values_payload(conn, context="Transaction.Begin"), want_result=False)
    suspended_left = 0.0
    suspend_pending = plan.suspend_at_soc is not None
    last = time.monotonic()
    while not vehicle.done:
        await asyncio.sleep(opts.meter_interval_s / opts.speedup)
        now = time.monotonic()
        dt = (now - last) * opts.speedup  # what really passed, lag included
        last = now
        if suspended_left > 0.0:
            suspended_left -= dt
            if suspended_left <= 0.0:
                await ch._update_status(conn, CHARGING)
            conn.power_w = 0.0
        else:
            energy, power, soc = vehicle.step(dt * opts.charge_factor)
            conn.meter_wh += energy
            conn.power_w = power
            if plan.report_soc:
                conn.soc = soc
            if (
                suspend_pending
                and plan.suspend_at_soc is not None
                and soc >= plan.suspend_at_soc
                and not vehicle.done
            ):
                suspend_pending = False
                suspended_left = plan.suspend_for_s
                conn.power_w = 0.0
                await ch._update_status(conn, SUSPENDED_EV)
        ch._enqueue(ch.meter_values_payload(conn), want_result=False)
        ch._notify()
    conn.power_w = 0.0
    if plan.when_done == "suspend":
        await ch._update_status(conn, SUSPENDED_EV)
        return
    await end(ch, conn, plan.stop_reason)


async def end(ch: SimCharger, conn: Connector, reason: str) -> dict[str, Any] | None:
    """Finishing → StopTransaction (queued) → Available/Unavailable once delivered;
    returns its result in snake_case, None when no transaction was running."""
    tx = conn.transaction
    if tx is None:
        return None
    conn.transaction = None
    task, conn.charging_task = conn.charging_task, None
    if task is not None and task is not asyncio.current_task():
        task.cancel()
    conn.power_w = 0.0
    tx.meter_stop_wh = round(conn.meter_wh)
    tx.stopped_at = ch.clock.now()
    tx.stop_reason = reason
    ch.completed_transactions.append(tx)
    await ch._update_status(conn, FINISHING)
    future = ch._enqueue(messages.stop_transaction(tx), want_result=True)
    assert future is not None
    try:
        result = await future
    finally:
        if conn.transaction is None and conn.status == FINISHING and not ch.closing:
            if conn.inoperative_after_tx:
                conn.inoperative, conn.inoperative_after_tx = True, False
            await ch._update_status(conn, UNAVAILABLE if conn.inoperative else AVAILABLE)
    return cast(dict[str, Any], library.camel_to_snake_case(result))
