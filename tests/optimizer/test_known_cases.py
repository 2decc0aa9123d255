"""Small cases whose optimum is worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import Method, Status, Weights, solve
from tests.optimizer.helpers import check_plan, problem, session


@pytest.fixture(params=["highs", "pyomo"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_single_session_limited_by_max_power(engine: str) -> None:
    # 1 h window, 7 kW max: at most 7 kWh of the 10 needed.
    p = problem([session("a", 0, 60, 10.0, 7.0)], 100.0, step_minutes=15, steps=8)
    r = solve(p, engine=engine)
    assert r.status is Status.OPTIMAL
    np.testing.assert_allclose(r.session_power("a"), [7, 7, 7, 7, 0, 0, 0, 0], atol=1e-6)
    assert r.delivered_kwh[0] == pytest.approx(7.0)
    assert r.unmet_kwh[0] == pytest.approx(3.0)
    check_plan(p, r)


def test_charges_as_early_as_possible(engine: str) -> None:
    # 5 kWh over four 1 h steps at up to 10 kW: all of it in the first step.
    p = problem([session("a", 0, 240, 5.0, 10.0)], 100.0, steps=4)
    r = solve(p, engine=engine)
    np.testing.assert_allclose(r.session_power("a"), [5, 0, 0, 0], atol=1e-6)


def test_cap_shared_so_both_are_served() -> None:
    # Cap 10 kW for 2 h, two sessions needing 10 kWh each at up to 10 kW: 20 kWh fit exactly.
    p = problem([session("a", 0, 120, 10, 10), session("b", 0, 120, 10, 10)], 10.0, steps=2)
    r = solve(p)
    np.testing.assert_allclose(r.delivered_kwh, [10, 10], atol=1e-6)
    np.testing.assert_allclose(r.site_power_kw, [10, 10], atol=1e-6)
    check_plan(p, r)


def test_deadline_respected_when_cap_binds() -> None:
    # a leaves after 1 h, b stays 2 h; cap 10 kW: a must get step 0, b step 1 (both fully served).
    p = problem([session("a", 0, 60, 10, 10), session("b", 0, 120, 10, 10)], 10.0, steps=2)
    r = solve(p)
    np.testing.assert_allclose(r.session_power("a"), [10, 0], atol=1e-6)
    np.testing.assert_allclose(r.session_power("b"), [0, 10], atol=1e-6)
    assert r.kpis.sessions_fully_served == 2


def test_priority_decides_who_gets_scarce_power(engine: str) -> None:
    p = problem(
        [session("low", 0, 60, 10, 10, priority=1.0), session("high", 0, 60, 10, 10, priority=2.0)],
        10.0,
        steps=1,
    )
    r = solve(p, engine=engine)
    assert r.delivered_kwh.tolist() == pytest.approx([0.0, 10.0], abs=1e-6)


def test_partial_steps_use_only_the_share_inside_the_window(engine: str) -> None:
    # Arrives at 00:30 on a 1 h grid, leaves 02:00: step 0 gives half an hour, step 1 a full hour.
    p = problem([session("a", 30, 120, 100, 10)], 100.0, steps=3)
    r = solve(p, engine=engine)
    np.testing.assert_allclose(r.session_power("a"), [10, 10, 0], atol=1e-6)
    assert r.delivered_kwh[0] == pytest.approx(15.0)
    check_plan(p, r)


def test_partial_step_still_counts_fully_against_the_cap() -> None:
    # a leaves at 00:30, b arrives at 00:30, both in step 0: the cap (10 kW) must hold if both draw.
    p = problem([session("a", 0, 30, 100, 10), session("b", 30, 60, 100, 10)], 10.0, steps=1)
    r = solve(p)
    assert r.site_power_kw[0] == pytest.approx(10.0)
    assert r.delivered_kwh.sum() == pytest.approx(5.0)  # 10 kW for half an hour


def test_cheaper_step_preferred_over_earlier(engine: str) -> None:
    p = problem([session("a", 0, 120, 10, 10)], 100.0, steps=2, prices=[0.30, 0.10])
    r = solve(p, engine=engine)
    np.testing.assert_allclose(r.session_power("a"), [0, 10], atol=1e-6)
    assert r.kpis.energy_cost == pytest.approx(1.0)


def test_energy_comes_before_price() -> None:
    # Even at a very high price every kWh that fits is delivered.
    p = problem([session("a", 0, 120, 20, 10)], 100.0, steps=2, prices=[100.0, 0.01])
    r = solve(p)
    assert r.delivered_kwh[0] == pytest.approx(20.0)


def test_cap_per_step() -> None:
    p = problem([session("a", 0, 180, 100, 22)], [5.0, 0.0, 12.5], steps=3)
    r = solve(p)
    np.testing.assert_allclose(r.session_power("a"), [5, 0, 12.5], atol=1e-6)


def test_peak_term_flattens_without_losing_energy() -> None:
    # 20 kWh over 4 h with 10 kW: without the peak term it charges early at 10 kW; with it, 5 kW.
    p = problem([session("a", 0, 240, 20, 10)], 100.0, steps=4)
    flat = solve(p, weights=Weights(peak=0.5, early=0.01))
    assert flat.delivered_kwh[0] == pytest.approx(20.0)
    assert flat.kpis.peak_kw == pytest.approx(5.0)
    early = solve(p)
    assert early.kpis.peak_kw == pytest.approx(10.0)


def test_session_already_plugged_in_before_start() -> None:
    p = problem([session("a", -300, 60, 8, 11)], 100.0, steps=2)
    r = solve(p)
    np.testing.assert_allclose(r.session_power("a"), [8, 0], atol=1e-6)


def test_session_departing_after_the_horizon_is_clipped() -> None:
    p = problem([session("a", 0, 600, 50, 10)], 100.0, steps=2)
    r = solve(p)
    assert r.delivered_kwh[0] == pytest.approx(20.0)
    assert r.unmet_kwh[0] == pytest.approx(30.0)


def test_methods_report_what_they_are() -> None:
    p = problem([session("a", 0, 60, 5, 7)], 10.0, steps=1)
    for m in Method:
        r = solve(p, m)
        assert r.method is m
        assert r.status.has_plan


def test_secondary_terms_never_cost_energy_through_a_small_share() -> None:
    # Review case: moving a (full-share) to its cheap step would block b, whose sliver of step 1
    # (5 of 60 minutes) turns the cap into little energy. Energy must still win.
    p = problem(
        [session("a", 0, 120, 10, 10), session("b", 115, 120, 10, 10)],
        10.0,
        steps=2,
        prices=[1.0, 0.0],
    )
    lp = solve(p)
    edf = solve(p, "earliest_deadline")
    assert lp.kpis.energy_delivered_kwh >= edf.kpis.energy_delivered_kwh - 1e-9
    assert lp.kpis.energy_delivered_kwh == pytest.approx(10 + 10 * 5 / 60)


def test_slivers_below_two_percent_of_a_step_are_not_used() -> None:
    # 30 s of a 1 h step: dropped (see optimizer.grid.MIN_SHARE).
    p = problem([session("a", 59.5, 120, 100, 10)], 100.0, steps=2)
    r = solve(p)
    np.testing.assert_allclose(r.session_power("a"), [0, 10], atol=1e-9)


def test_daylight_saving_change_inside_the_horizon() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from optimizer import Problem, Session, Site

    la = ZoneInfo("America/Los_Angeles")
    start = datetime(2019, 11, 3, 0, 0, tzinfo=la)  # 25-hour day: 01:00-02:00 happens twice
    # 04:00 local is 5 real hours after midnight local.
    s = Session(
        "a", datetime(2019, 11, 3, 4, 0, tzinfo=la), datetime(2019, 11, 3, 6, 0, tzinfo=la), 5, 10
    )
    p = Problem.of(Site.create("dst", start, 50.0, step_minutes=60, horizon_steps=25), [s])
    r = solve(p)
    assert np.flatnonzero(r.session_power("a")).tolist() == [5]
    assert p.site.end == datetime(2019, 11, 4, 0, 0, tzinfo=la)


def test_urgency_charges_whoever_leaves_first_in_one_block() -> None:
    """Two identical vehicles and room for one: with the urgency tie-breaker the one leaving
    first charges first, without switching back and forth between them."""
    from datetime import UTC, datetime, timedelta

    from optimizer import Problem, Session, Site, solve
    from optimizer.formulation import Weights

    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    site = Site.create("s", start, capacity_kw=10.0, step_minutes=15, horizon_steps=16)
    sessions = [
        Session("late", start, start + timedelta(hours=4), energy_kwh=10, max_power_kw=10),
        Session("early", start, start + timedelta(hours=3), energy_kwh=10, max_power_kw=10),
    ]
    for method in ("lp", "milp"):
        result = solve(Problem.of(site, sessions), method, weights=Weights(urgency=0.02))
        early = list(result.session_power("early"))
        late = list(result.session_power("late"))
        assert early[:4] == pytest.approx([10.0] * 4)  # first, at full power, in one block
        assert sum(early[4:]) == pytest.approx(0.0)
        assert late[4:8] == pytest.approx([10.0] * 4)
