"""Version-neutral vocabulary for charging profiles: what a charger can take, its electrical limits,
and the planner's power schedule for one transaction. No I/O; the OCPP shapes are built by
``csms.services.profile_builder``.

``capabilities_from_stored`` reads what the charger reported at boot (``ChargePoint.capabilities``:
``{"ocpp1.6": {GetConfiguration key: value}}`` or ``{"ocpp2.0.1": {SmartChargingCtrlr variable:
value}}``). It is tolerant: a missing or unreadable value falls back to a conservative default,
chosen so that a profile built on the default is accepted by the widest range of chargers and
never lets a charger draw more than planned:

- units: ``{"A"}`` only. Every AC charger ends up enforcing amps (the IEC 61851 pilot signal), and
  a per-phase limit derived from watts is truncated down, so it cannot exceed the plan. A charger
  that reports it accepts watts gets watts.
- max periods: 20, the low end of what chargers report (20–24 is common). Fewer periods only means
  refreshing sooner.
- max stack level: 0. Some chargers honour only stack level 0; 0 is always valid.
- enabled: ``True`` (a 2.0.1 station saying ``SmartChargingCtrlr.Enabled=false`` gives ``False``;
  the station would reject profiles anyway, but the caller can skip sending them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

RateUnit = Literal["A", "W"]
"""Amps per phase, or watts summed over the phases."""

V16_KEY: Final = "ocpp1.6"
V201_KEY: Final = "ocpp2.0.1"

DEFAULT_UNITS: Final[frozenset[RateUnit]] = frozenset({"A"})
DEFAULT_MAX_PERIODS: Final = 20
DEFAULT_MAX_STACK_LEVEL: Final = 0
MAX_PERIODS_CEILING: Final = 1024  # the 2.0.1 schema's maxItems for chargingSchedulePeriod
MIN_CURRENT_A: Final = 6.0  # IEC 61851: an EVSE cannot signal less than 6 A


@dataclass(frozen=True, slots=True)
class ChargerLimits:
    """A charger's electrical settings (per charger, from the operator / database).

    ``phases`` and ``voltage_v`` convert watts (total over phases) to amps per phase;
    ``min_current_a`` is the lowest current the charger can offer (a lower limit means 0);
    ``max_power_w`` (optional) caps every limit sent.
    """

    phases: int = 3
    voltage_v: float = 230.0
    min_current_a: float = MIN_CURRENT_A
    max_power_w: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.phases, bool) or self.phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, not {self.phases!r}")
        if not (math.isfinite(self.voltage_v) and self.voltage_v > 0):
            raise ValueError(
                f"voltage_v must be a positive number of volts, not {self.voltage_v!r}"
            )
        if not (math.isfinite(self.min_current_a) and self.min_current_a >= 0):
            raise ValueError(f"min_current_a must be >= 0 A, not {self.min_current_a!r}")
        if self.max_power_w is not None and not (
            math.isfinite(self.max_power_w) and self.max_power_w >= 0
        ):
            raise ValueError(f"max_power_w must be >= 0 W or None, not {self.max_power_w!r}")

    @property
    def min_power_w(self) -> float:
        """The minimum current as total watts (``min_current_a × phases × voltage``)."""
        return self.min_current_a * self.phases * self.voltage_v


@dataclass(frozen=True, slots=True)
class ChargerCapabilities:
    """What a charger accepts in a charging profile, whatever its OCPP version."""

    allowed_units: frozenset[RateUnit] = DEFAULT_UNITS
    max_periods: int = DEFAULT_MAX_PERIODS
    max_stack_level: int = DEFAULT_MAX_STACK_LEVEL
    enabled: bool = True

    def __post_init__(self) -> None:
        units = frozenset(self.allowed_units)
        if not units or not units <= {"A", "W"}:
            raise ValueError(f"allowed_units must be a non-empty subset of A, W: {units!r}")
        object.__setattr__(self, "allowed_units", units)
        if isinstance(self.max_periods, bool) or not 1 <= self.max_periods <= MAX_PERIODS_CEILING:
            raise ValueError(
                f"max_periods must be between 1 and {MAX_PERIODS_CEILING}, not {self.max_periods!r}"
            )
        if isinstance(self.max_stack_level, bool) or self.max_stack_level < 0:
            raise ValueError(f"max_stack_level must be >= 0, not {self.max_stack_level!r}")

    @property
    def preferred_unit(self) -> RateUnit:
        """Watts when the charger takes them (no phase/voltage assumption), else amps."""
        return "W" if "W" in self.allowed_units else "A"


_UNIT_WORDS: Final[dict[str, RateUnit]] = {
    "a": "A",
    "amp": "A",
    "amps": "A",
    "ampere": "A",
    "current": "A",
    "w": "W",
    "watt": "W",
    "watts": "W",
    "power": "W",
}


def _units(value: Any) -> frozenset[RateUnit] | None:
    words: Iterable[Any]
    if isinstance(value, str):
        words = re.split(r"[\s,;]+", value)
    elif isinstance(value, Sequence | frozenset | set):
        words = value
    else:
        return None
    units = frozenset(
        _UNIT_WORDS[w.strip().lower()]
        for w in words
        if isinstance(w, str) and w.strip().lower() in _UNIT_WORDS
    )
    return units or None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None
            return int(number) if math.isfinite(number) and number.is_integer() else None
    return None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _from_section(section: Mapping[str, Any], *, v16: bool) -> ChargerCapabilities:
    if v16:
        units = _units(section.get("ChargingScheduleAllowedChargingRateUnit"))
        periods = _int(section.get("ChargingScheduleMaxPeriods"))
        stack = _int(section.get("ChargeProfileMaxStackLevel"))
        enabled = None
    else:
        units = _units(section.get("RateUnit"))
        periods = _int(section.get("PeriodsPerSchedule"))
        stack = _int(section.get("ProfileStackLevel"))
        enabled = _bool(section.get("Enabled"))
    return ChargerCapabilities(
        allowed_units=units or DEFAULT_UNITS,
        max_periods=(
            min(periods, MAX_PERIODS_CEILING)
            if periods is not None and periods >= 1
            else DEFAULT_MAX_PERIODS
        ),
        max_stack_level=stack if stack is not None and stack >= 0 else DEFAULT_MAX_STACK_LEVEL,
        enabled=True if enabled is None else enabled,
    )


def capabilities_from_stored(stored: Any, version: str | None = None) -> ChargerCapabilities:
    """Read ``ChargePoint.capabilities`` (either version) into ``ChargerCapabilities``.

    ``version`` ("ocpp1.6" / "ocpp2.0.1", or "1.6" / "2.0.1") picks the section to read; without it
    the only section present is read, and when both are present (a charger that changed version:
    sections are merged at boot) the stricter of the two wins on every field. Anything missing or
    unreadable gives the documented defaults; this function never raises.
    """
    if not isinstance(stored, Mapping):
        return ChargerCapabilities()
    wanted: tuple[str, ...]
    if version is None:
        wanted = (V16_KEY, V201_KEY)
    else:
        key = version if version.startswith("ocpp") else f"ocpp{version}"
        wanted = (key,) if key in (V16_KEY, V201_KEY) else ()
    found = [
        _from_section(section, v16=key == V16_KEY)
        for key in wanted
        if isinstance(section := stored.get(key), Mapping)
    ]
    if not found:
        return ChargerCapabilities()
    units = found[0].allowed_units.intersection(*(c.allowed_units for c in found[1:]))
    return ChargerCapabilities(
        allowed_units=units or DEFAULT_UNITS,
        max_periods=min(c.max_periods for c in found),
        max_stack_level=min(c.max_stack_level for c in found),
        enabled=all(c.enabled for c in found),
    )


@dataclass(frozen=True, slots=True)
class PowerSchedule:
    """The planner's output for one transaction: ``watts[i]`` (total over phases) from
    ``start + i × step_s`` for ``step_s`` seconds. ``start`` is aware and on a whole second."""

    start: datetime
    step_s: int
    watts: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError(f"start must be timezone-aware, not {self.start!r}")
        if self.start.microsecond:
            raise ValueError(f"start must fall on a whole second, not {self.start.isoformat()}")
        if isinstance(self.step_s, bool) or not isinstance(self.step_s, int) or self.step_s <= 0:
            raise ValueError(f"step_s must be a positive whole number of seconds: {self.step_s!r}")
        watts = tuple(float(w) for w in self.watts)
        for i, w in enumerate(watts):
            if not (math.isfinite(w) and w >= 0):
                raise ValueError(f"watts[{i}] must be a finite number >= 0, not {w!r}")
        object.__setattr__(self, "watts", watts)

    @property
    def end(self) -> datetime:
        """When the last step ends."""
        return self.start + timedelta(seconds=self.step_s * len(self.watts))

    def watts_at(self, when: datetime) -> float | None:
        """The planned power at ``when``, or None outside the schedule."""
        if when < self.start or when >= self.end:
            return None
        return self.watts[int((when - self.start).total_seconds() // self.step_s)]
