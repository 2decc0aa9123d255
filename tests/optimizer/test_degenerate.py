"""Degenerate and edge inputs: nothing to plan, nothing available, windows outside the horizon."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import Method, Status, solve
from tests.optimizer.helpers import check_plan, problem, session


@pytest.mark.parametrize("method", ["lp", "milp", "heuristic"])
def test_zero_sessions(method: str) -> None:
    p = problem([], 50.0, steps=4)
    r = solve(p, method)
    assert r.status is Status.OPTIMAL or r.status is Status.FEASIBLE
    assert r.power_kw.shape == (0, 4)
    assert r.kpis.energy_requested_kwh == 0.0
    assert r.kpis.served_ratio == 1.0
    assert r.kpis.jain_fairness is None
    np.testing.assert_array_equal(r.site_power_kw, np.zeros(4))


@pytest.mark.parametrize("method", ["lp", "milp", "heuristic", "equal_share"])
def test_zero_cap_delivers_nothing(method: str) -> None:
    p = problem([session("a", 0, 120, 10, 7), session("b", 0, 60, 5, 7)], 0.0, steps=2)
    r = solve(p, method)
    assert r.status.has_plan
    assert r.kpis.energy_delivered_kwh == 0.0
    assert r.kpis.served_ratio == 0.0
    assert r.kpis.jain_fairness == 1.0
    check_plan(p, r)


def test_session_shorter_than_a_step() -> None:
    # 10 minutes inside one 15-minute step: 7 kW for 1/6 h.
    p = problem([session("a", 2, 12, 50, 7)], 100.0, step_minutes=15, steps=4)
    r = solve(p)
    assert r.delivered_kwh[0] == pytest.approx(7 / 6)
    assert r.session_power("a")[0] == pytest.approx(7.0)
    check_plan(p, r)


def test_departure_before_start_gets_nothing_and_a_warning() -> None:
    p = problem([session("gone", -120, -60, 10, 7), session("here", 0, 60, 5, 7)], 50.0, steps=2)
    r = solve(p)
    assert r.status is Status.OPTIMAL
    assert r.delivered_kwh[0] == 0.0
    assert r.unmet_kwh[0] == 10.0
    assert any("gone" in w and "horizon" in w for w in r.warnings)


def test_arrival_after_horizon_gets_nothing() -> None:
    p = problem([session("late", 300, 400, 10, 7)], 50.0, steps=2)
    r = solve(p)
    assert r.status is Status.OPTIMAL
    assert r.kpis.energy_delivered_kwh == 0.0
    assert r.warnings


def test_nothing_needed() -> None:
    p = problem([session("full", 0, 60, 0.0, 7)], 50.0, steps=1)
    r = solve(p)
    assert r.kpis.energy_delivered_kwh == 0.0
    assert r.kpis.sessions_fully_served == 1
    assert not r.warnings


def test_zero_max_power() -> None:
    p = problem([session("off", 0, 60, 5.0, 0.0)], 50.0, steps=1)
    r = solve(p, Method.MILP)
    assert r.kpis.energy_delivered_kwh == 0.0
    check_plan(p, r, min_power=True)


def test_uncontrolled_ignores_the_cap_and_says_so() -> None:
    p = problem([session("a", 0, 60, 10, 10), session("b", 0, 60, 10, 10)], 10.0, steps=1)
    r = solve(p, "uncontrolled")
    assert r.status is Status.INFEASIBLE
    assert r.kpis.peak_kw == pytest.approx(20.0)
    assert r.kpis.cap_violation_steps == 1
    assert r.kpis.cap_violation_kwh == pytest.approx(10.0)
    assert any("ignores the site cap" in w for w in r.warnings)
