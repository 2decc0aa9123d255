"""What the 1.6 and 2.0.1 mappings share: times on the wire, limit precision, payload errors.

Pure functions only. Payloads are the snake_case dicts the ``ocpp`` package hands to handlers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from charge_point_sim.charger_model import ChargerSpec
from charge_point_sim.composite import CompositeSchedule, default_unit
from charge_point_sim.errors import SimulatorError
from charge_point_sim.ev_model import MeterReading
from charge_point_sim.profiles import RateUnit, SchedulePeriod

# Float noise tolerated when truncating to 0.1 (an A <-> W conversion that should give 16.0 and
# gives 15.9999999999 must not become 15.9).
_TRUNCATE_SLACK = 1e-6

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"
SOC = "SoC"


class PayloadError(SimulatorError, ValueError):
    """An incoming payload the model cannot represent (the charger answers Rejected)."""


def parse_time(value: object, name: str) -> datetime:
    """An OCPP date-time. Naive values are kept naive: the model's validation rejects them."""
    if not isinstance(value, str):
        raise PayloadError(f"{name} must be a date-time string")
    try:
        return datetime.fromisoformat(value)
    except ValueError as e:
        raise PayloadError(f"{name} is not a date-time: {value!r}") from e


def optional_time(value: object, name: str) -> datetime | None:
    """:func:`parse_time`, or None when absent."""
    return None if value is None else parse_time(value, name)


def format_time(t: datetime) -> str:
    """UTC, millisecond precision, with a ``Z`` (what chargers send)."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def truncate_01(x: float) -> float:
    """Round down to a multiple of 0.1 (never up: that could push a site over its cap)."""
    if not math.isfinite(x):
        raise PayloadError("a limit must be finite")
    return round(math.floor(x * 10 + _TRUNCATE_SLACK) / 10, 1)


def number(value: object, name: str) -> float:
    """A JSON number (bools are not numbers; the ``ocpp`` package parses 1.6 decimals as Decimal)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise PayloadError(f"{name} must be a number")
    return float(value)


def integer(value: object, name: str) -> int:
    """A JSON integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{name} must be an integer")
    return value


def optional_int(value: object, name: str) -> int | None:
    """:func:`integer`, or None when absent."""
    return None if value is None else integer(value, name)


def mapping(value: object, name: str) -> Mapping[str, Any]:
    """A JSON object."""
    if not isinstance(value, Mapping):
        raise PayloadError(f"{name} must be an object")
    return value


@dataclass(frozen=True, slots=True)
class Sample:
    """One sampled value, version-neutral: measurand, value, unit, location."""

    measurand: str
    value: float
    unit: str
    location: str = "Outlet"


def samples(reading: MeterReading) -> list[Sample]:
    """The measurands a simulated charger reports for a reading, in a fixed order.

    Current.Import is the current per phase in use (the charger measures each phase alike).
    """
    out = [
        Sample(ENERGY, reading.energy_wh, "Wh"),
        Sample(POWER, reading.power_w, "W"),
        Sample(CURRENT, reading.current_a, "A"),
    ]
    if reading.soc_percent is not None:
        out.append(Sample(SOC, reading.soc_percent, "Percent", "EV"))
    return out


def rounded(sample: Sample) -> float:
    """The value as sent: energy rounded down to whole Wh (so the register stays monotonic
    whatever the rounding), the rest to 0.1."""
    if sample.measurand == ENERGY:
        return float(math.floor(sample.value))
    return round(sample.value, 1)


def schedule_periods(schedule: Mapping[str, Any]) -> tuple[SchedulePeriod, ...]:
    """The periods of a chargingSchedule (snake_case; the same in 1.6 and 2.0.1)."""
    raw = schedule.get("charging_schedule_period")
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise PayloadError("chargingSchedulePeriod must be a list")
    return tuple(
        SchedulePeriod(
            start_period_s=integer(p.get("start_period"), "startPeriod"),
            limit=number(p.get("limit"), "limit"),
            number_phases=optional_int(p.get("number_phases"), "numberPhases"),
        )
        for p in (mapping(x, "chargingSchedulePeriod") for x in raw)
    )


def wire_periods(cs: CompositeSchedule) -> list[dict[str, Any]]:
    """Composite periods as schedule periods on the wire (the same in 1.6 and 2.0.1).

    startPeriod in whole seconds (a period starting within a second takes that second), limits
    rounded down to 0.1, equal neighbours merged.
    """
    periods: list[dict[str, Any]] = []
    for p in cs.periods:
        start = int(p.start_s)
        limit = truncate_01(p.limit)
        if periods and periods[-1]["start_period"] == start:
            periods.pop()
        if (
            periods
            and periods[-1]["limit"] == limit
            and periods[-1]["number_phases"] == p.number_phases
        ):
            continue
        periods.append({"start_period": start, "limit": limit, "number_phases": p.number_phases})
    return periods


def unit_of(value: str | None, spec: ChargerSpec) -> RateUnit | None:
    """The unit GetCompositeSchedule asks for, or None when the charger does not allow it."""
    if value is None:
        return default_unit(spec)
    unit = RateUnit(value)
    return unit if unit in spec.capabilities.allowed_units else None
