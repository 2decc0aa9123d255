"""OCPP 1.6 payloads ⇄ domain events. Pure functions over the snake_case dicts the handlers get."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from csms.domain.events import (
    Booted,
    MeterSample,
    StatusChanged,
    TransactionEnded,
    TransactionStarted,
)
from csms.ocpp.parsing import parse_float, parse_time

DEFAULT_MEASURAND = "Energy.Active.Import.Register"


def boot(p: dict[str, Any]) -> Booted:
    """BootNotification.req."""
    return Booted(
        vendor=str(p.get("charge_point_vendor", "")),
        model=str(p.get("charge_point_model", "")),
        serial_number=p.get("charge_point_serial_number") or p.get("charge_box_serial_number"),
        firmware_version=p.get("firmware_version"),
    )


def status(p: dict[str, Any], now: datetime) -> StatusChanged:
    """StatusNotification.req. 1.6 has connectors only: connector N is EVSE N (0: the charger).

    The timestamp is optional in 1.6; without one the status is simply the newest we know.
    """
    code = p.get("error_code")
    connector = int(p.get("connector_id", 0))
    stamp = p.get("timestamp")
    return StatusChanged(
        evse_id=connector,
        connector_id=connector,
        status=str(p.get("status", "Unknown")),
        error_code=None if code in (None, "NoError") else str(code),
        timestamp=parse_time(stamp, now) if stamp is not None else None,
    )


def samples(meter_value: list[dict[str, Any]], now: datetime) -> list[MeterSample]:
    """MeterValue list → samples; values that are not numbers (e.g. SignedData) are skipped."""
    out: list[MeterSample] = []
    for mv in meter_value or []:
        when = parse_time(mv.get("timestamp"), now)
        for sv in mv.get("sampled_value") or []:
            if sv.get("format") == "SignedData":
                continue
            value = parse_float(sv.get("value"))
            if value is None:
                continue
            out.append(
                MeterSample(
                    timestamp=when,
                    measurand=str(sv.get("measurand") or DEFAULT_MEASURAND),
                    value=value,
                    unit=str(sv.get("unit") or ("Wh" if not sv.get("measurand") else "")),
                    phase=str(sv.get("phase") or ""),
                    context=str(sv.get("context") or ""),
                    location=str(sv.get("location") or ""),
                )
            )
    return out


def start(p: dict[str, Any], now: datetime) -> TransactionStarted:
    """StartTransaction.req."""
    connector = int(p.get("connector_id", 0))
    return TransactionStarted(
        evse_id=connector,  # 1.6 connector N is EVSE N
        connector_id=connector,
        id_tag=p.get("id_tag"),
        timestamp=parse_time(p.get("timestamp"), now),
        meter_start_wh=parse_float(p.get("meter_start")),
    )


def stop(p: dict[str, Any], now: datetime) -> TransactionEnded:
    """StopTransaction.req."""
    return TransactionEnded(
        ocpp_id=str(p.get("transaction_id")),
        timestamp=parse_time(p.get("timestamp"), now),
        meter_stop_wh=parse_float(p.get("meter_stop")),
        reason=p.get("reason"),
        samples=tuple(samples(p.get("transaction_data") or [], now)),
    )
