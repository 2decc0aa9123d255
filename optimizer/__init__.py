"""Smart-charging planner: a site and its sessions in, power per session per step and KPIs out.

A pure library (no I/O, no OCPP). Use :func:`solve`::

    from optimizer import Problem, Session, Site, solve
    result = solve(problem, method="lp")
"""

from optimizer.errors import InvalidProblemError, OptimizerError, UnknownMethodError
from optimizer.formulation import Weights
from optimizer.planner import solve
from optimizer.problem import Problem, Session, Site
from optimizer.result import Kpis, Method, SolveResult, SolverInfo, Status, Timings

__all__ = [
    "InvalidProblemError",
    "Kpis",
    "Method",
    "OptimizerError",
    "Problem",
    "Session",
    "Site",
    "SolveResult",
    "SolverInfo",
    "Status",
    "Timings",
    "UnknownMethodError",
    "Weights",
    "solve",
]
