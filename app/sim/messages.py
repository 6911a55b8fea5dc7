"""The CALLs a charger sends, as the camelCase JSON it puts on the wire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.sim.options import SimOptions
from app.sim.state import Connector, Transaction

__all__ = [
    "Outgoing",
    "boot_notification",
    "energy_sample",
    "meter_values",
    "ocpp_timestamp",
    "parse_timestamp",
    "start_transaction",
    "status_notification",
    "stop_transaction",
]

# An outgoing CALL: action and camelCase payload.
Outgoing = tuple[str, dict[str, Any]]


def ocpp_timestamp(at: datetime) -> str:
    """RFC 3339 UTC with milliseconds and a ``Z``, the way chargers write it."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _present(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without its optional fields that are absent (None): OCPP omits them."""
    return {k: v for k, v in payload.items() if v is not None}


def _sampled_value(
    value: str, context: str, measurand: str, location: str, unit: str
) -> dict[str, str]:
    return {
        "value": value,
        "context": context,
        "measurand": measurand,
        "location": location,
        "unit": unit,
    }


def boot_notification(options: SimOptions, iccid: str | None, imsi: str | None) -> Outgoing:
    payload = {
        "chargePointVendor": options.vendor,
        "chargePointModel": options.model,
        "chargePointSerialNumber": options.serial_number,
        "firmwareVersion": options.firmware_version,
        "iccid": iccid,
        "imsi": imsi,
    }
    return "BootNotification", _present(payload)


def status_notification(
    connector_no: int, status: str, error_code: str, now: datetime, info: str | None = None
) -> Outgoing:
    payload = {
        "connectorId": connector_no,
        "errorCode": error_code,
        "status": status,
        "timestamp": ocpp_timestamp(now),
        "info": info,
    }
    return "StatusNotification", _present(payload)


def energy_sample(value_wh: int, context: str) -> dict[str, str]:
    return _sampled_value(str(value_wh), context, "Energy.Active.Import.Register", "Outlet", "Wh")


def meter_values(conn: Connector, now: datetime, *, context: str = "Sample.Periodic") -> Outgoing:
    """The connector's register, power and (when known) the car's SoC; part of its
    transaction when one runs."""
    samples = [
        energy_sample(round(conn.meter_wh), context),
        _sampled_value(str(round(conn.power_w)), context, "Power.Active.Import", "Outlet", "W"),
    ]
    if conn.soc is not None:
        samples.append(_sampled_value(f"{conn.soc:.1f}", context, "SoC", "EV", "Percent"))
    tx = conn.transaction
    payload = {
        "connectorId": conn.connector_id,
        "meterValue": [{"timestamp": ocpp_timestamp(now), "sampledValue": samples}],
        "transactionId": tx.transaction_id if tx is not None else None,
    }
    return "MeterValues", _present(payload)


def start_transaction(
    connector_no: int, id_tag: str, meter_start_wh: int, at: datetime, reservation_id: int | None
) -> Outgoing:
    payload = {
        "connectorId": connector_no,
        "idTag": id_tag,
        "meterStart": meter_start_wh,
        "timestamp": ocpp_timestamp(at),
        "reservationId": reservation_id,
    }
    return "StartTransaction", _present(payload)


def stop_transaction(tx: Transaction) -> Outgoing:
    """StopTransaction of an ended transaction, its begin and end registers attached."""
    assert tx.meter_stop_wh is not None
    assert tx.stopped_at is not None
    transaction_data = [
        {
            "timestamp": ocpp_timestamp(tx.started_at),
            "sampledValue": [energy_sample(tx.meter_start_wh, "Transaction.Begin")],
        },
        {
            "timestamp": ocpp_timestamp(tx.stopped_at),
            "sampledValue": [energy_sample(tx.meter_stop_wh, "Transaction.End")],
        },
    ]
    payload = {
        "meterStop": tx.meter_stop_wh,
        "timestamp": ocpp_timestamp(tx.stopped_at),
        "transactionId": tx.transaction_id,
        "reason": tx.stop_reason,
        "idTag": tx.id_tag,
        "transactionData": transaction_data,
    }
    return "StopTransaction", payload
