"""A pure model of an EV on AC charging, and the meter that watches it.

The EV accepts up to ``max_power_w`` until ``taper_start_soc``; above it, its acceptance falls
linearly to ``taper_end_fraction x max_power_w`` at 100 % SoC (the constant-voltage phase of a real
battery, so the draw drops below the charger's limit near full). It stops at ``target_soc``.

:func:`step` integrates a step exactly: the power drawn is ``min(limit, acceptance(SoC))``, and
while the acceptance binds SoC follows ``ds/dt = (alpha - beta s) / C``, a linear ODE with a closed
form. So a step of any length gives the same energy as many small steps, and SoC never overshoots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

from charge_point_sim.errors import InvalidModelError
from charge_point_sim.profiles import finite, is_aware

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Ev:
    """An EV plugged in (or about to be). ``soc`` and ``target_soc`` are fractions in [0, 1].

    ``energy_needed_wh`` is what the EV declares (ISO 15118 / the driver), which may differ from
    what the battery takes before ``target_soc``; None means "up to the target". ``min_power_w``:
    the EV draws nothing when the limit is below it (IEC 61851: no charging under 6 A per phase).
    ``delivered_wh`` counts the energy received so far. ``iso15118``: the EV talks ISO 15118 to
    the charger, so a 2.0.1 station tells the central system its needs (see
    :mod:`charge_point_sim.iso15118`).
    """

    capacity_kwh: float
    soc: float
    max_power_w: float
    phases: int = 3
    target_soc: float = 1.0
    energy_needed_wh: float | None = None
    departure: datetime | None = None
    taper_start_soc: float = 0.8
    taper_end_fraction: float = 0.1
    min_power_w: float = 0.0
    delivered_wh: float = 0.0
    iso15118: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not (finite(self.capacity_kwh) and self.capacity_kwh > 0):
            problems.append("capacity_kwh must be > 0")
        if not (finite(self.soc) and 0.0 <= self.soc <= 1.0):
            problems.append("soc must be within [0, 1]")
        if not (finite(self.target_soc) and 0.0 <= self.target_soc <= 1.0):
            problems.append("target_soc must be within [0, 1]")
        if not (finite(self.max_power_w) and self.max_power_w > 0):
            problems.append("max_power_w must be > 0")
        if self.phases not in (1, 2, 3):
            problems.append("phases must be 1, 2 or 3")
        if not (finite(self.taper_start_soc) and 0.0 < self.taper_start_soc <= 1.0):
            problems.append("taper_start_soc must be within (0, 1]")
        if not (finite(self.taper_end_fraction) and 0.0 < self.taper_end_fraction <= 1.0):
            # > 0 so that the battery reaches 100 % in finite time.
            problems.append("taper_end_fraction must be within (0, 1]")
        if not (finite(self.min_power_w) and self.min_power_w >= 0):
            problems.append("min_power_w must be >= 0")
        if self.energy_needed_wh is not None and not (
            finite(self.energy_needed_wh) and self.energy_needed_wh >= 0
        ):
            problems.append("energy_needed_wh must be >= 0")
        if not (finite(self.delivered_wh) and self.delivered_wh >= 0):
            problems.append("delivered_wh must be >= 0")
        if not is_aware(self.departure):
            problems.append("departure must be timezone-aware")
        if problems:
            raise InvalidModelError("; ".join(problems))

    @property
    def capacity_wh(self) -> float:
        """Battery capacity in Wh."""
        return self.capacity_kwh * 1000.0

    @property
    def room_wh(self) -> float:
        """Energy the battery still takes before ``target_soc``."""
        return max(0.0, (self.target_soc - self.soc) * self.capacity_wh)

    @property
    def needs_wh(self) -> float:
        """Energy the EV still asks for: the declared need minus what it got, else ``room_wh``."""
        if self.energy_needed_wh is None:
            return self.room_wh
        return max(0.0, self.energy_needed_wh - self.delivered_wh)

    @property
    def full(self) -> bool:
        """Whether the EV has reached its target and draws nothing more."""
        return self.soc >= self.target_soc


def acceptance_w(ev: Ev) -> float:
    """The most the EV accepts at its current SoC (the taper near full; 0 once at its target)."""
    if ev.full:
        return 0.0
    return _taper(ev, ev.soc)


def _taper(ev: Ev, soc: float) -> float:
    if soc <= ev.taper_start_soc:
        return ev.max_power_w
    span = 1.0 - ev.taper_start_soc
    drop = (1.0 - ev.taper_end_fraction) * (soc - ev.taper_start_soc) / span
    return ev.max_power_w * (1.0 - drop)


def _offered(ev: Ev, limit_w: float) -> float:
    """The limit as the EV uses it: 0 under its minimum, never above its own maximum."""
    if not (limit_w >= ev.min_power_w and limit_w > 0):
        return 0.0
    return min(limit_w, ev.max_power_w)


def power_at(ev: Ev, limit_w: float) -> float:
    """The power (W) the EV draws right now under ``limit_w``: min(limit, EV max, taper)."""
    return min(_offered(ev, limit_w), acceptance_w(ev))


def step(ev: Ev, limit_w: float, dt_s: float) -> tuple[Ev, float]:
    """Charge ``ev`` for ``dt_s`` seconds under a constant ``limit_w``: the new EV and Wh received.

    Exact for the piecewise model: constant power while the limit binds, then the closed-form
    solution of the taper ODE, and nothing once ``target_soc`` is reached. Raises InvalidModelError
    on a negative or non-finite ``dt_s`` or a NaN limit.
    """
    if not (finite(dt_s) and dt_s >= 0):
        raise InvalidModelError("dt_s must be a number >= 0")
    if math.isnan(limit_w):
        raise InvalidModelError("limit_w must be a number")
    cap_wh = ev.capacity_wh
    target = ev.target_soc
    s = ev.soc
    power = _offered(ev, limit_w)
    remaining = dt_s
    energy = 0.0
    if power <= 0 or s >= target or remaining == 0:
        return ev, 0.0

    # Phase 1: the limit binds while the taper still accepts at least ``power``, i.e. up to the SoC
    # where the taper line meets the limit (or the target, whichever comes first).
    start_s = ev.taper_start_soc
    slope = ev.max_power_w * (1.0 - ev.taper_end_fraction) / (1.0 - start_s) if start_s < 1 else 0.0
    meet = target if slope == 0 else start_s + (ev.max_power_w - power) / slope
    bound = min(target, max(meet, s))
    if s < bound:
        t_needed = (bound - s) * cap_wh * SECONDS_PER_HOUR / power
        if remaining < t_needed:
            energy = power * remaining / SECONDS_PER_HOUR
            new_soc = min(bound, s + energy / cap_wh)
            return _advanced(ev, new_soc, energy), energy
        energy = (bound - s) * cap_wh
        s = bound
        remaining -= t_needed
    if s >= target or remaining <= 0 or slope == 0:
        return _advanced(ev, s, energy), energy

    # Phase 2: the taper binds. ds/dt = (alpha - beta s) / (3600 C) with acceptance = alpha - beta s,
    # so s(t) = s_inf - (s_inf - s0) exp(-beta t / (3600 C)), with s_inf > 1 >= target.
    beta = slope
    s_inf = (ev.max_power_w + beta * start_s) / beta
    tau = cap_wh * SECONDS_PER_HOUR / beta
    # log1p / expm1: with a gentle taper s_inf is huge and the plain forms lose every digit.
    t_to_target = tau * math.log1p((target - s) / (s_inf - target))
    if remaining >= t_to_target:
        new_soc = target
    else:
        new_soc = min(target, s - (s_inf - s) * math.expm1(-remaining / tau))
    energy += (new_soc - s) * cap_wh
    return _advanced(ev, new_soc, energy), energy


def _advanced(ev: Ev, soc: float, energy_wh: float) -> Ev:
    return replace(ev, soc=min(soc, ev.target_soc), delivered_wh=ev.delivered_wh + energy_wh)


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One sample of the measurands a charger reports (OCPP 1.6 3.16, 2.0.1 J01 MeterValues).

    ``energy_wh`` is Energy.Active.Import.Register, ``power_w`` Power.Active.Import, ``current_a``
    Current.Import per phase in use, ``soc_percent`` SoC (None when the EV does not report it).
    """

    timestamp: datetime
    energy_wh: float
    power_w: float
    current_a: float
    voltage_v: float
    phases: int
    soc_percent: float | None


@dataclass(frozen=True, slots=True)
class Meter:
    """A connector's energy meter: a register that only ever goes up."""

    register_wh: float = 0.0

    def add(self, energy_wh: float) -> Meter:
        """The meter after ``energy_wh`` more flowed. Raises InvalidModelError on negative energy."""
        if not (finite(energy_wh) and energy_wh >= 0):
            raise InvalidModelError("energy flows one way: energy_wh must be >= 0")
        return Meter(self.register_wh + energy_wh)

    def read(
        self,
        timestamp: datetime,
        power_w: float,
        *,
        voltage_v: float,
        phases: int,
        soc: float | None = None,
    ) -> MeterReading:
        """A consistent sample: current = power / (voltage x phases), SoC in percent."""
        if not is_aware(timestamp):
            raise InvalidModelError("timestamp must be timezone-aware")
        if phases not in (1, 2, 3) or not (finite(voltage_v) and voltage_v > 0):
            raise InvalidModelError("phases must be 1..3 and voltage_v > 0")
        if not (finite(power_w) and power_w >= 0):
            raise InvalidModelError("power_w must be >= 0")
        return MeterReading(
            timestamp=timestamp,
            energy_wh=self.register_wh,
            power_w=power_w,
            current_a=power_w / (voltage_v * phases),
            voltage_v=voltage_v,
            phases=phases,
            soc_percent=None if soc is None else 100.0 * soc,
        )
