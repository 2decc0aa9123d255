"""The LP/MILP as arrays: objective, bounds and constraint matrix, built with numpy only.

This is the hot path. The same coefficients feed the Pyomo reference model
(:mod:`optimizer.pyomo_model`), and tests check that both reach the same optimum.

Variables: ``p[c]`` for every column ``c`` = (session i, step k) inside a window (kW), and, when the
peak term is on, one ``z`` (kW) for the site peak.

Constraint families (rows, in this order):

* ``site_cap[k]``:       sum over sessions present in step k of ``p`` <= cap[k]
* ``energy_needed[i]``:  sum over steps of ``p · share · Δt`` <= energy still needed by session i
* ``peak[k]`` (optional): sum of ``p`` in step k - z <= 0

Bounds: ``0 <= p <= min(max power, need / (share · Δt))``. For the MILP, a column of a session with a
minimum power is semi-continuous: ``p = 0`` or ``min power <= p <= upper``.

Objective (minimised): per kWh delivered ``-100 · priority/min priority`` (primary: deliver as much weighted
energy as possible; unmet energy is the implicit slack of ``energy_needed``), plus secondary terms:
``price`` × price normalised to [0, 1] over the horizon, ``early`` × (step + 1)/T (charge early; also
a tie-breaker), ``urgency`` × (1 − the session's departure normalised to [0, 1]) × (step + 1)/T (whoever
leaves first charges first: without it, sessions that are interchangeable get arbitrary, often
alternating, allocations, and each re-plan of a rolling horizon may pick another),
and ``peak`` × Δt per kW of site peak.

Why the secondary terms can never cost energy: the cap is in kW, and a kW of cap in a step is worth
``share · Δt`` kWh to a session (see optimizer.grid). Moving a kW of cap from a session with a full
step to one with a small share trades up to ``secondary × Δt`` against ``share × Δt`` kWh of primary. So
a kWh of the primary is worth ``2 / grid.MIN_SHARE`` (100) against secondary weights that must add up to
less than 1 per kWh: then even the worst such exchange never pays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from optimizer.errors import FieldProblem, InvalidProblemError
from optimizer.feasibility import column_upper_bounds
from optimizer.grid import MIN_SHARE, FloatArray, Grid

Int32Array = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]

INF = float("inf")
CONTINUOUS = 0
SEMI_CONTINUOUS = 2
# Sum of the secondary weights must stay below this to keep the primary goal dominant.
MAX_SECONDARY = 0.9
# Value of a kWh of the primary term relative to the secondary weights (see the module docstring).
# Twice the bound needed (1 / MIN_SHARE): the margin also keeps dual simplex fast here (BENCHMARKS.md).
PRIMARY_SCALE = 2.0 / MIN_SHARE


@dataclass(frozen=True, slots=True)
class Weights:
    """Weights of the secondary objective terms, each per kWh (peak: per kW of peak × Δt)."""

    price: float = 0.1
    early: float = 0.01
    peak: float = 0.0
    urgency: float = 0.0

    def __post_init__(self) -> None:
        terms = (
            ("price", self.price),
            ("early", self.early),
            ("peak", self.peak),
            ("urgency", self.urgency),
        )
        problems = [
            FieldProblem(f"weights.{name}", f"must be a number >= 0 (got {value})")
            for name, value in terms
            if not np.isfinite(value) or value < 0
        ]
        if not problems and sum(v for _, v in terms) >= MAX_SECONDARY:
            problems.append(
                FieldProblem(
                    "weights",
                    f"price + early + peak + urgency must be below {MAX_SECONDARY} so that "
                    "delivering energy always comes first",
                )
            )
        if problems:
            raise InvalidProblemError(problems)


@dataclass(frozen=True, slots=True)
class LinearProgram:
    """A model ready for HiGHS: column-wise sparse matrix and bounds."""

    n_power_cols: int
    has_peak: bool
    col_cost: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    row_lower: FloatArray
    row_upper: FloatArray
    a_start: Int32Array
    a_index: Int32Array
    a_value: FloatArray
    integrality: Int32Array | None

    @property
    def n_cols(self) -> int:
        """Number of variables."""
        return int(self.col_cost.shape[0])

    @property
    def n_rows(self) -> int:
        """Number of constraints."""
        return int(self.row_lower.shape[0])


def objective_coefficients(grid: Grid, weights: Weights) -> tuple[FloatArray, float]:
    """Cost per kW of each power column, and the cost per kW of the peak variable."""
    kwh_per_kw = grid.col_share * grid.step_hours
    min_priority = float(grid.priority.min()) if grid.n_sessions else 1.0
    # The primary term is scaled up rather than the secondary ones down: the same ratio, but the
    # secondary terms keep reduced costs well above the solver's tolerances (tiny tie-breakers made
    # dual simplex 6x slower at N = 10,000).
    per_kwh = -PRIMARY_SCALE * grid.priority[grid.col_session] / min_priority
    if weights.early > 0 and grid.n_steps:
        per_kwh = per_kwh + weights.early * (grid.col_step + 1) / grid.n_steps
    if weights.urgency > 0 and grid.n_sessions > 1:
        dep = grid.departure_s
        lo, hi = float(dep.min()), float(dep.max())
        if hi > lo:
            # A steeper cost of waiting for whoever leaves first: swapping a kWh between two
            # sessions and two steps then always favours the earlier departure in the earlier step.
            rank = (dep[grid.col_session] - lo) / (hi - lo)
            per_kwh = per_kwh + weights.urgency * (1.0 - rank) * (grid.col_step + 1) / grid.n_steps
    if weights.price > 0 and grid.price_per_kwh is not None:
        lo, hi = float(grid.price_per_kwh.min()), float(grid.price_per_kwh.max())
        if hi > lo:
            normalised = (grid.price_per_kwh[grid.col_step] - lo) / (hi - lo)
            per_kwh = per_kwh + weights.price * normalised
    return per_kwh * kwh_per_kw, weights.peak * grid.step_hours


def column_bounds(grid: Grid, *, min_power: bool) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Lower and upper bound of every power column, and which are semi-continuous (MILP).

    The upper bound is the session's max power and no more than its need in one step. With
    ``min_power``, a step in which even the minimum would overshoot the need cannot be used at all.
    """
    upper = column_upper_bounds(grid)
    semi = np.zeros(grid.n_cols, dtype=bool)
    if min_power:
        pmin = grid.min_power_kw[grid.col_session]
        semi = pmin > 0
        upper = np.where(semi & (upper < pmin), 0.0, upper)
        semi &= upper > 0
        return np.where(semi, pmin, 0.0), upper, semi
    return np.zeros(grid.n_cols), upper, semi


def build_lp(grid: Grid, weights: Weights, *, min_power: bool = False) -> LinearProgram:
    """Build the arrays of the model (see the module docstring)."""
    n_p = grid.n_cols
    t = grid.n_steps
    has_peak = weights.peak > 0
    cost, peak_cost = objective_coefficients(grid, weights)
    lower, upper, semi = column_bounds(grid, min_power=min_power)
    integrality: Int32Array | None = None
    if np.any(semi):
        integrality = np.where(semi, SEMI_CONTINUOUS, CONTINUOUS).astype(np.int32)

    energy_row = t + grid.col_session
    kwh_per_kw = grid.col_share * grid.step_hours
    per_col = 3 if has_peak else 2
    index = np.empty((n_p, per_col), dtype=np.int32)
    value = np.empty((n_p, per_col), dtype=np.float64)
    index[:, 0] = grid.col_step
    value[:, 0] = 1.0
    index[:, 1] = energy_row
    value[:, 1] = kwh_per_kw
    n_rows = t + grid.n_sessions
    row_lower = np.full(n_rows + (t if has_peak else 0), -INF)
    row_upper = np.concatenate((grid.capacity_kw, grid.energy_kwh))
    a_index = index.reshape(-1)
    a_value = value.reshape(-1)
    a_start = np.arange(0, per_col * n_p + 1, per_col, dtype=np.int32)
    if has_peak:
        index[:, 2] = n_rows + grid.col_step
        value[:, 2] = 1.0
        a_index = np.concatenate((index.reshape(-1), np.arange(n_rows, n_rows + t, dtype=np.int32)))
        a_value = np.concatenate((value.reshape(-1), np.full(t, -1.0)))
        a_start = np.append(a_start, a_start[-1] + t).astype(np.int32)
        row_upper = np.concatenate((row_upper, np.zeros(t)))
        cost = np.append(cost, peak_cost)
        lower = np.append(lower, 0.0)
        upper = np.append(upper, float(grid.capacity_kw.max()) if t else 0.0)
        if integrality is not None:
            integrality = np.append(integrality, CONTINUOUS).astype(np.int32)
    return LinearProgram(
        n_power_cols=n_p,
        has_peak=has_peak,
        col_cost=np.ascontiguousarray(cost, dtype=np.float64),
        col_lower=np.ascontiguousarray(lower, dtype=np.float64),
        col_upper=np.ascontiguousarray(upper, dtype=np.float64),
        row_lower=row_lower,
        row_upper=np.ascontiguousarray(row_upper, dtype=np.float64),
        a_start=a_start,
        a_index=np.ascontiguousarray(a_index, dtype=np.int32),
        a_value=np.ascontiguousarray(a_value, dtype=np.float64),
        integrality=integrality,
    )


def plan_objective(grid: Grid, weights: Weights, col_power: FloatArray) -> float:
    """Objective value of a plan given as column powers (the peak term uses the plan's peak)."""
    cost, peak_cost = objective_coefficients(grid, weights)
    value = float(np.dot(cost, col_power))
    if weights.peak > 0:
        value += peak_cost * peak_value(grid, col_power)
    return value


def peak_value(grid: Grid, col_power: FloatArray) -> float:
    """The value the peak variable takes for a plan (max site power)."""
    if grid.n_steps == 0:
        return 0.0
    return float(np.bincount(grid.col_step, weights=col_power, minlength=grid.n_steps).max())


def full_vector(lp: LinearProgram, grid: Grid, col_power: FloatArray) -> FloatArray:
    """Variable vector (power columns, and the peak if modelled) for a plan."""
    if lp.has_peak:
        return np.append(col_power, peak_value(grid, col_power))
    return col_power
