"""What the optimizer returns: solver-independent status, the plan, KPIs and timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from optimizer.problem import Problem

FloatArray = npt.NDArray[np.float64]


class Status(StrEnum):
    """Outcome of a solve, independent of the solver that produced it.

    ``TIME_LIMIT`` always comes with the best feasible plan found; an infeasible plan is never returned.
    """

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"
    ERROR = "error"

    @property
    def has_plan(self) -> bool:
        """True when the result carries a plan that respects every hard constraint."""
        return self in (Status.OPTIMAL, Status.FEASIBLE, Status.TIME_LIMIT)


class Method(StrEnum):
    """Planning methods (``lp``, ``milp``, ``heuristic``) and the baselines kept for comparison."""

    LP = "lp"
    MILP = "milp"
    HEURISTIC = "heuristic"
    UNCONTROLLED = "uncontrolled"
    EQUAL_SHARE = "equal_share"
    EARLIEST_DEADLINE = "earliest_deadline"


@dataclass(frozen=True, slots=True)
class Timings:
    """Wall-clock seconds: model build (incl. hand-over to the solver), solver run, and the whole call."""

    build_s: float = 0.0
    solve_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SolverInfo:
    """Details of how the plan was found."""

    engine: str = "none"
    algorithm: str = ""
    objective: float | None = None
    best_bound: float | None = None
    mip_gap: float | None = None
    termination: str = ""
    fallback_reason: str | None = None
    n_variables: int = 0
    n_constraints: int = 0


@dataclass(frozen=True, slots=True)
class Kpis:
    """Key figures of a plan. Energies in kWh, powers in kW, ratios in [0, 1]."""

    energy_requested_kwh: float
    energy_delivered_kwh: float
    served_ratio: float
    unmet_kwh: float
    sessions: int
    sessions_fully_served: int
    sessions_fully_served_pct: float
    peak_kw: float
    load_factor: float
    cap_violation_kwh: float
    cap_violation_steps: int
    energy_cost: float | None
    jain_fairness: float | None
    solve_time_s: float

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SolveResult:
    """A plan for every session and step, with what it achieves and how it was found.

    ``power_kw[i, k]`` is the power limit of session ``i`` (in ``session_ids`` order, the problem's
    order) during step ``k``; see :mod:`optimizer.grid` for how it maps to energy.
    """

    status: Status
    method: Method
    session_ids: tuple[str, ...]
    power_kw: FloatArray
    delivered_kwh: FloatArray
    unmet_kwh: FloatArray
    site_power_kw: FloatArray
    kpis: Kpis
    timings: Timings
    solver: SolverInfo
    problem: Problem = field(repr=False)
    warnings: tuple[str, ...] = ()

    def session_power(self, session_id: str) -> FloatArray:
        """Planned power per step for one session."""
        return np.asarray(self.power_kw[self.session_ids.index(session_id)], dtype=np.float64)

    @property
    def used_fallback(self) -> bool:
        """True when the requested method failed and the heuristic planned instead."""
        return self.solver.fallback_reason is not None
