"""GetCompositeSchedule: the request of either OCPP version and its answer as plain data.

The composite schedule is what the charger itself computes from every profile it holds (1.6
§3.13.6 and §6.30; 2.0.1 K08): the truest view of the limit in force, so the console shows it as
received, without re-deriving it from what we sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

RateUnit = Literal["A", "W"]


@dataclass(frozen=True, slots=True)
class CompositePeriod:
    """One period of a composite schedule: from ``start`` on, ``limit`` in the schedule's unit."""

    start: datetime | None  # None when the charger did not say when the schedule starts
    offset_s: int
    limit: float
    phases: int | None


@dataclass(frozen=True, slots=True)
class CompositeSchedule:
    """A charger's composite schedule: when it starts, its unit, its periods (in order)."""

    start: datetime | None
    duration_s: int | None
    unit: RateUnit
    periods: tuple[CompositePeriod, ...]


def composite_request(
    version: str, evse_id: int, duration_s: int, unit: RateUnit
) -> dict[str, Any]:
    """The GetCompositeSchedule payload (1.6 names the connector, 2.0.1 the EVSE)."""
    key = "connectorId" if version == "ocpp1.6" else "evseId"
    return {key: evse_id, "duration": duration_s, "chargingRateUnit": unit}


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None  # a naive time cannot be placed: unknown


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_composite(answer: dict[str, Any]) -> CompositeSchedule | None:
    """The schedule in a GetCompositeSchedule answer of either version (1.6 ``chargingSchedule``
    + ``scheduleStart``; 2.0.1 ``schedule`` with ``scheduleStart``), or None when the answer holds
    none (e.g. Rejected) or is malformed; periods with no usable limit are dropped."""
    schedule = answer.get("chargingSchedule") or answer.get("schedule")
    if not isinstance(schedule, dict):
        return None
    raw_periods = schedule.get("chargingSchedulePeriod")
    if not isinstance(raw_periods, list):
        return None
    start = _when(schedule.get("scheduleStart") or answer.get("scheduleStart"))
    if start is None:
        start = _when(schedule.get("startSchedule"))
    unit: RateUnit = "W" if schedule.get("chargingRateUnit") == "W" else "A"
    periods: list[CompositePeriod] = []
    for p in raw_periods:
        if not isinstance(p, dict):
            continue
        offset = _number(p.get("startPeriod"))
        limit = _number(p.get("limit"))
        if offset is None or limit is None:
            continue
        phases = p.get("numberPhases")
        periods.append(
            CompositePeriod(
                start=None if start is None else start + timedelta(seconds=offset),
                offset_s=int(offset),
                limit=limit,
                phases=phases if isinstance(phases, int) and not isinstance(phases, bool) else None,
            )
        )
    periods.sort(key=lambda q: q.offset_s)
    duration = _number(schedule.get("duration"))
    return CompositeSchedule(
        start=start,
        duration_s=None if duration is None else int(duration),
        unit=unit,
        periods=tuple(periods),
    )
