"""Invariants over random profiles and EVs (hypothesis)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charge_point_sim.charger_model import ChargerSpec, ChargerState, set_charging_profile
from charge_point_sim.charging import charge, charge_station, share_station_power
from charge_point_sim.composite import composite_schedule, limit_at, limits_over
from charge_point_sim.ev_model import Ev, Meter, power_at, step
from charge_point_sim.profiles import (
    ChargingProfile,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
    Schedule,
    SchedulePeriod,
    active_period,
)
from tests.charge_point_sim.helpers import T0

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Drawing a whole charger with its profiles is the slow part: fewer examples keep the suite quick.
SETUP_SETTINGS = settings(SETTINGS, max_examples=60)
V = 230.0
DAY_S = 86400
TX_START = {1: T0 - timedelta(hours=2), 2: T0 + timedelta(hours=3)}


@st.composite
def chargers(draw: st.DrawFn) -> ChargerSpec:
    phases = draw(st.sampled_from([1, 3]))
    amps = draw(st.sampled_from([16, 32]))
    return ChargerSpec.uniform(2, amps * V * phases, phases=phases, voltage_v=V)


@st.composite
def schedules(draw: st.DrawFn, kind: Kind) -> Schedule:
    unit = draw(st.sampled_from(RateUnit))
    n = draw(st.integers(1, 4))
    starts = sorted(draw(st.sets(st.integers(1, 6 * 3600), min_size=n - 1, max_size=n - 1)))
    top = 40.0 if unit is RateUnit.A else 30000.0
    periods = tuple(
        SchedulePeriod(
            s,
            draw(st.floats(0, top, allow_nan=False).map(lambda x: round(x, 1))),
            draw(st.sampled_from([None, 1, 2, 3])),
        )
        for s in [0, *starts]
    )
    start = None
    if kind is not Kind.RELATIVE:
        start = T0 + timedelta(seconds=draw(st.integers(-DAY_S, DAY_S)))
    duration = draw(st.one_of(st.none(), st.integers(0, 2 * DAY_S)))
    return Schedule(unit, periods, duration, start)


@st.composite
def placed_profiles(draw: st.DrawFn, pid: int) -> tuple[int, ChargingProfile]:
    purpose = draw(st.sampled_from([Purpose.TX_DEFAULT, Purpose.TX_DEFAULT, Purpose.TX]))
    kind = draw(st.sampled_from(Kind))
    recurrency = draw(st.sampled_from(Recurrency)) if kind is Kind.RECURRING else None
    valid_from = valid_to = None
    if draw(st.booleans()):
        valid_from = T0 + timedelta(seconds=draw(st.integers(-DAY_S, DAY_S)))
        valid_to = valid_from + timedelta(seconds=draw(st.integers(1, DAY_S)))
    profile = ChargingProfile(
        id=pid,
        stack_level=draw(st.integers(0, 3)),
        purpose=purpose,
        kind=kind,
        schedule=draw(schedules(kind)),
        recurrency=recurrency,
        valid_from=valid_from,
        valid_to=valid_to,
    )
    connector = draw(st.sampled_from([1, 2] if purpose is Purpose.TX else [0, 1, 2]))
    return connector, profile


@st.composite
def station_max(draw: st.DrawFn) -> ChargingProfile:
    kind = draw(st.sampled_from([Kind.ABSOLUTE, Kind.RECURRING]))
    return ChargingProfile(
        id=100,
        stack_level=draw(st.integers(0, 3)),
        purpose=Purpose.CHARGE_POINT_MAX,
        kind=kind,
        schedule=draw(schedules(kind)),
        recurrency=Recurrency.DAILY if kind is Kind.RECURRING else None,
    )


@dataclass(frozen=True)
class Setup:
    charger: ChargerSpec
    state: ChargerState
    cp_max: ChargingProfile | None


@st.composite
def setups(draw: st.DrawFn) -> Setup:
    charger = draw(chargers())
    state = ChargerState()
    for c, t in TX_START.items():
        state = state.start_transaction(c, f"tx-{c}", t)
    n = draw(st.integers(0, 6))
    for i in range(n):
        connector, p = draw(placed_profiles(i + 1))
        state, reason = set_charging_profile(charger, state, connector, p)
        assert reason is None, reason
    cp_max = draw(st.one_of(st.none(), station_max()))
    if cp_max is not None:
        state, reason = set_charging_profile(charger, state, 0, cp_max)
        assert reason is None, reason
    return Setup(charger, state, cp_max)


def watts(p: SchedulePeriod, unit: RateUnit, connector_phases: int) -> float:
    if unit is RateUnit.W:
        return p.limit
    return p.limit * V * min(p.phases, connector_phases)


offsets = st.lists(st.integers(-DAY_S, 2 * DAY_S), min_size=1, max_size=8)


@SETUP_SETTINGS
@given(setups(), st.sampled_from([1, 2]), offsets)
def test_limit_never_above_station_max_or_hardware(s: Setup, connector: int, at: list[int]) -> None:
    hw = s.charger.connector(connector)
    for off in at:
        t = T0 + timedelta(seconds=off)
        got = limit_at(s.charger, s.state, connector, t)
        assert 0.0 <= got <= hw.max_power_w * (1 + 1e-12)
        for ev_phases in (1, 2, 3):
            assert limit_at(s.charger, s.state, connector, t, ev_phases=ev_phases) <= got + 1e-9
        if s.cp_max is not None:
            p = active_period(s.cp_max, t, t)
            if p is not None:
                assert got <= watts(p, s.cp_max.schedule.unit, hw.phases) + 1e-6


@SETUP_SETTINGS
@given(setups(), st.sampled_from([0, 1, 2]), st.integers(-DAY_S, DAY_S), offsets)
def test_composite_agrees_with_limit_at_and_is_well_formed(
    s: Setup, connector: int, start_off: int, at: list[int]
) -> None:
    start = T0 + timedelta(seconds=start_off)
    duration = 2 * DAY_S
    cs = composite_schedule(s.charger, s.state, connector, start, duration, RateUnit.W)
    starts = [p.start_s for p in cs.periods]
    assert starts[0] == 0.0
    assert starts == sorted(set(starts))
    for a, b in zip(cs.periods, cs.periods[1:], strict=False):
        assert (a.limit, a.number_phases) != (b.limit, b.number_phases)
    if connector != 0:
        # With a transaction on every connector, every Relative schedule has the same anchor
        # whether asked for a window or an instant.
        for off in at:
            off_in = off % duration
            t = start + timedelta(seconds=off_in)
            expected = limit_at(s.charger, s.state, connector, t)
            assert math.isclose(cs.limit_at_offset(off_in), expected, rel_tol=1e-9, abs_tol=1e-9)
        amps = composite_schedule(s.charger, s.state, connector, start, duration, RateUnit.A)
        for p in amps.periods:
            w = cs.limit_at_offset(p.start_s)
            assert math.isclose(p.limit * V * p.number_phases, w, rel_tol=1e-9, abs_tol=1e-9)


@SETUP_SETTINGS
@given(
    setups(),
    st.one_of(st.none(), st.integers(0, 2)),
    st.one_of(st.none(), st.sampled_from(Purpose)),
    st.one_of(st.none(), st.integers(0, 3)),
)
def test_replacement_rules_hold_and_clear_removes_exactly_the_matching_profiles(
    s: Setup, connector: int | None, purpose: Purpose | None, stack: int | None
) -> None:
    ids = [ip.profile.id for ip in s.state.profiles]
    assert len(ids) == len(set(ids))
    keys = [
        (ip.connector_id, ip.profile.stack_level, ip.profile.purpose) for ip in s.state.profiles
    ]
    assert len(keys) == len(set(keys))
    new, n = s.state.clear(connector_id=connector, purpose=purpose, stack_level=stack)
    assert n + len(new.profiles) == len(s.state.profiles)
    for ip in new.profiles:
        assert not (
            (connector is None or ip.connector_id == connector)
            and (purpose is None or ip.profile.purpose is purpose)
            and (stack is None or ip.profile.stack_level == stack)
        )
    ended = s.state.end_transaction(1)
    assert not ended.profiles_on(1, Purpose.TX)
    assert ended.profiles_on(2, Purpose.TX) == s.state.profiles_on(2, Purpose.TX)


@st.composite
def evs(draw: st.DrawFn) -> Ev:
    soc = draw(st.floats(0, 1))
    return Ev(
        capacity_kwh=draw(st.floats(5, 120)),
        soc=soc,
        max_power_w=draw(st.floats(1000, 22000)),
        phases=draw(st.sampled_from([1, 3])),
        target_soc=draw(st.floats(soc, 1)),
        taper_start_soc=draw(st.floats(0.5, 1)),
        taper_end_fraction=draw(st.floats(0.02, 1)),
        min_power_w=draw(st.sampled_from([0.0, 1380.0])),
    )


limits = st.floats(0, 30000)


@SETTINGS
@given(evs(), limits, st.floats(0, 48 * 3600))
def test_step_never_overfills_nor_exceeds_the_limit(ev: Ev, limit: float, dt: float) -> None:
    new, energy = step(ev, limit, dt)
    assert energy >= 0.0
    assert energy <= ev.room_wh * (1 + 1e-9) + 1e-9
    assert ev.soc <= new.soc <= ev.target_soc
    assert energy <= min(limit, ev.max_power_w) * dt / 3600.0 * (1 + 1e-9) + 1e-9
    assert power_at(new, limit) <= min(limit, ev.max_power_w)
    assert math.isclose(new.delivered_wh, ev.delivered_wh + energy, rel_tol=1e-12, abs_tol=1e-9)


@SETTINGS
@given(evs(), limits, st.floats(0, 12 * 3600), st.floats(0, 12 * 3600))
def test_step_is_the_same_in_one_go_or_in_two(ev: Ev, limit: float, a: float, b: float) -> None:
    whole, e = step(ev, limit, a + b)
    half, e1 = step(ev, limit, a)
    rest, e2 = step(half, limit, b)
    assert math.isclose(e, e1 + e2, rel_tol=1e-7, abs_tol=1e-6)
    assert math.isclose(whole.soc, rest.soc, rel_tol=1e-9, abs_tol=1e-9)


@SETTINGS
@given(evs(), st.lists(st.tuples(limits, st.floats(1, 3600)), min_size=1, max_size=30))
def test_meter_register_is_monotonic(ev: Ev, plan: list[tuple[float, float]]) -> None:
    meter = Meter()
    last = 0.0
    for limit, dt in plan:
        ev, energy = step(ev, limit, dt)
        meter = meter.add(energy)
        assert meter.register_wh >= last
        last = meter.register_wh
    assert math.isclose(meter.register_wh, ev.delivered_wh, rel_tol=1e-9, abs_tol=1e-6)


@SETUP_SETTINGS
@given(setups(), evs(), st.integers(-DAY_S, DAY_S), st.floats(1, 6 * 3600))
def test_charging_on_a_charger_stays_under_the_composite(
    s: Setup, ev: Ev, start_off: int, dt: float
) -> None:
    start = T0 + timedelta(seconds=start_off)
    new, energy = charge(s.charger, s.state, 1, ev, start, dt)
    pieces = limits_over(s.charger, s.state, 1, start, dt)
    allowed = sum(
        lim.power(V, ev.phases) * ((pieces[i + 1][0] if i + 1 < len(pieces) else dt) - off)
        for i, (off, lim) in enumerate(pieces)
    )
    assert energy <= allowed / 3600.0 * (1 + 1e-9) + 1e-9
    assert energy <= ev.room_wh * (1 + 1e-9) + 1e-9
    assert new.soc <= ev.target_soc


@SETTINGS
@given(
    st.floats(0, 50000),
    st.dictionaries(st.integers(1, 4), st.floats(0, 30000), max_size=4),
)
def test_station_shares_never_exceed_the_station_or_the_wants(
    station: float, wanted: dict[int, float]
) -> None:
    shares = share_station_power(station, wanted)
    assert set(shares) == set(wanted)
    assert sum(shares.values()) <= station * (1 + 1e-12) + 1e-9
    for c, w in wanted.items():
        assert 0.0 <= shares[c] <= w
    if sum(wanted.values()) <= station:
        assert shares == pytest.approx(wanted)


@SETUP_SETTINGS
@given(setups(), evs(), evs(), st.integers(-DAY_S, DAY_S), st.floats(1, 3 * 3600))
def test_station_draw_stays_under_its_limit(
    s: Setup, ev1: Ev, ev2: Ev, start_off: int, dt: float
) -> None:
    start = T0 + timedelta(seconds=start_off)
    out = charge_station(s.charger, s.state, {1: ev1, 2: ev2}, start, dt)
    pieces = limits_over(s.charger, s.state, 0, start, dt)
    allowed = sum(
        lim.power(V) * ((pieces[i + 1][0] if i + 1 < len(pieces) else dt) - off)
        for i, (off, lim) in enumerate(pieces)
    )
    assert out[1][1] + out[2][1] <= allowed / 3600.0 * (1 + 1e-9) + 1e-6
    alone = {c: charge(s.charger, s.state, c, ev, start, dt)[1] for c, ev in ((1, ev1), (2, ev2))}
    for c in (1, 2):
        # Sharing can only take power away from a connector, never give it more.
        assert out[c][1] <= alone[c] * (1 + 1e-9) + 1e-6
