"""Cheap structural checks for the hottest messages (MeterValues, Heartbeat).

JSON-schema validation of a request and of our answer costs more CPU than storing the values, and
MeterValues are most of the traffic. For them the ocpp package's validation is skipped and these
checks take its place: the same required fields and types, answered with the same CALLERRORs
(OCPP-J §4.2.3), but without checking what we do not read. Everything else is validated in full.
"""

from __future__ import annotations

from typing import Any

from ocpp.exceptions import (
    OccurenceConstraintViolationError,
    OccurrenceConstraintViolationError,
    OCPPError,
    TypeConstraintViolationError,
)


def _missing(version: str, cause: str) -> OCPPError:
    if version == "ocpp1.6":
        return OccurenceConstraintViolationError(details={"cause": cause})  # 1.6's spelling
    return OccurrenceConstraintViolationError(details={"cause": cause})


def _type(cause: str) -> OCPPError:
    return TypeConstraintViolationError(details={"cause": cause})


def check_meter_values(p: dict[str, Any], version: str) -> None:
    """Raise the OCPPError for a MeterValues request (snake_case) that breaks the schema's core."""
    key = "connector_id" if version == "ocpp1.6" else "evse_id"
    if key not in p:
        raise _missing(version, f"{key} is required")
    if not isinstance(p[key], int) or isinstance(p[key], bool) or p[key] < 0:
        raise _type(f"{key} must be an integer >= 0")
    values = p.get("meter_value")
    if values is None:
        raise _missing(version, "meterValue is required")
    if not isinstance(values, list) or not values:
        raise _type("meterValue must be a non-empty array")
    tx = p.get("transaction_id")
    if tx is not None and (not isinstance(tx, int) or isinstance(tx, bool)):
        raise _type("transactionId must be an integer")
    for mv in values:
        if not isinstance(mv, dict):
            raise _type("meterValue items must be objects")
        if not isinstance(mv.get("timestamp"), str):
            raise _missing(version, "meterValue.timestamp is required (a date-time string)")
        sampled = mv.get("sampled_value")
        if not isinstance(sampled, list) or not sampled:
            raise _type("meterValue.sampledValue must be a non-empty array")
        for sv in sampled:
            if not isinstance(sv, dict) or "value" not in sv:
                raise _missing(version, "sampledValue.value is required")
            value = sv["value"]
            ok = (
                isinstance(value, str)
                if version == "ocpp1.6"
                else (isinstance(value, int | float) and not isinstance(value, bool))
            )
            if not ok:
                kind = "a string" if version == "ocpp1.6" else "a number"
                raise _type(f"sampledValue.value must be {kind}")
