"""The MILP with minimum power: an LP-guided dive for a good plan fast, then HiGHS's MIP search.

A session with a minimum power either does not charge in a step or charges at least that much
(IEC 61851: below 6 A a charger does not charge). Exact branch and bound is slow on this model
(PLANNER_NOTES.md: N = 200 takes 2–12 s, N = 1,000 often over 60 s), while the LP relaxation is
nearly always almost integral. So:

1. Solve the LP relaxation: its objective is a valid bound for the MILP.
2. Dive: every column that the LP leaves between 0 and its minimum is fixed either up (at least the
   minimum) or down (zero), keeping the fixings feasible; re-solve warm; repeat until no column is
   left in between. Zero is always feasible, so the dive always ends in a feasible plan.
3. If the dive's plan is within the requested gap of the bound, it is the answer. Otherwise HiGHS's
   MIP search starts from it, within what is left of the time limit, and the better plan wins.
"""

from __future__ import annotations

import time

import numpy as np

from optimizer.feasibility import TOL, ZERO_KW
from optimizer.formulation import (
    SEMI_CONTINUOUS,
    Weights,
    build_lp,
    full_vector,
)
from optimizer.grid import FloatArray, Grid, IntArray
from optimizer.highs_backend import HighsModel, HighsOptions
from optimizer.lp import Progress, SolverRun, best_feasible, solve_lp_highs
from optimizer.result import SolverInfo, Status

MAX_DIVE_ROUNDS = 30
# Round-off allowance on the relative gap (a requested gap of 0 must accept 1e-16).
GAP_SLACK = 1e-9


def solve_milp_highs(
    grid: Grid, weights: Weights, options: HighsOptions, progress: Progress
) -> SolverRun:
    """Solve the MILP (see the module docstring)."""
    t0 = time.perf_counter()
    deadline = t0 + (options.time_limit_s if options.time_limit_s is not None else float("inf"))
    lp = build_lp(grid, weights, min_power=True)
    if lp.integrality is None:
        progress("MILP: no session has a minimum power; the LP is exact")
        return solve_lp_highs(grid, weights, options, progress, min_power=True)

    semi = np.flatnonzero(lp.integrality == SEMI_CONTINUOUS)
    pmin = lp.col_lower[semi].copy()
    upper = lp.col_upper[semi].copy()
    model = HighsModel(lp, options)
    model.relax_integrality()
    model.change_bounds(semi, np.zeros(semi.size), upper)
    build_s = time.perf_counter() - t0
    progress(
        f"MILP: {lp.n_cols:,} variables ({semi.size:,} with a minimum power), "
        f"{lp.n_rows:,} constraints"
    )

    solve_t0 = time.perf_counter()
    model.set_time_limit(max(deadline - time.perf_counter(), 1e-3))
    first = model.run()
    if first.status is not Status.OPTIMAL or first.x is None or first.objective is None:
        if not first.hit_limit:
            info = SolverInfo(engine="highs", algorithm="dive", termination=first.termination)
            return SolverRun(first.status, None, info, build_s, time.perf_counter() - solve_t0)
        # No bound yet, but a feasible plan is still owed: the LP's point rounded down, or the
        # heuristic's plan (it respects min power), whichever is better.
        progress("MILP: time limit before the LP relaxation finished")
        col = None if first.x is None else _round_down(first.x, semi, pmin)[: lp.n_power_cols]
        col, algorithm = best_feasible(grid, weights, col, "dive")
        info = SolverInfo(
            engine="highs",
            algorithm=algorithm,
            termination=f"{first.termination} before the LP relaxation finished",
            n_variables=lp.n_cols,
            n_constraints=lp.n_rows,
        )
        return SolverRun(Status.TIME_LIMIT, col, info, build_s, time.perf_counter() - solve_t0)
    bound = first.objective
    progress(f"MILP: LP relaxation {first.termination}, bound {bound:.4f}")

    lower_now = np.zeros(semi.size)
    upper_now = upper.copy()
    x = first.x
    incumbent: FloatArray | None = None
    for rnd in range(1, MAX_DIVE_ROUNDS + 1):
        values = x[semi]
        between = np.flatnonzero((values > ZERO_KW) & (values < pmin * (1 - TOL)))
        if between.size == 0:
            # Solver noise below ZERO_KW counts as zero; make it exactly zero so the start point
            # handed to branch and bound is semi-continuous to the letter.
            incumbent = x.copy()
            incumbent[semi[values <= ZERO_KW]] = 0.0
            break
        up = _choose_up(grid, semi, values, pmin, lower_now, between)
        down = np.setdiff1d(between, up, assume_unique=True)
        lower_now[up] = pmin[up]
        upper_now[down] = 0.0
        progress(f"MILP: dive round {rnd}: {up.size} columns up to their minimum, {down.size} to 0")
        model.change_bounds(semi[between], lower_now[between], upper_now[between])
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        model.set_time_limit(remaining)
        out = model.run()
        if out.x is None:
            break
        x = out.x
    if incumbent is None:
        # Out of time or rounds: round the last LP answer down, which is always feasible, and keep
        # the heuristic's plan instead if that is better.
        col, _ = best_feasible(grid, weights, _round_down(x, semi, pmin)[: lp.n_power_cols], "")
        incumbent = full_vector(lp, grid, col)

    objective = float(np.dot(lp.col_cost, incumbent))
    gap = relative_gap(objective, bound)
    progress(f"MILP: dive plan {objective:.4f}, gap {gap:.4%}")
    status = Status.OPTIMAL
    termination = "dive within gap"
    remaining = deadline - time.perf_counter()
    if gap > options.mip_rel_gap + GAP_SLACK:
        if remaining <= 0:
            status, termination = Status.TIME_LIMIT, "time limit during dive"
        else:
            model.change_bounds(semi, pmin, upper)
            model.restore_integrality()
            model.set_time_limit(remaining)
            model.set_solution(incumbent)
            progress(f"MILP: branch and bound for up to {remaining:.1f} s")
            out = model.run()
            termination = out.termination
            if out.x is not None and out.objective is not None and out.objective < objective:
                incumbent, objective = out.x, out.objective
            if out.best_bound is not None and np.isfinite(out.best_bound):
                bound = max(bound, out.best_bound)
            gap = relative_gap(objective, bound)
            closed = out.status is Status.OPTIMAL or gap <= options.mip_rel_gap + GAP_SLACK
            # Stopped short for another reason than the clock: the plan is feasible, not proven.
            status = (
                Status.OPTIMAL
                if closed
                else Status.TIME_LIMIT
                if out.hit_limit
                else Status.FEASIBLE
            )
    info = SolverInfo(
        engine="highs",
        algorithm="dive+mip",
        objective=objective,
        best_bound=bound,
        mip_gap=gap,
        termination=termination,
        n_variables=lp.n_cols,
        n_constraints=lp.n_rows,
    )
    col = incumbent[: lp.n_power_cols]
    return SolverRun(status, col, info, build_s, time.perf_counter() - solve_t0)


def _round_down(x: FloatArray, semi: IntArray, pmin: FloatArray) -> FloatArray:
    """Columns below their minimum power set to zero: always feasible."""
    out = x.copy()
    values = out[semi]
    out[semi] = np.where(values < pmin * (1 - TOL), 0.0, values)
    return out


def relative_gap(objective: float, bound: float) -> float:
    """(objective - bound) / |objective|, the MIP gap as HiGHS defines it."""
    return max(0.0, (objective - bound) / max(abs(objective), 1e-9))


def _choose_up(
    grid: Grid,
    semi: IntArray,
    values: FloatArray,
    pmin: FloatArray,
    lower_now: FloatArray,
    between: IntArray,
) -> IntArray:
    """Columns to round up (value >= half the minimum) while the fixed minimums stay feasible.

    Feasible means: the minimums fixed so far, summed per step, stay within the cap, and summed per
    session (as energy), within its need.
    """
    step = grid.col_step[semi]
    sess = grid.col_session[semi]
    kwh_per_kw = grid.col_share[semi] * grid.step_hours
    cap_used = np.bincount(step, weights=lower_now, minlength=grid.n_steps)
    need_used = np.bincount(sess, weights=lower_now * kwh_per_kw, minlength=grid.n_sessions)
    candidates = between[values[between] >= 0.5 * pmin[between]]
    candidates = candidates[np.argsort(-values[candidates], kind="stable")]
    chosen: list[int] = []
    for j in candidates:
        k, i = step[j], sess[j]
        if cap_used[k] + pmin[j] <= grid.capacity_kw[k] * (1 - TOL) and need_used[i] + pmin[
            j
        ] * kwh_per_kw[j] <= grid.energy_kwh[i] * (1 - TOL):
            cap_used[k] += pmin[j]
            need_used[i] += pmin[j] * kwh_per_kw[j]
            chosen.append(int(j))
    return np.array(chosen, dtype=np.int64)
