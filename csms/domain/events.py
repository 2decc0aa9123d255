"""What chargers tell us, whatever their OCPP version. Produced by the pure mapping functions in
csms.ocpp and consumed by csms.services."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class OcppVersion(StrEnum):
    """The protocol versions we speak (and their websocket subprotocol names)."""

    V16 = "ocpp1.6"
    V201 = "ocpp2.0.1"


@dataclass(frozen=True, slots=True)
class Booted:
    """BootNotification."""

    vendor: str
    model: str
    serial_number: str | None = None
    firmware_version: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """StatusNotification: one connector (1.6: evse_id 0, connector N; 2.0.1: evse and connector)."""

    evse_id: int
    connector_id: int
    status: str
    error_code: str | None
    timestamp: datetime | None  # None: the charger sent none (1.6 makes it optional)


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One sampled value. ``value`` is in ``unit`` as sent (Wh, kWh, W, kW, A, V, Percent…)."""

    timestamp: datetime
    measurand: str
    value: float
    unit: str = ""
    phase: str = ""
    context: str = ""
    location: str = ""


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    """1.6 StartTransaction or 2.0.1 TransactionEvent(Started)."""

    evse_id: int
    connector_id: int
    id_tag: str | None
    timestamp: datetime
    meter_start_wh: float | None
    ocpp_id: str | None = None  # 2.0.1: the station's id; 1.6: assigned by us


@dataclass(frozen=True, slots=True)
class TransactionEnded:
    """1.6 StopTransaction or 2.0.1 TransactionEvent(Ended)."""

    ocpp_id: str
    timestamp: datetime
    meter_stop_wh: float | None
    reason: str | None
    samples: tuple[MeterSample, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class TransactionEventReceived:
    """A 2.0.1 TransactionEvent, any type, with its sequence number."""

    event_type: str  # Started, Updated, Ended
    ocpp_id: str
    seq_no: int
    trigger_reason: str
    timestamp: datetime
    offline: bool
    evse_id: int
    connector_id: int
    id_tag: str | None
    charging_state: str | None
    stopped_reason: str | None
    samples: tuple[MeterSample, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class NeedsReported:
    """2.0.1 NotifyEVChargingNeeds (ISO 15118): what the EV says it needs."""

    evse_id: int
    departure: datetime | None
    energy_wh: float | None
    max_power_w: float | None
    min_power_w: float | None = None


def energy_register_wh(samples: tuple[MeterSample, ...] | list[MeterSample]) -> float | None:
    """The last Energy.Active.Import.Register reading in Wh (kWh converted), if any."""
    value = None
    for s in samples:
        if s.measurand == "Energy.Active.Import.Register" and s.phase == "":
            value = s.value * 1000.0 if s.unit == "kWh" else s.value
    return value


def active_power_w(samples: tuple[MeterSample, ...] | list[MeterSample]) -> float | None:
    """The last total Power.Active.Import reading in W (kW converted; per-phase values summed when
    no total is given), if any."""
    total: float | None = None
    phases: dict[str, float] = {}
    for s in samples:
        if s.measurand != "Power.Active.Import" or s.context == "Transaction.Begin":
            continue
        watts = s.value * 1000.0 if s.unit == "kW" else s.value
        if s.phase in ("", "N"):
            total = watts
        elif s.phase.startswith("L"):
            phases[s.phase[:2]] = watts
    if total is not None:
        return total
    return sum(phases.values()) if phases else None
