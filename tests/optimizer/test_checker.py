"""The independent checker of the property tests must itself catch broken plans."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from optimizer import solve
from tests.optimizer.helpers import check_plan, problem, session


def _broken(power_change: tuple[int, int, float]) -> None:
    p = problem([session("a", 0, 90, 20, 10, pmin=4), session("b", 0, 120, 20, 10)], 12.0, steps=3)
    r = solve(p, "milp")
    check_plan(p, r, min_power=True)
    power = r.power_kw.copy()
    i, k, value = power_change
    power[i, k] = value
    a = np.array([[1, 1, 0.5], [1, 1, 0]])
    delivered = (power * a).sum(axis=1)
    bad = dataclasses.replace(
        r,
        power_kw=power,
        delivered_kwh=delivered,
        unmet_kwh=np.maximum(np.array([20.0, 20.0]) - delivered, 0),
        site_power_kw=power.sum(axis=0),
    )
    check_plan(p, bad, min_power=True)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ((1, 2, 1.0), "outside a session's window"),  # b has left by step 2
        ((0, 0, 11.0), "above max power"),
        ((0, 1, 2.0), "below min power"),
        ((1, 0, -1.0), "negative power"),
    ],
)
def test_checker_catches_violations(change: tuple[int, int, float], words: str) -> None:
    with pytest.raises(AssertionError, match=words):
        _broken(change)


def test_checker_catches_cap_and_energy() -> None:
    p = problem([session("a", 0, 60, 5, 10), session("b", 0, 60, 5, 10)], 8.0, steps=1)
    r = solve(p)
    over_cap = dataclasses.replace(
        r,
        power_kw=np.array([[5.0], [5.0]]),
        delivered_kwh=np.array([5.0, 5.0]),
        unmet_kwh=np.zeros(2),
        site_power_kw=np.array([10.0]),
    )
    with pytest.raises(AssertionError, match="cap"):
        check_plan(p, over_cap)
    too_much = dataclasses.replace(
        r,
        power_kw=np.array([[8.0], [0.0]]),
        delivered_kwh=np.array([8.0, 0.0]),
        unmet_kwh=np.array([0.0, 5.0]),
        site_power_kw=np.array([8.0]),
    )
    with pytest.raises(AssertionError, match="more energy"):
        check_plan(p, too_much)
