"""Hard constraints of every plan: checked before any plan leaves the optimizer.

Solvers work to tolerances (an interior-point answer may sit 1e-8 outside a bound). A plan that goes
to a transformer must not, so every solver answer is projected back inside the hard constraints
(:func:`repair`) and then checked (:func:`violations`) before it is returned.
"""

from __future__ import annotations

import numpy as np

from optimizer.grid import FloatArray, Grid

# Powers below this (0.1 W) are solver noise, not a plan to charge.
ZERO_KW = 1e-4
# Relative tolerance of the checks.
TOL = 1e-6


def column_upper_bounds(grid: Grid) -> FloatArray:
    """Per-column upper bound: the session's max power, and no more than its need in one step."""
    pmax = grid.max_power_kw[grid.col_session]
    need = grid.energy_kwh[grid.col_session]
    with np.errstate(divide="ignore"):
        by_need = need / (grid.col_share * grid.step_hours)
    return np.asarray(np.minimum(pmax, by_need), dtype=np.float64)


def repair(grid: Grid, col_power: FloatArray) -> FloatArray:
    """Project a plan inside bounds, energy needs and the cap by clipping and scaling down only."""
    p = np.clip(col_power, 0.0, grid.max_power_kw[grid.col_session])
    p[p < ZERO_KW] = 0.0
    energy = np.bincount(
        grid.col_session, weights=p * grid.col_share * grid.step_hours, minlength=grid.n_sessions
    )
    over = energy > grid.energy_kwh
    if np.any(over):
        factor = np.ones(grid.n_sessions)
        factor[over] = grid.energy_kwh[over] / energy[over]
        p *= factor[grid.col_session]
    site = np.bincount(grid.col_step, weights=p, minlength=grid.n_steps)
    over = site > grid.capacity_kw
    if np.any(over):
        factor = np.ones(grid.n_steps)
        factor[over] = grid.capacity_kw[over] / site[over]
        p *= factor[grid.col_step]
    return p


def violations(
    grid: Grid, col_power: FloatArray, *, min_power: bool = False, limit: int = 5
) -> list[str]:
    """Describe the hard constraints a plan breaks (empty when it is feasible)."""
    found: list[str] = []
    p = col_power
    if p.shape != (grid.n_cols,):
        return [f"plan has {p.shape} values, expected {grid.n_cols}"]
    if not np.all(np.isfinite(p)):
        found.append("plan contains non-finite power values")
        return found
    bad = np.flatnonzero(p < -TOL)
    found += [f"negative power {p[c]:.6g} kW in step {grid.col_step[c]}" for c in bad[:limit]]
    pmax = grid.max_power_kw[grid.col_session]
    bad = np.flatnonzero(p > pmax * (1 + TOL) + TOL)
    found += [
        f"session #{grid.col_session[c]} above its max power in step {grid.col_step[c]}: "
        f"{p[c]:.6g} > {pmax[c]:.6g} kW"
        for c in bad[:limit]
    ]
    if min_power:
        pmin = grid.min_power_kw[grid.col_session]
        bad = np.flatnonzero((p > ZERO_KW) & (p < pmin * (1 - TOL) - TOL))
        found += [
            f"session #{grid.col_session[c]} below its min power in step {grid.col_step[c]}: "
            f"{p[c]:.6g} < {pmin[c]:.6g} kW"
            for c in bad[:limit]
        ]
    energy = np.bincount(
        grid.col_session, weights=p * grid.col_share * grid.step_hours, minlength=grid.n_sessions
    )
    bad = np.flatnonzero(energy > grid.energy_kwh * (1 + TOL) + TOL)
    found += [
        f"session #{i} gets more energy than it needs: {energy[i]:.6g} > "
        f"{grid.energy_kwh[i]:.6g} kWh"
        for i in bad[:limit]
    ]
    site = np.bincount(grid.col_step, weights=p, minlength=grid.n_steps)
    bad = np.flatnonzero(site > grid.capacity_kw * (1 + TOL) + TOL)
    found += [
        f"site power above the cap in step {k}: {site[k]:.6g} > {grid.capacity_kw[k]:.6g} kW"
        for k in bad[:limit]
    ]
    return found
