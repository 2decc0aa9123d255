"""``solve()``: the one entry point. Picks the method, runs it, checks the plan, falls back if needed.

Whatever happens inside, the plan that comes out respects every hard constraint (windows, max power,
energy needed, the cap; min power for the MILP): solver answers are projected and checked by
:mod:`optimizer.feasibility`, and a solver failure falls back to the heuristic (flagged in
``SolveResult.solver.fallback_reason``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from optimizer import heuristics
from optimizer.errors import FieldProblem, InvalidProblemError, UnknownMethodError
from optimizer.feasibility import repair, violations
from optimizer.formulation import Weights, plan_objective
from optimizer.grid import FloatArray, Grid, build_grid
from optimizer.highs_backend import ALGORITHMS, HighsOptions
from optimizer.kpis import compute_kpis, plan_figures
from optimizer.lp import Progress, SolverRun, solve_lp_highs
from optimizer.milp import relative_gap, solve_milp_highs
from optimizer.problem import Problem
from optimizer.result import Method, SolveResult, SolverInfo, Status, Timings

ENGINES = ("highs", "pyomo")
DEFAULT_MILP_TIME_LIMIT_S = 30.0
DEFAULT_MIP_GAP = 0.01

_BASELINES: dict[Method, Callable[[Grid], FloatArray]] = {
    Method.HEURISTIC: heuristics.least_laxity_first,
    Method.EARLIEST_DEADLINE: heuristics.earliest_deadline_first,
    Method.EQUAL_SHARE: heuristics.equal_share,
    Method.UNCONTROLLED: heuristics.uncontrolled,
}


def parse_method(method: str | Method) -> Method:
    """Turn a method name into a Method, with a clear error for unknown names."""
    if isinstance(method, Method):
        return method
    try:
        return Method(str(method).strip().lower())
    except ValueError:
        known = ", ".join(m.value for m in Method)
        raise UnknownMethodError(f"unknown method {method!r}: choose one of {known}") from None


def solve(
    problem: Problem,
    method: str | Method = Method.LP,
    *,
    weights: Weights | None = None,
    time_limit_s: float | None = None,
    mip_gap: float = DEFAULT_MIP_GAP,
    algorithm: str = "auto",
    engine: str = "highs",
    fallback: bool = True,
    progress: Progress | None = None,
) -> SolveResult:
    """Plan every session of ``problem``.

    ``method``: ``lp`` (default), ``milp`` (adds min power), ``heuristic`` (least laxity first), or a
    baseline (``uncontrolled``, ``equal_share``, ``earliest_deadline``). ``time_limit_s`` bounds the
    solver (MILP default 30 s); ``mip_gap`` is the relative gap at which the MILP stops. ``engine``
    ``highs`` builds the model as arrays (fast); ``pyomo`` builds the reference Pyomo model.
    With ``fallback`` (default) a solver failure yields the heuristic plan instead of an error.
    """
    t_start = time.perf_counter()
    meth = parse_method(method)
    if engine not in ENGINES:
        raise UnknownMethodError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if algorithm not in ALGORITHMS:
        raise UnknownMethodError(
            f"unknown algorithm {algorithm!r}: choose one of {', '.join(ALGORITHMS)}"
        )
    if not (0.0 <= mip_gap < 1.0):
        raise InvalidProblemError([FieldProblem("mip_gap", f"must be in [0, 1) (got {mip_gap})")])
    if time_limit_s is not None and not time_limit_s > 0:
        raise InvalidProblemError(
            [FieldProblem("time_limit_s", f"must be > 0 seconds (got {time_limit_s})")]
        )
    weights = weights or Weights()
    say = progress or (lambda _msg: None)

    grid = build_grid(problem)
    warnings = _input_warnings(problem, grid)

    if meth in _BASELINES:
        t0 = time.perf_counter()
        col = _BASELINES[meth](grid)
        solve_s = time.perf_counter() - t0
        status = Status.FEASIBLE
        if meth is Method.UNCONTROLLED and violations(grid, col):
            status = Status.INFEASIBLE
            warnings.append("uncontrolled charging ignores the site cap by design (KPIs only)")
        info = SolverInfo(engine="none", algorithm=meth.value, termination="heuristic")
        return _result(problem, grid, meth, status, col, info, 0.0, solve_s, t_start, warnings)

    min_power = meth is Method.MILP
    if grid.n_cols == 0:
        info = SolverInfo(engine="none", termination="nothing to plan", objective=0.0)
        col = np.zeros(0)
        return _result(problem, grid, meth, Status.OPTIMAL, col, info, 0.0, 0.0, t_start, warnings)

    if min_power and time_limit_s is None:
        time_limit_s = DEFAULT_MILP_TIME_LIMIT_S
    options = HighsOptions(algorithm=algorithm, time_limit_s=time_limit_s, mip_rel_gap=mip_gap)
    reason: str | None = None
    run: SolverRun | None = None
    try:
        run = _run_engine(grid, weights, options, engine, min_power, say)
    except Exception as exc:  # noqa: BLE001 - any solver crash must end in a safe plan
        reason = f"{engine} failed: {type(exc).__name__}: {exc}"

    if run is not None and run.col_power is not None:
        col = repair(grid, run.col_power)
        broken = violations(grid, col, min_power=min_power)
        if not broken:
            info = _with_objective(run.info, plan_objective(grid, weights, col))
            return _result(
                problem,
                grid,
                meth,
                run.status,
                col,
                info,
                run.build_s,
                run.solve_s,
                t_start,
                warnings,
            )
        reason = "solver plan broke hard constraints: " + "; ".join(broken)
    elif run is not None:
        reason = f"solver returned no plan ({run.info.termination or run.status.value})"

    assert reason is not None
    say(f"falling back to the heuristic: {reason}")
    if not fallback:
        info = SolverInfo(engine=engine, termination=reason)
        col = np.zeros(grid.n_cols)
        status = run.status if run is not None and not run.status.has_plan else Status.ERROR
        return _result(problem, grid, meth, status, col, info, 0.0, 0.0, t_start, warnings)
    t0 = time.perf_counter()
    col = heuristics.least_laxity_first(grid)
    info = SolverInfo(
        engine="none",
        algorithm=Method.HEURISTIC.value,
        termination="heuristic",
        fallback_reason=reason,
    )
    warnings.append(f"{meth.value} failed, plan made by the heuristic instead: {reason}")
    return _result(
        problem,
        grid,
        Method.HEURISTIC,
        Status.FEASIBLE,
        col,
        info,
        0.0,
        time.perf_counter() - t0,
        t_start,
        warnings,
    )


def _run_engine(
    grid: Grid,
    weights: Weights,
    options: HighsOptions,
    engine: str,
    min_power: bool,
    say: Progress,
) -> SolverRun:
    if engine == "pyomo":
        from optimizer.pyomo_model import solve_pyomo

        return solve_pyomo(grid, weights, options, min_power=min_power, progress=say)
    if min_power:
        return solve_milp_highs(grid, weights, options, progress=say)
    return solve_lp_highs(grid, weights, options, progress=say)


def _with_objective(info: SolverInfo, objective: float) -> SolverInfo:
    gap = info.mip_gap
    if info.best_bound is not None and gap is not None:
        gap = relative_gap(objective, info.best_bound)
    return SolverInfo(
        engine=info.engine,
        algorithm=info.algorithm,
        objective=objective,
        best_bound=info.best_bound,
        mip_gap=gap,
        termination=info.termination,
        fallback_reason=info.fallback_reason,
        n_variables=info.n_variables,
        n_constraints=info.n_constraints,
    )


def _input_warnings(problem: Problem, grid: Grid) -> list[str]:
    out: list[str] = []
    has_cols = np.diff(grid.col_start) > 0
    for i, s in enumerate(problem.sessions):
        if s.energy_kwh > 0 and not has_cols[i]:
            out.append(
                f"session {s.id} has no time inside the horizon "
                f"({problem.site.start.isoformat()} to {problem.site.end.isoformat()}): "
                "it gets no power"
            )
    return out


def _result(
    problem: Problem,
    grid: Grid,
    method: Method,
    status: Status,
    col_power: FloatArray,
    info: SolverInfo,
    build_s: float,
    solve_s: float,
    t_start: float,
    warnings: list[str],
) -> SolveResult:
    figures = plan_figures(grid, col_power)
    total_s = time.perf_counter() - t_start
    return SolveResult(
        status=status,
        method=method,
        session_ids=tuple(s.id for s in problem.sessions),
        power_kw=grid.to_dense(col_power),
        delivered_kwh=figures.delivered_kwh,
        unmet_kwh=figures.unmet_kwh,
        site_power_kw=figures.site_power_kw,
        kpis=compute_kpis(grid, figures, solve_time_s=total_s),
        timings=Timings(build_s=build_s, solve_s=solve_s, total_s=total_s),
        solver=info,
        problem=problem,
        warnings=tuple(warnings),
    )
