"""POST /api/plan: the optimizer as a stateless service (scenario JSON in, plan JSON out)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from optimizer.errors import InvalidProblemError
from optimizer.planner import solve
from optimizer.problem import Problem
from optimizer.scenario_io import plan_to_dict, problem_from_dict
from web.api.deps import outside_range
from web.api.problems import problem, responses

MAX_MAGNITUDE: Final = 1e9
"""Largest number (kW, kWh, price, priority) a scenario may hold: the planner multiplies and sums
them over thousands of steps, and beyond this a result overflows to infinity, which JSON cannot
carry."""

router = APIRouter(tags=["planner"])

EXAMPLE: dict[str, Any] = {
    "site": {
        "id": "depot",
        "start": "2026-01-05T07:00:00+01:00",
        "step_minutes": 15,
        "horizon_steps": 8,
        "capacity_kw": 22,
    },
    "sessions": [
        {
            "id": "car-1",
            "arrival": "2026-01-05T07:00:00+01:00",
            "departure": "2026-01-05T09:00:00+01:00",
            "energy_kwh": 20,
            "max_power_kw": 11,
        }
    ],
}


@router.post("/api/plan", responses=responses(403, 422))
async def plan(
    scenario: Annotated[
        dict[str, Any],
        Body(description="a scenario in the optimizer's format (see README)", examples=[EXAMPLE]),
    ],
    method: Literal[
        "lp", "milp", "heuristic", "uncontrolled", "equal_share", "earliest_deadline"
    ] = Query("lp", description="planning method (baselines for comparison)"),
    time_limit_s: float = Query(10.0, gt=0, le=300, description="solver time limit"),
) -> Any:
    """Plan a scenario: per-session power per step, unmet energy and KPIs. Stateless: nothing is
    stored or sent to chargers."""
    try:
        problem_ = problem_from_dict(scenario)
    except InvalidProblemError as exc:
        errors = [{"field": p.field, "message": p.message} for p in exc.problems]
        return problem(422, "Invalid scenario", str(exc), errors=errors)
    errors = _out_of_range(problem_)
    if errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "Invalid scenario", detail, errors=errors)
    result = await asyncio.to_thread(solve, problem_, method, time_limit_s=time_limit_s)
    return JSONResponse(plan_to_dict(result))


def _out_of_range(p: Problem) -> list[dict[str, str]]:
    """Values the optimizer accepts but cannot compute with: times that overflow when shifted,
    numbers whose products overflow (first offending value per list)."""
    errors: list[dict[str, str]] = []

    def when(field: str, value: datetime) -> None:
        message = outside_range(value)
        if message is not None:
            errors.append({"field": field, "message": message})

    def size(field: str, values: Sequence[float]) -> None:
        for i, v in enumerate(values):
            if abs(v) > MAX_MAGNITUDE:
                where = field if len(set(values)) == 1 else f"{field}[{i}]"  # one number given
                message = f"must be at most {MAX_MAGNITUDE:g} in size (got {v:g})"
                errors.append({"field": where, "message": message})
                return

    when("site.start", p.site.start)
    size("site.capacity_kw", p.site.capacity_kw)
    size("site.price_per_kwh", p.site.price_per_kwh or ())
    for i, s in enumerate(p.sessions):
        where = f"sessions[{i}]"
        when(f"{where}.arrival", s.arrival)
        when(f"{where}.departure", s.departure)
        for name in ("energy_kwh", "max_power_kw", "min_power_kw", "priority"):
            size(f"{where}.{name}", (getattr(s, name),))
    return errors
