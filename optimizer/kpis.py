"""KPIs of any plan (optimal, heuristic or baseline), computed the same way for all."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.grid import FloatArray, Grid
from optimizer.result import Kpis

# A session counts as fully served when what is missing is below both of these.
FULLY_SERVED_ABS_KWH = 1e-3
FULLY_SERVED_REL = 1e-4


@dataclass(frozen=True, slots=True)
class PlanFigures:
    """Per-session and per-step figures derived from a plan's column powers."""

    delivered_kwh: FloatArray
    unmet_kwh: FloatArray
    site_power_kw: FloatArray
    site_energy_kwh: FloatArray


def plan_figures(grid: Grid, col_power: FloatArray) -> PlanFigures:
    """Delivered and unmet energy per session; site power (sum of limits) and energy per step."""
    col_energy = col_power * grid.col_share * grid.step_hours
    delivered = np.bincount(grid.col_session, weights=col_energy, minlength=grid.n_sessions)
    unmet = np.maximum(grid.energy_kwh - delivered, 0.0)
    site_power = np.bincount(grid.col_step, weights=col_power, minlength=grid.n_steps)
    site_energy = np.bincount(grid.col_step, weights=col_energy, minlength=grid.n_steps)
    return PlanFigures(
        delivered_kwh=delivered.astype(np.float64),
        unmet_kwh=unmet.astype(np.float64),
        site_power_kw=site_power.astype(np.float64),
        site_energy_kwh=site_energy.astype(np.float64),
    )


def compute_kpis(grid: Grid, figures: PlanFigures, solve_time_s: float = 0.0) -> Kpis:
    """KPIs over the horizon.

    Peak and cap violation use the site power per step (the sum of the limits given to sessions
    present in the step: the most the site could draw). Load factor is delivered energy over what the
    peak would deliver for the whole horizon. Jain's fairness index is taken over each session's
    delivered/requested ratio (sessions that need nothing are left out).
    """
    requested = float(grid.energy_kwh.sum())
    delivered = float(figures.delivered_kwh.sum())
    unmet = float(figures.unmet_kwh.sum())
    n = grid.n_sessions
    served_tol = np.maximum(FULLY_SERVED_ABS_KWH, FULLY_SERVED_REL * grid.energy_kwh)
    fully = int(np.count_nonzero(figures.unmet_kwh <= served_tol))
    peak = float(figures.site_power_kw.max()) if grid.n_steps else 0.0
    horizon_h = grid.n_steps * grid.step_hours
    full_peak_kwh = peak * horizon_h  # may underflow to 0 for a denormal peak
    load_factor = delivered / full_peak_kwh if full_peak_kwh > 0 else 0.0
    excess = np.maximum(figures.site_power_kw - grid.capacity_kw, 0.0)
    # Tolerances of 1 W keep solver round-off from counting as a violation.
    violating = excess > 1e-3
    cap_violation_kwh = float((excess * violating).sum() * grid.step_hours)
    cost = (
        float(np.dot(figures.site_energy_kwh, grid.price_per_kwh))
        if grid.price_per_kwh is not None
        else None
    )
    return Kpis(
        energy_requested_kwh=requested,
        energy_delivered_kwh=delivered,
        served_ratio=delivered / requested if requested > 0 else 1.0,
        unmet_kwh=unmet,
        sessions=n,
        sessions_fully_served=fully,
        sessions_fully_served_pct=100.0 * fully / n if n else 100.0,
        peak_kw=peak,
        load_factor=load_factor,
        cap_violation_kwh=cap_violation_kwh,
        cap_violation_steps=int(np.count_nonzero(violating)),
        energy_cost=cost,
        jain_fairness=jain_index(grid, figures.delivered_kwh),
        solve_time_s=solve_time_s,
    )


def jain_index(grid: Grid, delivered_kwh: FloatArray) -> float | None:
    """Jain's fairness index over delivered/requested; None when no session needs energy."""
    needs = grid.energy_kwh > 0
    if not np.any(needs):
        return None
    x = delivered_kwh[needs] / grid.energy_kwh[needs]
    sq = float(np.dot(x, x))
    if sq == 0.0:
        return 1.0  # everyone got nothing: equal, if not good
    return float(x.sum() ** 2 / (x.size * sq))
