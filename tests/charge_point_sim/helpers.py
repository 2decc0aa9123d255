"""Builders shared by the simulator model tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from charge_point_sim.charger_model import (
    Capabilities,
    ChargerSpec,
    ChargerState,
    set_charging_profile,
)
from charge_point_sim.composite import composite_schedule
from charge_point_sim.profiles import (
    ChargingProfile,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
    Schedule,
    SchedulePeriod,
)

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
LONG_AGO = T0 - timedelta(days=30)
HOUR = 3600
V = 230.0
# 32 A on three phases at 230 V.
MAX_3PH_W = 32 * V * 3


def spec(
    connectors: int = 2,
    max_power_w: float = MAX_3PH_W,
    phases: int = 3,
    capabilities: Capabilities | None = None,
    station_max_power_w: float | None = None,
) -> ChargerSpec:
    """A charger of identical connectors (22 kW, three phases by default)."""
    return ChargerSpec.uniform(
        connectors,
        max_power_w,
        phases=phases,
        capabilities=capabilities,
        station_max_power_w=station_max_power_w,
    )


def profile(
    pid: int,
    periods: Sequence[tuple[int, float] | tuple[int, float, int]],
    *,
    purpose: Purpose = Purpose.TX_DEFAULT,
    stack: int = 0,
    unit: RateUnit = RateUnit.A,
    kind: Kind = Kind.ABSOLUTE,
    start: datetime | None = LONG_AGO,
    duration: int | None = None,
    recurrency: Recurrency | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    transaction_id: str | None = None,
) -> ChargingProfile:
    """A profile from (startPeriod, limit[, numberPhases]) tuples; Absolute from long ago by default."""
    if kind is Kind.RELATIVE and start is LONG_AGO:
        start = None
    sched = Schedule(
        unit=unit,
        periods=tuple(SchedulePeriod(*p) for p in periods),
        duration_s=duration,
        start_schedule=start,
    )
    return ChargingProfile(
        id=pid,
        stack_level=stack,
        purpose=purpose,
        kind=kind,
        schedule=sched,
        recurrency=recurrency,
        valid_from=valid_from,
        valid_to=valid_to,
        transaction_id=transaction_id,
    )


def install_all(
    charger: ChargerSpec, state: ChargerState, *items: tuple[int, ChargingProfile]
) -> ChargerState:
    """Install (connector, profile) pairs, failing the test on any rejection."""
    for connector_id, p in items:
        state, reason = set_charging_profile(charger, state, connector_id, p)
        assert reason is None, reason
    return state


def periods(
    charger: ChargerSpec,
    state: ChargerState,
    connector_id: int,
    start: datetime,
    duration_s: float,
    unit: RateUnit = RateUnit.A,
) -> list[tuple[float, float]]:
    """The composite as (offset, limit) pairs, limits rounded to 6 decimals for comparison."""
    cs = composite_schedule(charger, state, connector_id, start, duration_s, unit)
    return [(p.start_s, round(p.limit, 6)) for p in cs.periods]
