"""Domain commands → OCPP calls, per version (pure): ``(action, camelCase payload)``."""

from __future__ import annotations

from typing import Any

from csms.domain.commands import (
    Command,
    GetCompositeSchedule,
    RawCall,
    Reset,
    StartCharging,
    StopCharging,
    TriggerMessage,
    UnlockConnector,
)


class CommandMappingError(ValueError):
    """A command that cannot be expressed in this OCPP version, with why."""


def to_call_16(cmd: Command) -> tuple[str, dict[str, Any]]:
    """OCPP 1.6 action and payload for a command."""
    match cmd:
        case StartCharging(id_tag=tag, evse_id=evse):
            payload: dict[str, Any] = {"idTag": tag}
            if evse is not None:
                payload["connectorId"] = evse  # 1.6 has connectors only
            return "RemoteStartTransaction", payload
        case StopCharging(transaction_id=tid):
            if not tid.isdigit():
                raise CommandMappingError(f"1.6 transaction ids are integers, not {tid!r}")
            return "RemoteStopTransaction", {"transactionId": int(tid)}
        case Reset(hard=hard):
            return "Reset", {"type": "Hard" if hard else "Soft"}
        case UnlockConnector(connector_id=c):
            return "UnlockConnector", {"connectorId": c}
        case TriggerMessage(message=m, evse_id=evse):
            return "TriggerMessage", {"requestedMessage": m} | (
                {} if evse is None else {"connectorId": evse}
            )
        case GetCompositeSchedule(evse_id=evse, duration_s=d, unit=unit):
            return "GetCompositeSchedule", {"connectorId": evse, "duration": d} | (
                {} if unit is None else {"chargingRateUnit": unit}
            )
        case RawCall(action=action, payload=payload):
            return action, dict(payload)
    raise CommandMappingError(f"unknown command {cmd!r}")  # pragma: no cover - exhaustive


def to_call_201(cmd: Command) -> tuple[str, dict[str, Any]]:
    """OCPP 2.0.1 action and payload for a command."""
    match cmd:
        case StartCharging(id_tag=tag, evse_id=evse, remote_start_id=rid):
            payload: dict[str, Any] = {
                "idToken": {"idToken": tag, "type": "Central"},
                "remoteStartId": rid,
            }
            if evse is not None:
                payload["evseId"] = evse
            return "RequestStartTransaction", payload
        case StopCharging(transaction_id=tid):
            return "RequestStopTransaction", {"transactionId": tid}
        case Reset(hard=hard):
            return "Reset", {"type": "Immediate" if hard else "OnIdle"}
        case UnlockConnector(connector_id=c, evse_id=evse):
            return "UnlockConnector", {"evseId": evse, "connectorId": c}
        case TriggerMessage(message=m, evse_id=evse):
            return "TriggerMessage", {"requestedMessage": m} | (
                {} if evse is None else {"evse": {"id": evse}}
            )
        case GetCompositeSchedule(evse_id=evse, duration_s=d, unit=unit):
            return "GetCompositeSchedule", {"evseId": evse, "duration": d} | (
                {} if unit is None else {"chargingRateUnit": unit}
            )
        case RawCall(action=action, payload=payload):
            return action, dict(payload)
    raise CommandMappingError(f"unknown command {cmd!r}")  # pragma: no cover - exhaustive
