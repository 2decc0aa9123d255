"""What the central system asks chargers to do, whatever their OCPP version.

Commands that exist in both versions are typed here; each version's adapter maps them
(csms.ocpp.commands16 / commands201). ``RawCall`` carries a version-specific action and payload
(camelCase, as on the wire) for the rest; the ocpp package validates it against the schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class StartCharging:
    """1.6 RemoteStartTransaction / 2.0.1 RequestStartTransaction."""

    id_tag: str
    evse_id: int | None = None
    remote_start_id: int = 1  # 2.0.1 only


@dataclass(frozen=True, slots=True)
class StopCharging:
    """1.6 RemoteStopTransaction / 2.0.1 RequestStopTransaction (the id on the wire)."""

    transaction_id: str


@dataclass(frozen=True, slots=True)
class Reset:
    """1.6 Reset(Hard|Soft) / 2.0.1 Reset(Immediate|OnIdle)."""

    hard: bool = False


@dataclass(frozen=True, slots=True)
class UnlockConnector:
    """Unlock a connector (2.0.1 needs the EVSE too)."""

    connector_id: int
    evse_id: int = 1


@dataclass(frozen=True, slots=True)
class TriggerMessage:
    """Ask the charger to send a message now (e.g. StatusNotification, MeterValues)."""

    message: str
    evse_id: int | None = None


@dataclass(frozen=True, slots=True)
class GetCompositeSchedule:
    """What the charger will actually allow on an EVSE/connector for the next ``duration_s``."""

    evse_id: int
    duration_s: int
    unit: str | None = None  # "A" or "W"


@dataclass(frozen=True, slots=True)
class RawCall:
    """Any other action, version-specific: payload in camelCase as on the wire."""

    action: str
    payload: dict[str, Any] = field(default_factory=dict)


Command = (
    StartCharging
    | StopCharging
    | Reset
    | UnlockConnector
    | TriggerMessage
    | GetCompositeSchedule
    | RawCall
)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What came back: ``ok`` with the answer's status and payload, or an error."""

    ok: bool
    status: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    latency_s: float = 0.0
