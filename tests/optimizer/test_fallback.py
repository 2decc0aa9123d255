"""A failing solver never leaves the site without a safe plan."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import Method, Status, solve
from optimizer.highs_backend import HighsModel
from optimizer.synthetic import congested_day
from tests.optimizer.helpers import check_plan


def _boom(self: HighsModel) -> None:
    raise RuntimeError("solver crashed")


@pytest.mark.parametrize("method", ["lp", "milp"])
def test_solver_crash_falls_back_to_the_heuristic(
    monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    monkeypatch.setattr(HighsModel, "run", _boom)
    p = congested_day(30, seed=4)
    r = solve(p, method)
    assert r.method is Method.HEURISTIC
    assert r.status is Status.FEASIBLE
    assert r.used_fallback
    assert r.solver.fallback_reason is not None
    assert "solver crashed" in r.solver.fallback_reason
    assert any("heuristic instead" in w for w in r.warnings)
    check_plan(p, r, min_power=True)


def test_without_fallback_the_error_is_reported_with_a_zero_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(HighsModel, "run", _boom)
    p = congested_day(10, seed=4)
    r = solve(p, "lp", fallback=False)
    assert r.status is Status.ERROR
    assert not r.status.has_plan
    assert np.all(r.power_kw == 0)
    assert "solver crashed" in r.solver.termination


def test_a_plan_breaking_the_cap_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # If a solver answer were wrong beyond repair (here: repair disabled), the check catches it.
    import optimizer.planner as planner_module

    monkeypatch.setattr(planner_module, "repair", lambda _grid, col: col * 50.0)
    p = congested_day(20, seed=4)
    r = solve(p, "lp")
    assert r.used_fallback
    assert r.solver.fallback_reason is not None
    assert "hard constraints" in r.solver.fallback_reason
    check_plan(p, r)


def test_progress_is_reported() -> None:
    messages: list[str] = []
    solve(congested_day(50, seed=1), "milp", progress=messages.append)
    assert any("LP relaxation" in m for m in messages)
    assert any("dive plan" in m for m in messages)
