"""The composite schedule: what limit applies on a connector at each instant (OCPP 1.6 3.13.2-3.13.3
and 5.7, 2.0.1 K08), and the power an EV may draw from it.

Units (OCPP 1.6 ChargingRateUnitType, 2.0.1 ChargingRateUnitEnumType): amps are per phase, watts
are the total over the phases in use, so ``W = A x voltage x phases``. A :class:`Limit` keeps both a
per-phase current bound and a total power bound, because how much power an amp limit allows depends
on how many phases the EV charges on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from charge_point_sim.charger_model import ChargerSpec, ChargerState
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.profiles import (
    ChargingProfile,
    Purpose,
    RateUnit,
    SchedulePeriod,
    active_period,
    breakpoints,
    finite,
    is_aware,
)

# Two limits closer than this are the same limit when merging composite periods (float noise from
# A <-> W conversions, not a real change).
_MERGE_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Limit:
    """A limit at an instant: a per-phase current bound, a total power bound and the phases allowed.

    Either bound may be infinite (no bound of that kind). ``phases`` is the fewest phases any
    applicable period or the connector allows (1.6 3.13.7: the phases in use are limited by the
    charger, the EV and the cable).
    """

    power_w: float
    current_a: float
    phases: int

    def power(self, voltage_v: float, ev_phases: int | None = None) -> float:
        """Total power allowed (W) for an EV charging on ``ev_phases`` (default: all allowed)."""
        phases = self.phases if ev_phases is None else min(self.phases, ev_phases)
        return min(self.power_w, self.current_a * voltage_v * phases)

    def in_unit(self, unit: RateUnit, voltage_v: float) -> float:
        """The limit as one number in ``unit`` (A per phase over ``phases``, or W in total)."""
        watts = self.power(voltage_v)
        return watts if unit is RateUnit.W else watts / (voltage_v * self.phases)

    def tighten(self, other: Limit) -> Limit:
        """The limit that obeys both."""
        return Limit(
            min(self.power_w, other.power_w),
            min(self.current_a, other.current_a),
            min(self.phases, other.phases),
        )


def _period_limit(period: SchedulePeriod, unit: RateUnit) -> Limit:
    if unit is RateUnit.A:
        return Limit(math.inf, period.limit, period.phases)
    return Limit(period.limit, math.inf, period.phases)


def _hardware_limit(spec: ChargerSpec, connector_id: int) -> Limit:
    if connector_id == 0:
        phases = max(c.phases for c in spec.connectors)
        power = spec.station_max_power_w
    else:
        c = spec.connector(connector_id)
        phases, power = c.phases, c.max_power_w
    # The hardware limit is both a power and a per-phase current rating (cable, contactor).
    return Limit(power, power / (spec.voltage_v * phases), phases)


@dataclass(frozen=True, slots=True)
class _Candidates:
    """The profiles that can govern one connector, grouped by purpose, and the Relative anchor."""

    station_max: tuple[ChargingProfile, ...]
    tx_default: tuple[ChargingProfile, ...]
    tx: tuple[ChargingProfile, ...]
    tx_start: datetime | None

    def all(self) -> Iterable[ChargingProfile]:
        return (*self.station_max, *self.tx_default, *self.tx)


def _candidates(state: ChargerState, connector_id: int) -> _Candidates:
    station_max = state.profiles_on(0, Purpose.CHARGE_POINT_MAX)
    if connector_id == 0:
        return _Candidates(station_max, (), (), None)
    # 1.6 3.13.1 / 2.0.1 K01: TxDefault on connector 0 applies to every connector, unless that
    # connector has TxDefault profiles of its own, which then replace the connector-0 ones there
    # ("the TxDefaultProfile SHALL be replaced only for that specific connector").
    tx_default = state.profiles_on(connector_id, Purpose.TX_DEFAULT) or state.profiles_on(
        0, Purpose.TX_DEFAULT
    )
    tx = state.transaction_on(connector_id)
    tx_profiles: tuple[ChargingProfile, ...] = ()
    if tx is not None:
        tx_profiles = tuple(
            p
            for p in state.profiles_on(connector_id, Purpose.TX)
            if p.transaction_id is None or p.transaction_id == tx.transaction_id
        )
    return _Candidates(station_max, tx_default, tx_profiles, None if tx is None else tx.started_at)


def _winner(
    profiles: Iterable[ChargingProfile], t: datetime, anchor: datetime
) -> tuple[SchedulePeriod, RateUnit] | None:
    """Within one purpose the active profile with the highest stackLevel wins (1.6 3.13.2).

    A profile whose schedule does not cover ``t`` is not a candidate, so gaps in a high stack level
    fall through to lower ones.
    """
    best: tuple[int, SchedulePeriod, RateUnit] | None = None
    for p in profiles:
        period = active_period(p, t, anchor)
        if period is not None and (best is None or p.stack_level > best[0]):
            best = (p.stack_level, period, p.schedule.unit)
    return None if best is None else (best[1], best[2])


def _limit(
    spec: ChargerSpec, cands: _Candidates, connector_id: int, t: datetime, anchor: datetime
) -> Limit:
    limit = _hardware_limit(spec, connector_id)
    # 1.6 3.13.1: a TxProfile overrules TxDefault; 3.13.3: the composite is the minimum of that and
    # the station maximum (and, physically, the hardware).
    tx_or_default = _winner(cands.tx, t, anchor) or _winner(cands.tx_default, t, anchor)
    for found in (tx_or_default, _winner(cands.station_max, t, anchor)):
        if found is not None:
            limit = limit.tighten(_period_limit(*found))
    return limit


def connector_limit(
    spec: ChargerSpec, state: ChargerState, connector_id: int, t: datetime
) -> Limit:
    """The full limit on ``connector_id`` at ``t`` (current, power and phases).

    Without a transaction, Relative schedules are taken as starting at ``t`` (what would apply if a
    transaction started now).
    """
    if not is_aware(t):
        raise InvalidModelError("t must be timezone-aware")
    cands = _candidates(state, connector_id)
    anchor = cands.tx_start if cands.tx_start is not None else t
    return _limit(spec, cands, connector_id, t, anchor)


def limit_at(
    spec: ChargerSpec,
    state: ChargerState,
    connector_id: int,
    t: datetime,
    *,
    ev_phases: int | None = None,
) -> float:
    """The power (W) an EV on ``connector_id`` may draw at ``t``: composite limit and hardware max.

    ``ev_phases`` is how many phases the EV charges on; an amp limit allows less power to an EV on
    fewer phases. Default: every phase the limit allows.
    """
    return connector_limit(spec, state, connector_id, t).power(spec.voltage_v, ev_phases)


@dataclass(frozen=True, slots=True)
class CompositePeriod:
    """One period of a composite schedule: from ``start_s`` seconds after its start."""

    start_s: float
    limit: float
    number_phases: int


@dataclass(frozen=True, slots=True)
class CompositeSchedule:
    """What GetCompositeSchedule answers: the limits on a connector over ``[start, start+duration)``."""

    connector_id: int
    start: datetime
    duration_s: float
    unit: RateUnit
    periods: tuple[CompositePeriod, ...]

    def limit_at_offset(self, offset_s: float) -> float:
        """The limit in force ``offset_s`` seconds after ``start``."""
        found = self.periods[0]
        for p in self.periods:
            if p.start_s <= offset_s:
                found = p
            else:
                break
        return found.limit


def default_unit(spec: ChargerSpec) -> RateUnit:
    """The unit a charger answers in when the request names none: W unless it only knows amps."""
    allowed = spec.capabilities.allowed_units
    return RateUnit.A if allowed == frozenset({RateUnit.A}) else RateUnit.W


def limits_over(
    spec: ChargerSpec,
    state: ChargerState,
    connector_id: int,
    start: datetime,
    duration_s: float,
) -> list[tuple[float, Limit]]:
    """The limit on ``connector_id`` over ``[start, start + duration_s)``, piece by piece.

    Each item is (offset in seconds from ``start``, limit from there until the next item); the
    first offset is 0. Pieces are cut wherever any candidate profile may change and are not merged.
    Without a transaction, Relative schedules start at ``start``. Raises InvalidModelError.
    """
    if not is_aware(start):
        raise InvalidModelError("start must be timezone-aware")
    if not (finite(duration_s) and duration_s >= 0):
        raise InvalidModelError("duration_s must be a number >= 0")
    if connector_id != 0:
        spec.connector(connector_id)
    end = start + timedelta(seconds=duration_s)
    cands = _candidates(state, connector_id)
    anchor = cands.tx_start if cands.tx_start is not None else start
    cuts = {start}
    for p in cands.all():
        cuts.update(breakpoints(p, start, end, anchor))
    return [
        ((t - start).total_seconds(), _limit(spec, cands, connector_id, t, anchor))
        for t in sorted(cuts)
    ]


def composite_schedule(
    spec: ChargerSpec,
    state: ChargerState,
    connector_id: int,
    start: datetime,
    duration_s: float,
    unit: RateUnit | None = None,
) -> CompositeSchedule:
    """The composite schedule of ``connector_id`` over ``[start, start + duration_s)``.

    At each instant: per purpose the active profile with the highest stackLevel; Tx over TxDefault;
    then the minimum with ChargePointMax and the hardware max (1.6 3.13.3 and 5.7, 2.0.1 K08). Consecutive
    equal periods are merged. Without a transaction, Relative schedules start at ``start``. A
    duration of 0 gives the single limit in force at ``start``. Raises InvalidModelError.
    """
    out_unit = unit if unit is not None else default_unit(spec)
    periods: list[CompositePeriod] = []
    for offset, lim in limits_over(spec, state, connector_id, start, duration_s):
        value = lim.in_unit(out_unit, spec.voltage_v)
        if (
            periods
            and periods[-1].number_phases == lim.phases
            and math.isclose(
                periods[-1].limit, value, rel_tol=_MERGE_TOLERANCE, abs_tol=_MERGE_TOLERANCE
            )
        ):
            continue
        periods.append(CompositePeriod(offset, value, lim.phases))
    return CompositeSchedule(connector_id, start, duration_s, out_unit, tuple(periods))
