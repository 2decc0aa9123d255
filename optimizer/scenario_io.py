"""Scenario JSON in, plan JSON out (the format documented in the README).

Parsing collects every problem it finds and reports them together, each with the path of the field
(``sessions[2].departure``) and what to do about it.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

import numpy as np

from optimizer.errors import FieldProblem, InvalidProblemError
from optimizer.problem import DEFAULT_HORIZON_STEPS, DEFAULT_STEP_MINUTES, Problem, Session, Site
from optimizer.result import SolveResult

_SITE_KEYS = {"id", "start", "step_minutes", "horizon_steps", "capacity_kw", "price_per_kwh"}
_SESSION_KEYS = {
    "id",
    "arrival",
    "departure",
    "energy_kwh",
    "max_power_kw",
    "min_power_kw",
    "priority",
}


def _finite(x: float) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # JSON integers may exceed the float range
        return False


class _Reader:
    def __init__(self) -> None:
        self.problems: list[FieldProblem] = []

    def fail(self, field: str, message: str) -> None:
        self.problems.append(FieldProblem(field, message))

    def number(
        self, obj: dict[str, Any], key: str, where: str, *, default: float | None = None
    ) -> float | None:
        if key not in obj or obj[key] is None:
            if default is None:
                self.fail(f"{where}.{key}", "is required (a number)")
            return default
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{where}.{key}", f"must be a number (got {json.dumps(value)})")
            return None
        if not _finite(value):
            self.fail(f"{where}.{key}", "must be a finite number of sensible size")
            return None
        return float(value)

    def time(self, obj: dict[str, Any], key: str, where: str) -> datetime | None:
        if key not in obj:
            self.fail(f"{where}.{key}", "is required (ISO 8601 with UTC offset)")
            return None
        value = obj[key]
        if not isinstance(value, str):
            self.fail(f"{where}.{key}", f"must be an ISO 8601 string (got {json.dumps(value)})")
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(
                f"{where}.{key}",
                f"{value!r} is not an ISO 8601 date-time; write e.g. 2019-06-14T08:30:00-07:00",
            )
            return None
        if parsed.tzinfo is None:
            self.fail(
                f"{where}.{key}",
                f"{value!r} has no UTC offset; add one, e.g. {value}Z or {value}-07:00",
            )
            return None
        return parsed

    def numbers(self, value: Any, where: str) -> list[float] | None:
        if not isinstance(value, list):
            return None
        out: list[float] = []
        for k, x in enumerate(value):
            if isinstance(x, bool) or not isinstance(x, int | float) or not _finite(x):
                self.fail(f"{where}[{k}]", f"must be a number (got {json.dumps(x)})")
                return None
            out.append(float(x))
        return out

    def unknown_keys(self, obj: dict[str, Any], known: set[str], where: str) -> None:
        for key in sorted(set(obj) - known):
            self.fail(
                f"{where}.{key}", f"unknown field; known fields are {', '.join(sorted(known))}"
            )


def problem_from_json(text: str) -> Problem:
    """Parse scenario JSON text into a validated Problem (raises InvalidProblemError)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidProblemError(
            [FieldProblem("", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
        ) from None
    return problem_from_dict(data)


def problem_from_dict(data: Any) -> Problem:
    """Build a validated Problem from parsed scenario JSON (raises InvalidProblemError)."""
    r = _Reader()
    if not isinstance(data, dict):
        raise InvalidProblemError([FieldProblem("", "the scenario must be a JSON object")])
    # "source" and "description" are free text (e.g. the data attribution) and are not read.
    r.unknown_keys(data, {"site", "sessions", "source", "description"}, "scenario")
    site_data = data.get("site")
    if not isinstance(site_data, dict):
        raise InvalidProblemError([FieldProblem("site", "is required (an object)")])
    r.unknown_keys(site_data, _SITE_KEYS, "site")
    site_id = site_data.get("id", "site")
    if not isinstance(site_id, str) or not site_id:
        r.fail("site.id", "must be a non-empty string")
    start = r.time(site_data, "start", "site")
    step = r.number(site_data, "step_minutes", "site", default=DEFAULT_STEP_MINUTES)
    horizon_raw = site_data.get("horizon_steps")
    horizon: int | None = None
    if horizon_raw is not None:
        if isinstance(horizon_raw, bool) or not isinstance(horizon_raw, int):
            r.fail("site.horizon_steps", f"must be a whole number (got {json.dumps(horizon_raw)})")
        else:
            horizon = horizon_raw
    capacity_raw = site_data.get("capacity_kw")
    capacity: float | list[float] | None = None
    if isinstance(capacity_raw, list):
        capacity = r.numbers(capacity_raw, "site.capacity_kw")
        if horizon is None and capacity is not None:
            horizon = len(capacity)
    elif capacity_raw is None:
        r.fail("site.capacity_kw", "is required (kW, a number or one number per step)")
    else:
        capacity = r.number(site_data, "capacity_kw", "site")
    prices = None
    if site_data.get("price_per_kwh") is not None:
        if not isinstance(site_data["price_per_kwh"], list):
            r.fail("site.price_per_kwh", "must be a list with one price per step")
        else:
            prices = r.numbers(site_data["price_per_kwh"], "site.price_per_kwh")

    sessions_data = data.get("sessions", [])
    sessions: list[Session] = []
    if not isinstance(sessions_data, list):
        r.fail("sessions", "must be a list of session objects")
        sessions_data = []
    for i, sd in enumerate(sessions_data):
        where = f"sessions[{i}]"
        if not isinstance(sd, dict):
            r.fail(where, "must be an object")
            continue
        r.unknown_keys(sd, _SESSION_KEYS, where)
        sid = sd.get("id")
        if not isinstance(sid, str) or not sid:
            r.fail(f"{where}.id", "is required (a non-empty string)")
            sid = ""
        arrival = r.time(sd, "arrival", where)
        departure = r.time(sd, "departure", where)
        energy = r.number(sd, "energy_kwh", where)
        pmax = r.number(sd, "max_power_kw", where)
        pmin = r.number(sd, "min_power_kw", where, default=0.0)
        prio = r.number(sd, "priority", where, default=1.0)
        if arrival and departure and None not in (energy, pmax, pmin, prio):
            sessions.append(
                Session(
                    sid, arrival, departure, energy or 0.0, pmax or 0.0, pmin or 0.0, prio or 0.0
                )
            )

    if r.problems or start is None or step is None or capacity is None:
        raise InvalidProblemError(r.problems)
    site = Site.create(
        site_id,
        start,
        capacity,
        step_minutes=step,
        horizon_steps=horizon if horizon is not None else DEFAULT_HORIZON_STEPS,
        price_per_kwh=prices,
    )
    return Problem.of(site, sessions)


def problem_to_dict(problem: Problem) -> dict[str, Any]:
    """Scenario JSON object for a Problem (the inverse of problem_from_dict)."""
    site = problem.site
    caps = list(site.capacity_kw)
    site_obj: dict[str, Any] = {
        "id": site.id,
        "start": site.start.isoformat(),
        "step_minutes": site.step_minutes,
        "horizon_steps": site.horizon_steps,
        "capacity_kw": caps[0] if len(set(caps)) == 1 else caps,
    }
    if site.price_per_kwh is not None:
        site_obj["price_per_kwh"] = list(site.price_per_kwh)
    sessions = []
    for s in problem.sessions:
        obj: dict[str, Any] = {
            "id": s.id,
            "arrival": s.arrival.isoformat(),
            "departure": s.departure.isoformat(),
            "energy_kwh": s.energy_kwh,
            "max_power_kw": s.max_power_kw,
        }
        if s.min_power_kw:
            obj["min_power_kw"] = s.min_power_kw
        if s.priority != 1.0:
            obj["priority"] = s.priority
        sessions.append(obj)
    return {"site": site_obj, "sessions": sessions}


def _floor(values: np.ndarray, decimals: int = 3) -> list[float]:
    # Power goes to chargers: truncate, never round up, so the written plan stays under the cap.
    scale = 10.0**decimals
    return [float(x) for x in np.floor(values * scale + 1e-9) / scale]


def plan_to_dict(result: SolveResult) -> dict[str, Any]:
    """Plan JSON object (powers truncated to 1 W, energies rounded to 1 Wh)."""
    sessions = [
        {
            "id": sid,
            "power_kw": _floor(result.power_kw[i]),
            "delivered_kwh": round(float(result.delivered_kwh[i]), 3),
            "unmet_kwh": round(float(result.unmet_kwh[i]), 3),
        }
        for i, sid in enumerate(result.session_ids)
    ]
    info = result.solver
    return {
        "status": result.status.value,
        "method": result.method.value,
        "objective": info.objective,
        "step_minutes": result.problem.site.step_minutes,
        "start": result.problem.site.start.isoformat(),
        "site_power_kw": _floor(result.site_power_kw),
        "sessions": sessions,
        "kpis": result.kpis.to_dict(),
        "timings": {
            "build_s": result.timings.build_s,
            "solve_s": result.timings.solve_s,
            "total_s": result.timings.total_s,
        },
        "solver": {
            "engine": info.engine,
            "algorithm": info.algorithm,
            "termination": info.termination,
            "best_bound": info.best_bound,
            "mip_gap": info.mip_gap,
            "fallback_reason": info.fallback_reason,
            "variables": info.n_variables,
            "constraints": info.n_constraints,
        },
        "warnings": list(result.warnings),
    }
