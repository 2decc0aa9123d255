"""The LP through the array build and HiGHS, and the record every engine returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from optimizer.formulation import Weights, build_lp
from optimizer.grid import FloatArray, Grid
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
    grid: Grid, weights: Weights, options: HighsOptions, progress: Progress
) -> SolverRun:
    """Solve the LP: build the arrays, hand them to HiGHS in one call, run."""
    t0 = time.perf_counter()
    lp = build_lp(grid, weights)
    model = HighsModel(lp, options)
    build_s = time.perf_counter() - t0
    progress(f"LP: {lp.n_cols:,} variables, {lp.n_rows:,} constraints, {model.algorithm}")
    out = model.run()
    progress(f"LP: {out.termination} in {out.solve_s:.2f} s")
    info = SolverInfo(
        engine="highs",
        algorithm=out.algorithm,
        objective=out.objective,
        best_bound=out.best_bound,
        termination=out.termination,
        n_variables=lp.n_cols,
        n_constraints=lp.n_rows,
    )
    col = None if out.x is None else out.x[: lp.n_power_cols]
    return SolverRun(out.status, col, info, build_s, out.solve_s)
