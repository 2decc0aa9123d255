"""The reference formulation in Pyomo, with named constraint families.

Same variables, bounds and objective coefficients as :mod:`optimizer.formulation` (which builds the
model as arrays for speed); tests check that both reach the same optimum. The MILP here uses an
explicit binary ``on[c]`` per column with a minimum power, the textbook form of what the array model
says with semi-continuous columns.

Constraint families: ``site_cap[k]``, ``energy_needed[i]``, ``min_power_on[c]``, ``max_power_on[c]``
and, with the peak term, ``peak_def[k]``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from optimizer.formulation import Weights, column_bounds, objective_coefficients
from optimizer.grid import Grid
from optimizer.highs_backend import HighsOptions
from optimizer.lp import Progress, SolverRun
from optimizer.result import SolverInfo, Status


def build_pyomo_model(grid: Grid, weights: Weights, *, min_power: bool) -> Any:
    """Build the Pyomo model of the LP (or the MILP with ``min_power``)."""
    import pyomo.environ as pyo

    cost, peak_cost = objective_coefficients(grid, weights)
    pmin, upper, semi = column_bounds(grid, min_power=min_power)
    kwh_per_kw = grid.col_share * grid.step_hours
    order, step_bounds = grid.columns_by_step()
    by_step = [order[step_bounds[k] : step_bounds[k + 1]].tolist() for k in range(grid.n_steps)]

    m = pyo.ConcreteModel(name="smart_charging")
    m.COLS = pyo.RangeSet(0, grid.n_cols - 1)
    m.STEPS = pyo.RangeSet(0, grid.n_steps - 1)
    m.SESSIONS = pyo.RangeSet(0, grid.n_sessions - 1)
    m.p = pyo.Var(m.COLS, domain=pyo.NonNegativeReals, bounds=lambda _m, c: (0.0, upper[c]))

    def site_cap(mm: Any, k: int) -> Any:
        cols = by_step[k]
        if not cols:
            return pyo.Constraint.Skip
        return pyo.quicksum(mm.p[c] for c in cols) <= float(grid.capacity_kw[k])

    def energy_needed(mm: Any, i: int) -> Any:
        lo, hi = int(grid.col_start[i]), int(grid.col_start[i + 1])
        if lo == hi:
            return pyo.Constraint.Skip
        expr = pyo.quicksum(float(kwh_per_kw[c]) * mm.p[c] for c in range(lo, hi))
        return expr <= float(grid.energy_kwh[i])

    m.site_cap = pyo.Constraint(m.STEPS, rule=site_cap)
    m.energy_needed = pyo.Constraint(m.SESSIONS, rule=energy_needed)

    if min_power and np.any(semi):
        m.SEMI = pyo.Set(initialize=np.flatnonzero(semi).tolist())
        m.on = pyo.Var(m.SEMI, domain=pyo.Binary)
        m.min_power_on = pyo.Constraint(
            m.SEMI, rule=lambda mm, c: mm.p[c] >= float(pmin[c]) * mm.on[c]
        )
        m.max_power_on = pyo.Constraint(
            m.SEMI, rule=lambda mm, c: mm.p[c] <= float(upper[c]) * mm.on[c]
        )

    objective = pyo.quicksum(float(cost[c]) * m.p[c] for c in range(grid.n_cols))
    if weights.peak > 0:
        m.peak = pyo.Var(domain=pyo.NonNegativeReals)
        m.peak_def = pyo.Constraint(
            m.STEPS,
            rule=lambda mm, k: (
                pyo.quicksum(mm.p[c] for c in by_step[k]) - mm.peak <= 0
                if by_step[k]
                else pyo.Constraint.Skip
            ),
        )
        objective = objective + peak_cost * m.peak
    m.objective = pyo.Objective(expr=objective, sense=pyo.minimize)
    return m


def solve_pyomo(
    grid: Grid,
    weights: Weights,
    options: HighsOptions,
    *,
    min_power: bool,
    progress: Progress,
) -> SolverRun:
    """Build and solve the Pyomo model with HiGHS (appsi), checking termination before loading."""
    import pyomo.environ as pyo
    from pyomo.opt import TerminationCondition as Termination

    t0 = time.perf_counter()
    m = build_pyomo_model(grid, weights, min_power=min_power)
    build_s = time.perf_counter() - t0
    progress(f"Pyomo model built in {build_s:.2f} s")
    opt = pyo.SolverFactory("appsi_highs")
    if not opt.available():
        raise RuntimeError("Pyomo cannot find HiGHS (appsi_highs): is highspy installed?")
    if options.time_limit_s is not None:
        opt.config.time_limit = options.time_limit_s
    opt.highs_options = {"mip_rel_gap": options.mip_rel_gap, "threads": options.threads}
    t1 = time.perf_counter()
    results = opt.solve(m, load_solutions=False)
    solve_s = time.perf_counter() - t1
    tc = results.solver.termination_condition
    status = {
        Termination.optimal: Status.OPTIMAL,
        Termination.infeasible: Status.INFEASIBLE,
        Termination.maxTimeLimit: Status.TIME_LIMIT,
    }.get(tc, Status.ERROR)
    col = None
    objective = None
    if status in (Status.OPTIMAL, Status.TIME_LIMIT) and len(results.solution) > 0:
        m.solutions.load_from(results)
        col = np.array([pyo.value(m.p[c]) for c in range(grid.n_cols)], dtype=np.float64)
        objective = float(pyo.value(m.objective))
    elif status is Status.TIME_LIMIT:
        status = Status.ERROR
    bound = results.problem.lower_bound
    info = SolverInfo(
        engine="pyomo",
        algorithm="appsi_highs",
        objective=objective,
        best_bound=float(bound) if bound is not None and np.isfinite(bound) else None,
        mip_gap=None,
        termination=str(tc),
        n_variables=m.nvariables(),
        n_constraints=m.nconstraints(),
    )
    return SolverRun(status, col, info, build_s, solve_s)
