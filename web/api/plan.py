"""POST /api/plan: the optimizer as a stateless service (scenario JSON in, plan JSON out)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from optimizer.errors import InvalidProblemError
from optimizer.planner import solve
from optimizer.scenario_io import plan_to_dict, problem_from_dict
from web.api.problems import problem

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


@router.post(
    "/api/plan",
    responses={422: {"description": "the scenario is invalid: every wrong field is listed"}},
)
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
    result = await asyncio.to_thread(solve, problem_, method, time_limit_s=time_limit_s)
    return JSONResponse(plan_to_dict(result))
