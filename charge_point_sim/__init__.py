"""Simulated chargers and EVs. The pure models: profiles, charger state, composite schedule, EV, meter.

These modules use only the standard library; the OCPP shells (one per version) build on them.
"""

from charge_point_sim.charger_model import (
    Capabilities,
    ChargerSpec,
    ChargerState,
    ConnectorSpec,
    InstalledProfile,
    Transaction,
    set_charging_profile,
    validate_profile,
)
from charge_point_sim.charging import charge, charge_station, share_station_power
from charge_point_sim.composite import (
    CompositePeriod,
    CompositeSchedule,
    Limit,
    composite_schedule,
    connector_limit,
    limit_at,
    limits_over,
)
from charge_point_sim.errors import InvalidModelError, SimulatorError
from charge_point_sim.ev_model import Ev, Meter, MeterReading, acceptance_w, power_at, step
from charge_point_sim.profiles import (
    ChargingProfile,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
    Schedule,
    SchedulePeriod,
)

__all__ = [
    "Capabilities",
    "ChargerSpec",
    "ChargerState",
    "ChargingProfile",
    "CompositePeriod",
    "CompositeSchedule",
    "ConnectorSpec",
    "Ev",
    "InstalledProfile",
    "InvalidModelError",
    "Kind",
    "Limit",
    "Meter",
    "MeterReading",
    "Purpose",
    "RateUnit",
    "Recurrency",
    "Schedule",
    "SchedulePeriod",
    "SimulatorError",
    "Transaction",
    "acceptance_w",
    "charge",
    "charge_station",
    "composite_schedule",
    "connector_limit",
    "limit_at",
    "limits_over",
    "power_at",
    "set_charging_profile",
    "share_station_power",
    "step",
    "validate_profile",
]
