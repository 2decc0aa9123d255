"""The MILP: minimum power, the dive, time limits, and agreement with the Pyomo reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from optimizer import Problem, Status, solve
from optimizer.feasibility import ZERO_KW
from optimizer.formulation import PRIMARY_SCALE
from optimizer.synthetic import congested_day
from tests.optimizer.helpers import check_plan, problem, problems, session


def test_min_power_forces_all_or_nothing_per_step() -> None:
    # Cap 5 kW, two sessions each needing at least 4 kW: only one can charge.
    p = problem([session("a", 0, 60, 10, 7, 4), session("b", 0, 60, 10, 7, 4)], 5.0, steps=1)
    lp = solve(p, "lp")
    milp = solve(p, "milp")
    assert lp.kpis.energy_delivered_kwh == pytest.approx(5.0)
    assert milp.kpis.energy_delivered_kwh == pytest.approx(5.0)
    assert sorted(milp.power_kw[:, 0].tolist()) == pytest.approx([0.0, 5.0])
    check_plan(p, milp, min_power=True)


def test_need_below_one_step_at_min_power_stays_unmet() -> None:
    # 0.5 kWh needed, 4 kW minimum over 15 min = 1 kWh: charging at all would overshoot the need.
    p = problem([session("a", 0, 60, 0.5, 7, 4)], 50.0, step_minutes=15, steps=4)
    assert solve(p, "lp").delivered_kwh[0] == pytest.approx(0.5)
    assert solve(p, "milp").delivered_kwh[0] == 0.0


def test_milp_without_min_power_is_the_lp() -> None:
    p = congested_day(30, seed=3)
    p = Problem.of(p.site, [s.__class__(**{**_fields(s), "min_power_kw": 0.0}) for s in p.sessions])
    lp, milp = solve(p, "lp"), solve(p, "milp")
    assert milp.solver.objective == pytest.approx(lp.solver.objective, rel=1e-9)


def _fields(s: object) -> dict[str, object]:
    return {name: getattr(s, name) for name in s.__slots__}  # type: ignore[attr-defined]


def test_dive_reaches_the_requested_gap_on_a_congested_day() -> None:
    p = congested_day(200, seed=1)
    r = solve(p, "milp", mip_gap=0.01)
    assert r.status is Status.OPTIMAL
    assert r.solver.mip_gap is not None
    assert r.solver.mip_gap <= 0.01
    check_plan(p, r, min_power=True)


def test_tiny_time_limit_still_returns_a_feasible_plan() -> None:
    p = congested_day(1000, seed=2)
    r = solve(p, "milp", time_limit_s=0.001)
    assert r.status is Status.TIME_LIMIT
    assert r.kpis.energy_delivered_kwh > 0
    check_plan(p, r, min_power=True)


def test_lp_time_limit_keeps_a_feasible_plan() -> None:
    p = congested_day(1000, seed=2)
    r = solve(p, "lp", time_limit_s=0.001)
    assert r.status is Status.TIME_LIMIT
    assert r.kpis.energy_delivered_kwh > 0
    check_plan(p, r)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_sessions=5, with_min_power=True))
def test_exact_milp_matches_the_pyomo_reference(p: Problem) -> None:
    ours = solve(p, "milp", mip_gap=0.0)
    ref = solve(p, "milp", mip_gap=0.0, engine="pyomo")
    assert ours.status is Status.OPTIMAL
    assert ref.status is Status.OPTIMAL
    assert ours.solver.objective is not None
    assert ref.solver.objective is not None
    assert ours.solver.objective == pytest.approx(ref.solver.objective, rel=1e-6, abs=_noise(p))
    check_plan(p, ref, min_power=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_array_lp_matches_the_pyomo_reference(p: Problem) -> None:
    ours = solve(p, "lp")
    ref = solve(p, "lp", engine="pyomo")
    assert ref.status is Status.OPTIMAL
    assert ours.solver.objective == pytest.approx(ref.solver.objective, rel=1e-7, abs=_noise(p))
    assert ours.kpis.energy_delivered_kwh == pytest.approx(
        ref.kpis.energy_delivered_kwh, rel=1e-6, abs=1e-6 + _noise(p) / PRIMARY_SCALE
    )


def _noise(p: Problem) -> float:
    """Objective either plan may lose when powers below ZERO_KW are zeroed as solver noise."""
    hours = p.site.horizon_steps * p.site.step_minutes / 60
    return 1e-6 + PRIMARY_SCALE * ZERO_KW * hours * len(p.sessions)


def test_reference_engines_agree_on_a_real_sized_day() -> None:
    p = congested_day(200, seed=5, with_prices=True)
    ours, ref = solve(p, "lp"), solve(p, "lp", engine="pyomo")
    assert ours.solver.objective == pytest.approx(ref.solver.objective, rel=1e-8)
    np.testing.assert_allclose(ours.delivered_kwh.sum(), ref.delivered_kwh.sum(), rtol=1e-7)


def test_time_limit_counts_from_now_on_a_reused_model() -> None:
    # HiGHS's clock adds up over runs: a limit must be relative to the time already spent.
    from optimizer.formulation import Weights, build_lp
    from optimizer.grid import build_grid
    from optimizer.highs_backend import HighsModel, HighsOptions

    lp = build_lp(build_grid(congested_day(300, seed=1)), Weights())
    model = HighsModel(lp, HighsOptions())
    assert model.run().status is Status.OPTIMAL
    spent = model._h.getRunTime()
    assert spent > 0
    model.set_time_limit(60.0)
    assert model._h.getOptionValue("time_limit")[1] == pytest.approx(spent + 60.0, abs=0.5)
    assert model.run().status is Status.OPTIMAL
