"""The LP through the array build and HiGHS, and the record every engine returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from optimizer.feasibility import repair
from optimizer.formulation import Weights, build_lp, plan_objective
from optimizer.grid import FloatArray, Grid
from optimizer.heuristics import least_laxity_first
from optimizer.highs_backend import HighsModel, HighsOptions
from optimizer.result import SolverInfo, Status

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SolverRun:
    """What an engine returned for the LP or MILP, before the plan is checked."""

    status: Status
    col_power: FloatArray | None
    info: SolverInfo
    build_s: float
    solve_s: float


def solve_lp_highs(
    grid: Grid,
    weights: Weights,
    options: HighsOptions,
    progress: Progress,
    *,
    min_power: bool = False,
) -> SolverRun:
    """Solve the LP: build the arrays, hand them to HiGHS in one call, run.

    With ``min_power`` the bounds are those of the MILP (steps where even the minimum would overshoot
    the need are closed); the MILP calls this when no column is left semi-continuous.
    """
    t0 = time.perf_counter()
    lp = build_lp(grid, weights, min_power=min_power)
    model = HighsModel(lp, options)
    build_s = time.perf_counter() - t0
    progress(f"LP: {lp.n_cols:,} variables, {lp.n_rows:,} constraints, {model.algorithm}")
    out = model.run()
    progress(f"LP: {out.termination} in {out.solve_s:.2f} s")
    col = None if out.x is None else out.x[: lp.n_power_cols]
    algorithm = out.algorithm
    status = out.status
    if out.hit_limit:
        # Whatever the solver had when time ran out may be poor (simplex starts from zero): the
        # heuristic's plan is just as feasible, so keep whichever is better.
        col, algorithm = best_feasible(grid, weights, col, algorithm)
        status = Status.TIME_LIMIT
    info = SolverInfo(
        engine="highs",
        algorithm=algorithm,
        objective=out.objective,
        best_bound=None if out.hit_limit else out.best_bound,
        termination=out.termination,
        n_variables=lp.n_cols,
        n_constraints=lp.n_rows,
    )
    return SolverRun(status, col, info, build_s, out.solve_s)


def best_feasible(
    grid: Grid, weights: Weights, col: FloatArray | None, algorithm: str
) -> tuple[FloatArray, str]:
    """The better of a solver's feasible plan (if any) and the heuristic's, by the objective."""
    heuristic = least_laxity_first(grid)
    if col is None or plan_objective(grid, weights, heuristic) < plan_objective(
        grid, weights, repair(grid, col)
    ):
        return heuristic, f"{algorithm} (time limit: heuristic plan kept)"
    return col, algorithm
