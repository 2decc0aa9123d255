"""Bad input gets an error that names the field and the problem."""

from __future__ import annotations

from datetime import datetime

import pytest

from optimizer import (
    InvalidProblemError,
    Problem,
    Session,
    Site,
    UnknownMethodError,
    Weights,
    solve,
)
from tests.optimizer.helpers import T0, at, problem, session


def _problems_of(exc: pytest.ExceptionInfo[InvalidProblemError]) -> dict[str, str]:
    return {p.field: p.message for p in exc.value.problems}


def test_negative_energy_is_named() -> None:
    with pytest.raises(InvalidProblemError) as exc:
        problem([session("a", 0, 60, -5, 7)], 10.0, steps=1)
    assert "sessions[0] (a).energy_kwh" in _problems_of(exc)
    assert ">= 0" in str(exc.value)


def test_departure_before_arrival_is_named() -> None:
    with pytest.raises(InvalidProblemError) as exc:
        problem([session("a", 60, 30, 5, 7)], 10.0, steps=1)
    assert "must be after arrival" in _problems_of(exc)["sessions[0] (a).departure"]


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidProblemError) as exc:
        problem(
            [
                session("a", 0, 60, 5, -7),
                session("a", 0, 60, 5, 7, pmin=9),
                session("b", 0, 60, 1, 7, priority=0),
            ],
            10.0,
            steps=1,
        )
    fields = _problems_of(exc)
    assert "sessions[0] (a).max_power_kw" in fields
    assert "sessions[1].id" in fields  # duplicate
    assert "sessions[1] (a).min_power_kw" in fields
    assert "sessions[2] (b).priority" in fields
    assert str(exc.value).startswith("4 problems")


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 1, 1)
    with pytest.raises(InvalidProblemError) as exc:
        Problem.of(Site.create("x", naive, 10.0, horizon_steps=2), [])
    assert "site.start" in _problems_of(exc)
    with pytest.raises(InvalidProblemError) as exc:
        Problem.of(Site.create("x", T0, 10.0, horizon_steps=2), [Session("a", naive, at(60), 1, 7)])
    assert "sessions[0] (a).arrival" in _problems_of(exc)


def test_wrong_list_lengths_are_named() -> None:
    with pytest.raises(InvalidProblemError) as exc:
        Site.create("x", T0, [1.0, 2.0], horizon_steps=3)
    assert "has 2 values but horizon_steps is 3" in _problems_of(exc)["site.capacity_kw"]
    with pytest.raises(InvalidProblemError) as exc:
        Site.create("x", T0, 5.0, horizon_steps=3, price_per_kwh=[0.1])
    assert "site.price_per_kwh" in _problems_of(exc)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"capacity_kw": -1.0}, "site.capacity_kw[0]"),
        ({"capacity_kw": float("nan")}, "site.capacity_kw[0]"),
        ({"step_minutes": 0}, "site.step_minutes"),
        ({"horizon_steps": 0}, "site.horizon_steps"),
    ],
)
def test_bad_site_values(kwargs: dict[str, float], field: str) -> None:
    args: dict[str, object] = {"capacity_kw": 10.0, "horizon_steps": 4, **kwargs}
    with pytest.raises(InvalidProblemError) as exc:
        Problem.of(Site.create("x", T0, **args), [])  # type: ignore[arg-type]
    assert field in _problems_of(exc)


def test_unknown_method_and_options() -> None:
    p = problem([], 10.0, steps=1)
    with pytest.raises(UnknownMethodError, match="choose one of lp, milp, heuristic"):
        solve(p, "simplex")
    with pytest.raises(UnknownMethodError, match="engine"):
        solve(p, engine="gurobi")
    with pytest.raises(InvalidProblemError, match="mip_gap"):
        solve(p, mip_gap=1.5)
    with pytest.raises(InvalidProblemError, match="time_limit_s"):
        solve(p, time_limit_s=0)


def test_weights_must_keep_energy_first() -> None:
    with pytest.raises(InvalidProblemError, match="energy always comes first"):
        Weights(price=0.5, early=0.3, peak=0.2)
    with pytest.raises(InvalidProblemError, match=r"weights\.peak"):
        Weights(peak=-1)
