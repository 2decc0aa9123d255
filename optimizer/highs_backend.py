"""The one module that talks to HiGHS (through ``highspy``).

It takes the arrays of :class:`optimizer.formulation.LinearProgram`, hands them over in one call
(``passModel``), runs, and maps HiGHS's states to our own :class:`optimizer.result.Status`. The model
stays alive between runs so the MILP dive can change bounds and re-solve warm.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimizer.errors import SolverUnavailableError
from optimizer.formulation import LinearProgram
from optimizer.grid import FloatArray, IntArray
from optimizer.result import Status

ALGORITHMS = ("auto", "simplex", "ipm", "pdlp")

_banner_lock = threading.Lock()
_banner_done = False


def _new_highs() -> Any:
    """A quiet Highs instance.

    HiGHS prints a copyright banner on stdout when the first instance of a process is created, before
    any option can be set. Our CLI writes plans to stdout, so that first construction runs with stdout
    pointed at /dev/null.
    """
    global _banner_done  # noqa: PLW0603 - process-wide fact about the C++ library
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise SolverUnavailableError(f"highspy is not installed: {exc}") from exc
    with _banner_lock:
        if _banner_done:
            h = highspy.Highs()  # type: ignore[no-untyped-call]
        else:
            saved = os.dup(1)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, 1)
                h = highspy.Highs()  # type: ignore[no-untyped-call]
            finally:
                os.dup2(saved, 1)
                os.close(saved)
                os.close(devnull)
            _banner_done = True
    h.setOptionValue("output_flag", False)
    return h


@dataclass(frozen=True, slots=True)
class HighsOptions:
    """Solver options. ``time_limit_s`` None means no limit."""

    algorithm: str = "auto"
    time_limit_s: float | None = None
    mip_rel_gap: float = 0.01
    threads: int = 1
    # HiGHS's LP presolve spends more time than it saves on this model (3.4 s vs 5.7 s for dual
    # simplex at N = 10,000; BENCHMARKS.md). The MIP search keeps its presolve.
    lp_presolve: bool = False


@dataclass(frozen=True, slots=True)
class HighsOutcome:
    """What one run gave: our status, HiGHS's own word for it, and the values."""

    status: Status
    termination: str
    x: FloatArray | None
    objective: float | None
    best_bound: float | None
    mip_gap: float | None
    solve_s: float
    algorithm: str
    hit_limit: bool = False


def choose_algorithm(algorithm: str) -> str:
    """``auto`` is serial dual simplex without presolve.

    Measured on the benchmark instances (BENCHMARKS.md), single-threaded: dual simplex without
    presolve beat interior point (IPX, no crossover) at every size, 3.4–4 s against 7.5 s at
    N = 10,000, and 1.3 s against 2.8 s at N = 2,000 × 288 steps; devex pricing took 19 s.
    """
    return "simplex" if algorithm == "auto" else algorithm


class HighsModel:
    """A model loaded into HiGHS, kept for re-solves."""

    def __init__(self, lp: LinearProgram, options: HighsOptions) -> None:
        import highspy

        self._hs = highspy
        self.lp = lp
        self.options = options
        self.algorithm = choose_algorithm(options.algorithm)
        h = _new_highs()
        nnz = int(lp.a_index.shape[0])
        # An empty integrality array is read past its end by this overload: always pass one per column.
        integrality = (
            lp.integrality if lp.integrality is not None else np.zeros(lp.n_cols, dtype=np.int32)
        )
        status = h.passModel(
            lp.n_cols,
            lp.n_rows,
            nnz,
            int(highspy.MatrixFormat.kColwise),
            int(highspy.ObjSense.kMinimize),
            0.0,
            lp.col_cost,
            lp.col_lower,
            lp.col_upper,
            lp.row_lower,
            lp.row_upper,
            lp.a_start,
            lp.a_index,
            lp.a_value,
            integrality,
        )
        if status == highspy.HighsStatus.kError:
            raise SolverUnavailableError("HiGHS refused the model (passModel returned an error)")
        self._h = h
        self.is_mip = lp.integrality is not None
        self._set_options(mip=self.is_mip)

    def _set_options(self, *, mip: bool) -> None:
        h, o = self._h, self.options
        h.setOptionValue("threads", o.threads)
        h.setOptionValue("random_seed", 0)
        if o.time_limit_s is not None:
            h.setOptionValue("time_limit", float(o.time_limit_s))
        if mip:
            h.setOptionValue("mip_rel_gap", float(o.mip_rel_gap))
            h.setOptionValue("presolve", "choose")
            return
        h.setOptionValue("presolve", "choose" if o.lp_presolve else "off")
        if self.algorithm == "ipm":
            h.setOptionValue("solver", "ipm")
            # Crossover to a vertex roughly doubles the time on this LP and buys nothing: the plan is
            # projected onto the hard constraints afterwards anyway (optimizer.feasibility).
            h.setOptionValue("run_crossover", "off")
        elif self.algorithm == "pdlp":
            h.setOptionValue("solver", "pdlp")
        else:
            h.setOptionValue("solver", "simplex")

    def set_time_limit(self, seconds: float | None) -> None:
        """Allow the next run ``seconds`` more.

        HiGHS measures its time limit against its run clock, which adds up over every run of the
        same instance, so the limit is set relative to the time already spent.
        """
        limit = float("inf") if seconds is None else self._h.getRunTime() + float(seconds)
        self._h.setOptionValue("time_limit", limit)

    def change_bounds(self, cols: IntArray, lower: FloatArray, upper: FloatArray) -> None:
        """Change the bounds of some columns (warm re-solve follows)."""
        idx = np.ascontiguousarray(cols, dtype=np.int32)
        self._h.changeColsBounds(
            int(idx.size),
            idx,
            np.ascontiguousarray(lower, dtype=np.float64),
            np.ascontiguousarray(upper, dtype=np.float64),
        )

    def relax_integrality(self) -> None:
        """Treat every column as continuous (the LP relaxation)."""
        n = self.lp.n_cols
        self._h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.zeros(n, dtype=np.int32))
        self.is_mip = False
        self._set_options(mip=False)

    def restore_integrality(self) -> None:
        """Put the MILP's integrality back."""
        if self.lp.integrality is None:
            return
        n = self.lp.n_cols
        self._h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), self.lp.integrality)
        self._h.setOptionValue("solver", "choose")
        self._h.setOptionValue("run_crossover", "on")
        self.is_mip = True
        self._set_options(mip=True)

    def set_solution(self, x: FloatArray) -> None:
        """Give HiGHS a known feasible solution to start the MIP search from."""
        sol = self._hs.HighsSolution()
        sol.col_value = np.asarray(x, dtype=np.float64).tolist()
        sol.value_valid = True
        self._h.setSolution(sol)

    def run(self) -> HighsOutcome:
        """Solve and read the result (values only when HiGHS has a feasible primal solution)."""
        hs, h = self._hs, self._h
        t0 = time.perf_counter()
        run_status = h.run()
        solve_s = time.perf_counter() - t0
        model_status = h.getModelStatus()
        info = h.getInfo()
        termination = h.modelStatusToString(model_status)
        feasible = int(info.primal_solution_status) == int(
            hs.SolutionStatus.kSolutionStatusFeasible
        )
        is_mip = self.is_mip
        ms = hs.HighsModelStatus
        hit_limit = model_status in (
            ms.kTimeLimit,
            ms.kIterationLimit,
            ms.kInterrupt,
            ms.kSolutionLimit,
        )
        if run_status == hs.HighsStatus.kError and not feasible:
            status = Status.ERROR
        elif model_status == ms.kOptimal:
            status = Status.OPTIMAL
        elif model_status == ms.kInfeasible:
            status = Status.INFEASIBLE
        elif hit_limit:
            status = Status.TIME_LIMIT if feasible else Status.ERROR
        elif feasible:
            status = Status.FEASIBLE
        else:
            status = Status.ERROR
        x = None
        objective = None
        if status.has_plan and feasible:
            x = np.asarray(h.getSolution().col_value, dtype=np.float64)
            objective = float(info.objective_function_value)
        elif status is Status.OPTIMAL:
            status = Status.ERROR  # optimal without values: never trust it
        bound = float(info.mip_dual_bound) if is_mip else objective
        gap = float(info.mip_gap) if is_mip and x is not None else None
        return HighsOutcome(
            status=status,
            termination=termination,
            x=x,
            objective=objective,
            best_bound=bound,
            mip_gap=gap,
            solve_s=solve_s,
            algorithm="mip" if is_mip else self.algorithm,
            hit_limit=hit_limit,
        )
