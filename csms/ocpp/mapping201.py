"""OCPP 2.0.1 payloads ⇄ domain events. Pure functions over the snake_case dicts the handlers get."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from csms.domain.events import (
    Booted,
    MeterSample,
    NeedsReported,
    StatusChanged,
    TransactionEventReceived,
)
from csms.ocpp.parsing import parse_float, parse_time

DEFAULT_MEASURAND = "Energy.Active.Import.Register"


def boot(p: dict[str, Any]) -> Booted:
    """BootNotificationRequest."""
    station = p.get("charging_station") or {}
    return Booted(
        vendor=str(station.get("vendor_name", "")),
        model=str(station.get("model", "")),
        serial_number=station.get("serial_number"),
        firmware_version=station.get("firmware_version"),
        reason=p.get("reason"),
    )


def status(p: dict[str, Any], now: datetime) -> StatusChanged:
    """StatusNotificationRequest."""
    return StatusChanged(
        evse_id=int(p.get("evse_id", 0)),
        connector_id=int(p.get("connector_id", 0)),
        status=str(p.get("connector_status", "Unknown")),
        error_code=None,
        timestamp=parse_time(p.get("timestamp"), now),
    )


def samples(meter_value: list[dict[str, Any]], now: datetime) -> list[MeterSample]:
    """MeterValueType list → samples, applying the unit multiplier (value × 10^multiplier)."""
    out: list[MeterSample] = []
    for mv in meter_value or []:
        when = parse_time(mv.get("timestamp"), now)
        for sv in mv.get("sampled_value") or []:
            value = parse_float(sv.get("value"))
            if value is None:
                continue
            unit = sv.get("unit_of_measure") or {}
            multiplier = int(unit.get("multiplier", 0) or 0)
            measurand = str(sv.get("measurand") or DEFAULT_MEASURAND)
            out.append(
                MeterSample(
                    timestamp=when,
                    measurand=measurand,
                    value=value * 10.0**multiplier,
                    unit=str(unit.get("unit") or ("Wh" if measurand == DEFAULT_MEASURAND else "")),
                    phase=str(sv.get("phase") or ""),
                    context=str(sv.get("context") or ""),
                    location=str(sv.get("location") or ""),
                )
            )
    return out


def transaction_event(p: dict[str, Any], now: datetime) -> TransactionEventReceived:
    """TransactionEventRequest."""
    info = p.get("transaction_info") or {}
    evse = p.get("evse") or {}
    token = p.get("id_token") or {}
    return TransactionEventReceived(
        event_type=str(p.get("event_type")),
        ocpp_id=str(info.get("transaction_id")),
        seq_no=int(p.get("seq_no", 0)),
        trigger_reason=str(p.get("trigger_reason", "")),
        timestamp=parse_time(p.get("timestamp"), now),
        offline=bool(p.get("offline", False)),
        evse_id=int(evse.get("id", 0)),
        connector_id=int(evse.get("connector_id", 1 if evse.get("id") else 0)),
        # NoAuthorization tokens carry an empty idToken: nothing to authorize (2.0.1 C01).
        id_tag=None if token.get("type") == "NoAuthorization" else token.get("id_token"),
        charging_state=info.get("charging_state"),
        stopped_reason=info.get("stopped_reason"),
        samples=tuple(samples(p.get("meter_value") or [], now)),
    )


_AC_PHASES = {"AC_single_phase": 1, "AC_two_phase": 2, "AC_three_phase": 3}


def _phase_voltage(voltage: float) -> float:
    # ISO 15118 EVMaxVoltage: some EVs give line-to-neutral (230 V), some line-to-line (400 V);
    # above 300 V it can only be line-to-line, and a phase then sees V / sqrt(3).
    return voltage if voltage <= 300 else voltage / math.sqrt(3)


def needs(p: dict[str, Any], now: datetime) -> NeedsReported:
    """NotifyEVChargingNeedsRequest: departure time, energy amount and AC/DC limits.

    AC limits are per phase (2.0.1 ACChargingParametersType): power = current x phase voltage x
    the phases of ``requestedEnergyTransfer``."""
    cn = p.get("charging_needs") or {}
    ac = cn.get("ac_charging_parameters") or {}
    dc = cn.get("dc_charging_parameters") or {}
    departure = cn.get("departure_time")
    energy = parse_float(ac.get("energy_amount")) or parse_float(dc.get("energy_amount"))
    phases = _AC_PHASES.get(str(cn.get("requested_energy_transfer")), 1)
    voltage = parse_float(ac.get("ev_max_voltage"))
    max_power = parse_float(dc.get("ev_max_power"))
    min_power = None
    if voltage is not None and voltage > 0:
        per_phase = _phase_voltage(voltage) * phases
        current = parse_float(ac.get("ev_max_current"))
        if max_power is None and current is not None:
            max_power = current * per_phase
        min_current = parse_float(ac.get("ev_min_current"))
        if min_current is not None:
            min_power = min_current * per_phase
    return NeedsReported(
        evse_id=int(p.get("evse_id", 0)),
        departure=parse_time(departure, now) if departure else None,
        energy_wh=energy,
        max_power_w=max_power,
        min_power_w=min_power,
    )
