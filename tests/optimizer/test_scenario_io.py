"""Scenario JSON in, plan JSON out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from optimizer import InvalidProblemError, solve
from optimizer.scenario_io import (
    plan_to_dict,
    problem_from_dict,
    problem_from_json,
    problem_to_dict,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _scenario(**site: Any) -> dict[str, Any]:
    return {
        "site": {"id": "s", "start": "2026-01-01T00:00:00+01:00", "capacity_kw": 22, **site},
        "sessions": [
            {
                "id": "a",
                "arrival": "2026-01-01T08:00:00+01:00",
                "departure": "2026-01-01T12:00:00+01:00",
                "energy_kwh": 20,
                "max_power_kw": 11,
                "min_power_kw": 4.14,
                "priority": 2,
            }
        ],
    }


def test_defaults_follow_the_documented_format() -> None:
    p = problem_from_dict(_scenario())
    assert p.site.step_minutes == 15
    assert p.site.horizon_steps == 96
    assert p.site.capacity_kw == (22.0,) * 96
    assert p.sessions[0].min_power_kw == 4.14
    assert p.sessions[0].priority == 2


def test_capacity_list_sets_the_horizon() -> None:
    p = problem_from_dict(_scenario(capacity_kw=[10, 20, 30], step_minutes=60))
    assert p.site.horizon_steps == 3


def test_round_trip() -> None:
    p = problem_from_dict(_scenario(price_per_kwh=[0.2] * 96))
    assert problem_from_dict(json.loads(json.dumps(problem_to_dict(p)))) == p


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda d: d["sessions"][0].update(energy_kwh=-1), "energy_kwh", ">= 0"),
        (lambda d: d["sessions"][0].update(energy_kwh="lots"), "sessions[0].energy_kwh", "number"),
        (
            lambda d: d["sessions"][0].update(departure="2026-01-01T07:00:00+01:00"),
            "departure",
            "after",
        ),
        (lambda d: d["sessions"][0].update(arrival="2026-01-01T08:00:00"), "arrival", "UTC offset"),
        (lambda d: d["sessions"][0].pop("max_power_kw"), "sessions[0].max_power_kw", "required"),
        (lambda d: d["sessions"][0].update(colour="red"), "sessions[0].colour", "unknown field"),
        (
            lambda d: d["site"].update(capacity_kw=[1, 2], horizon_steps=96),
            "site.capacity_kw",
            "2 values",
        ),
        (lambda d: d["site"].update(price_per_kwh=[0.1]), "site.price_per_kwh", "1 values"),
        (lambda d: d["site"].update(horizon_steps=2.5), "site.horizon_steps", "whole number"),
        (lambda d: d["site"].pop("capacity_kw"), "site.capacity_kw", "required"),
        (lambda d: d.update(sessions={}), "sessions", "list"),
        (lambda d: d.pop("site"), "site", "required"),
    ],
)
def test_bad_input_names_the_field(change: Any, field: str, words: str) -> None:
    data = _scenario()
    change(data)
    with pytest.raises(InvalidProblemError) as exc:
        problem_from_dict(data)
    text = str(exc.value)
    assert field in text
    assert words in text


def test_malformed_json() -> None:
    with pytest.raises(InvalidProblemError, match=r"not valid JSON.*line 1 column 2"):
        problem_from_json("{oops")
    with pytest.raises(InvalidProblemError, match="JSON object"):
        problem_from_json("[1, 2]")


def test_plan_json_has_the_documented_fields_and_never_exceeds_the_cap() -> None:
    p = problem_from_json((EXAMPLES / "workplace_40.json").read_text())
    r = solve(p, "milp")
    plan = json.loads(json.dumps(plan_to_dict(r)))
    assert set(plan) >= {
        "status",
        "objective",
        "step_minutes",
        "start",
        "site_power_kw",
        "sessions",
        "kpis",
        "timings",
    }
    assert plan["status"] == "optimal"
    assert len(plan["sessions"]) == 40
    assert set(plan["sessions"][0]) == {"id", "power_kw", "delivered_kwh", "unmet_kwh"}
    assert plan["kpis"]["served_ratio"] == pytest.approx(r.kpis.served_ratio)
    # Truncated powers: the written plan sums to no more than the cap at any step.
    caps = p.site.capacity_kw
    for k in range(p.site.horizon_steps):
        assert sum(s["power_kw"][k] for s in plan["sessions"]) <= caps[k] + 1e-9
        assert plan["site_power_kw"][k] <= caps[k] + 1e-9


@pytest.mark.parametrize("name", ["workplace_40.json", "acn_caltech_2019-06-14.json"])
def test_shipped_examples_parse(name: str) -> None:
    p = problem_from_json((EXAMPLES / name).read_text())
    assert len(p.sessions) > 30
