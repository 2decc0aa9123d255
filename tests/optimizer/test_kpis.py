"""KPIs, worked out by hand."""

from __future__ import annotations

import pytest

from optimizer import solve
from tests.optimizer.helpers import problem, session


def test_kpis_of_a_small_plan() -> None:
    # Cap 10 kW for 2 h at 0.2 then 0.1 per kWh. a needs 10 kWh (leaves after 1 h), b needs 15.
    p = problem(
        [session("a", 0, 60, 10, 10), session("b", 0, 120, 15, 10)],
        10.0,
        steps=2,
        prices=[0.2, 0.1],
    )
    r = solve(p)
    k = r.kpis
    assert k.energy_requested_kwh == pytest.approx(25)
    assert k.energy_delivered_kwh == pytest.approx(20)
    assert k.served_ratio == pytest.approx(0.8)
    assert k.unmet_kwh == pytest.approx(5)
    assert k.sessions_fully_served == 1
    assert k.sessions_fully_served_pct == pytest.approx(50)
    assert k.peak_kw == pytest.approx(10)
    assert k.load_factor == pytest.approx(20 / (10 * 2))
    assert k.cap_violation_kwh == 0
    assert k.energy_cost == pytest.approx(10 * 0.2 + 10 * 0.1)
    assert k.solve_time_s > 0


def test_jain_fairness() -> None:
    # One hour at 10 kW: a can take only 4 kW, so b gets 6. Ratios 0.4 and 0.3.
    p = problem([session("a", 0, 60, 10, 4), session("b", 0, 60, 20, 10)], 10.0, steps=1)
    r = solve(p)
    assert r.delivered_kwh.tolist() == pytest.approx([4, 6])
    assert r.kpis.jain_fairness == pytest.approx(0.7**2 / (2 * (0.4**2 + 0.3**2)))


def test_no_price_no_cost() -> None:
    r = solve(problem([session("a", 0, 60, 5, 10)], 10.0, steps=1))
    assert r.kpis.energy_cost is None
    assert r.kpis.jain_fairness == pytest.approx(1.0)


def test_load_factor_of_a_denormal_peak_is_zero_not_a_crash() -> None:
    """Found by hypothesis: a cap of 5e-324 kW makes peak x horizon underflow to 0."""
    from datetime import UTC, datetime, timedelta

    from optimizer import Problem, Session, Site, solve

    start = datetime(2026, 1, 1, tzinfo=UTC)
    site = Site.create("t", start, capacity_kw=5e-324, horizon_steps=1)
    session = Session("s0", start, start + timedelta(minutes=1), energy_kwh=1.0, max_power_kw=3.7)
    result = solve(Problem.of(site, [session]), "heuristic")
    assert 0.0 <= result.kpis.load_factor <= 1.0
