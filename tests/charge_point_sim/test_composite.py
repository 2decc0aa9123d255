"""Hand-worked composite schedules (OCPP 1.6 3.13.2, 2.0.1 K08).

Unless stated otherwise the charger has two 22 080 W three-phase connectors at 230 V, so its hardware
limit is 32 A per phase; limits below are in amps per phase.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from charge_point_sim.charger_model import ChargerState
from charge_point_sim.composite import composite_schedule, connector_limit, limit_at
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.profiles import Kind, Purpose, RateUnit, Recurrency
from tests.charge_point_sim.helpers import (
    HOUR,
    MAX_3PH_W,
    T0,
    V,
    install_all,
    periods,
    profile,
    spec,
)

EMPTY = ChargerState()


def test_no_profiles_gives_the_hardware_max() -> None:
    c = spec()
    assert periods(c, EMPTY, 1, T0, 4 * HOUR) == [(0.0, 32.0)]
    assert periods(c, EMPTY, 1, T0, HOUR, RateUnit.W) == [(0.0, MAX_3PH_W)]
    assert limit_at(c, EMPTY, 1, T0) == MAX_3PH_W


def test_higher_stack_level_wins_and_its_gaps_fall_through() -> None:
    c = spec()
    base = profile(1, [(0, 16)], stack=0)
    # Stack 1 from T0+1h for 2 h: 10 A for an hour, then 6 A.
    top = profile(2, [(0, 10), (HOUR, 6)], stack=1, start=T0 + timedelta(hours=1), duration=7200)
    state = install_all(c, EMPTY, (0, base), (0, top))
    assert periods(c, state, 1, T0, 4 * HOUR) == [
        (0.0, 16.0),
        (3600.0, 10.0),
        (7200.0, 6.0),
        (10800.0, 16.0),
    ]


def test_a_higher_stack_level_may_raise_the_limit_within_a_purpose() -> None:
    # Stacking is "highest wins", not "minimum": a stack-1 TxDefault of 20 A beats a stack-0 of 10 A.
    c = spec()
    state = install_all(c, EMPTY, (0, profile(1, [(0, 10)])), (0, profile(2, [(0, 20)], stack=1)))
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 20.0)]


def test_gap_before_the_first_period_of_a_higher_stack_does_not_apply_it() -> None:
    # An Absolute schedule that has not started yet does not govern anything.
    c = spec()
    later = profile(2, [(0, 8)], stack=3, start=T0 + timedelta(minutes=30))
    state = install_all(c, EMPTY, (0, profile(1, [(0, 16)])), (0, later))
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 16.0), (1800.0, 8.0)]


def test_valid_from_and_valid_to_bound_a_profile() -> None:
    c = spec()
    window = profile(
        2,
        [(0, 8)],
        stack=1,
        valid_from=T0 + timedelta(minutes=30),
        valid_to=T0 + timedelta(minutes=90),
    )
    state = install_all(c, EMPTY, (0, profile(1, [(0, 16)])), (0, window))
    assert periods(c, state, 1, T0, 2 * HOUR) == [(0.0, 16.0), (1800.0, 8.0), (5400.0, 16.0)]
    # validTo is exclusive: at exactly T0+90min the lower stack is back.
    assert limit_at(c, state, 1, T0 + timedelta(minutes=90)) == pytest.approx(16 * V * 3)
    assert limit_at(c, state, 1, T0 + timedelta(minutes=90) - timedelta(microseconds=1)) == (
        pytest.approx(8 * V * 3)
    )


def test_validity_cuts_a_schedule_period_in_the_middle() -> None:
    c = spec()
    p = profile(1, [(0, 10), (HOUR, 20)], start=T0, valid_to=T0 + timedelta(minutes=90))
    state = install_all(c, EMPTY, (0, p))
    assert periods(c, state, 1, T0, 2 * HOUR) == [(0.0, 10.0), (3600.0, 20.0), (5400.0, 32.0)]


def test_relative_schedule_starts_at_the_transaction_start() -> None:
    c = spec()
    tx_start = T0 + timedelta(minutes=10)
    state = EMPTY.start_transaction(1, "tx-1", tx_start)
    rel = profile(1, [(0, 6), (1800, 16)], kind=Kind.RELATIVE)
    state = install_all(c, state, (0, rel))
    # Asked from T0+20 min: 10 min into the schedule, 6 A until tx+30 min = 20 min later.
    assert periods(c, state, 1, T0 + timedelta(minutes=20), HOUR) == [(0.0, 6.0), (1200.0, 16.0)]
    # Before the transaction started the relative schedule had not begun: hardware max.
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 32.0), (600.0, 6.0), (2400.0, 16.0)]
    # Connector 2 has no transaction: its relative schedule starts at the start of the request.
    assert periods(c, state, 2, T0, HOUR) == [(0.0, 6.0), (1800.0, 16.0)]


def test_relative_tx_profile_with_duration_falls_back_to_tx_default() -> None:
    c = spec()
    state = EMPTY.start_transaction(1, "tx-1", T0)
    tx = profile(
        2, [(0, 20)], purpose=Purpose.TX, kind=Kind.RELATIVE, duration=HOUR, transaction_id="tx-1"
    )
    state = install_all(c, state, (0, profile(1, [(0, 10)])), (1, tx))
    assert periods(c, state, 1, T0, 2 * HOUR) == [(0.0, 20.0), (3600.0, 10.0)]


def test_recurring_daily_across_midnight() -> None:
    c = spec()
    # Every day from 22:00 UTC: 6 A for 8 h (until 06:00), then 16 A for the rest of the day.
    night = profile(
        1,
        [(0, 6), (8 * HOUR, 16)],
        kind=Kind.RECURRING,
        recurrency=Recurrency.DAILY,
        start=datetime(2026, 3, 1, 22, 0, tzinfo=UTC),
    )
    state = install_all(c, EMPTY, (0, night))
    start = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
    assert periods(c, state, 1, start, 12 * HOUR) == [(0.0, 16.0), (7200.0, 6.0), (36000.0, 16.0)]


def test_recurring_with_duration_leaves_a_daily_gap() -> None:
    c = spec()
    # 22:00-08:00 only (10 h): 6 A until 06:00, 16 A until 08:00, then nothing (hardware max).
    night = profile(
        1,
        [(0, 6), (8 * HOUR, 16)],
        kind=Kind.RECURRING,
        recurrency=Recurrency.DAILY,
        start=datetime(2026, 3, 1, 22, 0, tzinfo=UTC),
        duration=10 * HOUR,
    )
    state = install_all(c, EMPTY, (0, night))
    start = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    assert periods(c, state, 1, start, 24 * HOUR) == [
        (0.0, 6.0),
        (6 * 3600.0, 16.0),
        (8 * 3600.0, 32.0),
        (22 * 3600.0, 6.0),
    ]


def test_recurring_weekly_repeats_on_the_same_weekday() -> None:
    c = spec()
    monday = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    weekly = profile(
        1,
        [(0, 10)],
        kind=Kind.RECURRING,
        recurrency=Recurrency.WEEKLY,
        start=monday,
        duration=HOUR,
    )
    state = install_all(c, EMPTY, (0, weekly))
    next_monday = monday + timedelta(days=7)
    assert limit_at(c, state, 1, next_monday + timedelta(minutes=30)) == pytest.approx(10 * V * 3)
    assert limit_at(c, state, 1, next_monday + timedelta(days=1)) == pytest.approx(MAX_3PH_W)
    got = periods(c, state, 1, monday - timedelta(hours=1), 8 * 24 * HOUR)
    assert got == [(0.0, 32.0), (3600.0, 10.0), (7200.0, 32.0), (7 * 86400.0 + 3600, 10.0),
                   (7 * 86400.0 + 7200, 32.0)]  # fmt: skip


def test_amps_and_watts_on_three_phases() -> None:
    c = spec()
    state = install_all(c, EMPTY, (0, profile(1, [(0, 11040)], unit=RateUnit.W)))
    # 11 040 W over three phases at 230 V is 16 A per phase.
    assert periods(c, state, 1, T0, HOUR, RateUnit.A) == [(0.0, 16.0)]
    assert periods(c, state, 1, T0, HOUR, RateUnit.W) == [(0.0, 11040.0)]


def test_number_phases_one_in_amps_and_in_watts() -> None:
    c = spec()
    amps_1ph = profile(1, [(0, 16, 1)])
    state = install_all(c, EMPTY, (1, amps_1ph))
    cs = composite_schedule(c, state, 1, T0, HOUR, RateUnit.W)
    assert [(p.limit, p.number_phases) for p in cs.periods] == [(pytest.approx(3680.0), 1)]
    # A watt limit stays a total; on one phase 7360 W is 32 A.
    watts_1ph = profile(2, [(0, 7360, 1)], unit=RateUnit.W)
    state = install_all(c, EMPTY, (1, watts_1ph))
    cs = composite_schedule(c, state, 1, T0, HOUR, RateUnit.A)
    assert [(p.limit, p.number_phases) for p in cs.periods] == [(pytest.approx(32.0), 1)]


def test_single_phase_connector_converts_with_one_phase() -> None:
    c = spec(connectors=1, max_power_w=32 * V, phases=1)
    # numberPhases absent means 3, but the connector has only one: 16 A is 3680 W here.
    state = install_all(c, EMPTY, (0, profile(1, [(0, 16)])))
    assert periods(c, state, 1, T0, HOUR, RateUnit.W) == [(0.0, 3680.0)]
    assert periods(c, state, 1, T0, HOUR, RateUnit.A) == [(0.0, 16.0)]
    state = install_all(c, EMPTY, (0, profile(1, [(0, 5000)], unit=RateUnit.W)))
    assert periods(c, state, 1, T0, HOUR, RateUnit.A) == [(0.0, round(5000 / 230, 6))]


def test_amp_limit_gives_less_power_to_an_ev_on_fewer_phases() -> None:
    c = spec()
    state = install_all(c, EMPTY, (0, profile(1, [(0, 16)])))
    assert limit_at(c, state, 1, T0) == pytest.approx(16 * V * 3)
    assert limit_at(c, state, 1, T0, ev_phases=1) == pytest.approx(16 * V)
    # A watt limit is a total: a one-phase EV may use it up to the 32 A hardware current.
    state = install_all(c, EMPTY, (0, profile(1, [(0, 5000)], unit=RateUnit.W)))
    assert limit_at(c, state, 1, T0, ev_phases=1) == pytest.approx(5000)
    state = install_all(c, EMPTY, (0, profile(1, [(0, 11040)], unit=RateUnit.W)))
    assert limit_at(c, state, 1, T0, ev_phases=1) == pytest.approx(32 * V)


def test_charge_point_max_caps_a_tx_profile() -> None:
    c = spec()
    state = EMPTY.start_transaction(1, "tx-1", T0)
    cp_max = profile(1, [(0, 11040)], purpose=Purpose.CHARGE_POINT_MAX, unit=RateUnit.W)
    tx = profile(
        2, [(0, 32), (HOUR, 10)], purpose=Purpose.TX, kind=Kind.RELATIVE, transaction_id="tx-1"
    )
    state = install_all(c, state, (0, cp_max), (1, tx))
    assert periods(c, state, 1, T0, 2 * HOUR) == [(0.0, 16.0), (3600.0, 10.0)]
    assert limit_at(c, state, 1, T0) == pytest.approx(11040)


def test_tx_overrides_tx_default_even_when_higher() -> None:
    c = spec()
    state = EMPTY.start_transaction(1, "tx-1", T0)
    tx = profile(2, [(0, 20)], purpose=Purpose.TX, kind=Kind.RELATIVE)
    state = install_all(c, state, (0, profile(1, [(0, 10)], stack=5)), (1, tx))
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 20.0)]
    # Connector 2 has no transaction: only the TxDefault applies there.
    assert periods(c, state, 2, T0, HOUR) == [(0.0, 10.0)]


def test_tx_default_on_connector_zero_applies_unless_connector_has_its_own() -> None:
    c = spec()
    everywhere = profile(1, [(0, 16)], stack=5)
    only_2 = profile(2, [(0, 10)], stack=0)
    state = install_all(c, EMPTY, (0, everywhere), (2, only_2))
    assert periods(c, state, 1, T0, HOUR) == [(0.0, 16.0)]
    # Connector 2's own TxDefault replaces the connector-0 one there, whatever the stack levels.
    assert periods(c, state, 2, T0, HOUR) == [(0.0, 10.0)]


def test_connector_zero_composite_is_the_station_limit() -> None:
    c = spec(station_max_power_w=30000.0)
    cp_max = profile(1, [(0, 40000), (HOUR, 20000)], purpose=Purpose.CHARGE_POINT_MAX,
                     unit=RateUnit.W, start=T0)  # fmt: skip
    state = install_all(c, EMPTY, (0, cp_max), (0, profile(2, [(0, 6)])))
    # TxDefault does not govern the station; the station max (30 kW) caps the first hour.
    assert periods(c, state, 0, T0, 2 * HOUR, RateUnit.W) == [(0.0, 30000.0), (3600.0, 20000.0)]
    assert periods(c, EMPTY, 0, T0, HOUR, RateUnit.W) == [(0.0, 30000.0)]
    assert periods(spec(), EMPTY, 0, T0, HOUR, RateUnit.W) == [(0.0, 2 * MAX_3PH_W)]


def test_equal_consecutive_periods_are_merged() -> None:
    c = spec()
    # Stack 1 says 16 A for an hour, then 10 A; stack 0 says 16 A: the first hour is one period.
    top = profile(2, [(0, 16), (1800, 16), (HOUR, 10)], stack=1, start=T0, duration=2 * HOUR)
    state = install_all(c, EMPTY, (0, profile(1, [(0, 16)])), (0, top))
    assert periods(c, state, 1, T0, 3 * HOUR) == [(0.0, 16.0), (3600.0, 10.0), (7200.0, 16.0)]
    # 11 040 W and 16 A are the same on three phases: merged despite the unit change.
    w = profile(3, [(0, 11040)], unit=RateUnit.W, stack=2, start=T0 + timedelta(hours=3))
    state = install_all(c, state, (0, w))
    assert periods(c, state, 1, T0 + timedelta(hours=2), 2 * HOUR) == [(0.0, 16.0)]


def test_duration_zero_gives_the_limit_now() -> None:
    c = spec()
    state = install_all(c, EMPTY, (0, profile(1, [(0, 16)])))
    cs = composite_schedule(c, state, 1, T0, 0)
    assert [(p.start_s, p.limit) for p in cs.periods] == [(0.0, pytest.approx(16 * V * 3))]
    assert cs.unit is RateUnit.W


def test_composite_answers_in_amps_when_the_charger_only_knows_amps() -> None:
    from charge_point_sim.charger_model import Capabilities

    c = spec(capabilities=Capabilities(allowed_units=frozenset({RateUnit.A})))
    assert composite_schedule(c, EMPTY, 1, T0, HOUR).unit is RateUnit.A


def test_limit_at_offset_reads_the_composite() -> None:
    c = spec()
    state = install_all(c, EMPTY, (0, profile(1, [(0, 10), (HOUR, 20)], start=T0)))
    cs = composite_schedule(c, state, 1, T0, 2 * HOUR, RateUnit.A)
    assert cs.limit_at_offset(0) == pytest.approx(10)
    assert cs.limit_at_offset(3599.9) == pytest.approx(10)
    assert cs.limit_at_offset(3600) == pytest.approx(20)


def test_connector_limit_reports_phases_and_bounds() -> None:
    c = spec()
    state = install_all(c, EMPTY, (0, profile(1, [(0, 16, 2)])))
    lim = connector_limit(c, state, 1, T0)
    assert lim.phases == 2
    assert lim.current_a == 16
    assert lim.power(V) == pytest.approx(16 * V * 2)


@pytest.mark.parametrize(
    ("connector_id", "start", "duration"),
    [
        (3, T0, HOUR),
        (1, datetime(2026, 3, 2), HOUR),  # naive
        (1, T0, -1),
        (1, T0, float("nan")),
    ],
)
def test_bad_composite_requests_raise(connector_id: int, start: datetime, duration: float) -> None:
    with pytest.raises(InvalidModelError):
        composite_schedule(spec(), EMPTY, connector_id, start, duration)
