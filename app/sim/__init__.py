"""OCPP 1.6J charge-point simulator: tests, the demo fleet and the scale bench."""

from app.sim.charge_point import (
    AcceleratedClock,
    CallStats,
    Connector,
    ConnectorSpec,
    Reservation,
    SessionPlan,
    SimChargePoint,
    SimCharger,
    SimError,
    SimOfflineError,
    SimOptions,
    SimStateError,
    Transaction,
    connect,
)
from app.sim.fleet import (
    ChargerSpec,
    Fleet,
    generate_chargers,
    load_chargers,
    random_session_plan,
)
from app.sim.vehicle import Vehicle, power_at_soc, seconds_to_soc

__all__ = [
    "AcceleratedClock",
    "CallStats",
    "ChargerSpec",
    "Connector",
    "ConnectorSpec",
    "Fleet",
    "Reservation",
    "SessionPlan",
    "SimChargePoint",
    "SimCharger",
    "SimError",
    "SimOfflineError",
    "SimOptions",
    "SimStateError",
    "Transaction",
    "Vehicle",
    "connect",
    "generate_chargers",
    "load_chargers",
    "power_at_soc",
    "random_session_plan",
    "seconds_to_soc",
]
