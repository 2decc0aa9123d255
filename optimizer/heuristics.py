"""Fast plans without a solver: the fallback heuristic and the baselines it is compared with.

All of them walk the steps in order and hand out power within the step, vectorised over the sessions
present. They use the same grid rule as the LP (see :mod:`optimizer.grid`), so their KPIs compare.

* ``least_laxity_first`` (the fallback heuristic): within the cap, sessions with the least slack
  (time left minus time needed at max power) first; respects min power (a session that cannot get
  its minimum in a step gets nothing and the power goes to the next one).
* ``earliest_deadline_first`` (baseline): within the cap, earliest departure first.
* ``equal_share`` (baseline): within the cap, shared equally (water-filling: what one session cannot
  take goes to the others).
* ``uncontrolled`` (baseline): everyone at max power from arrival until full, ignoring the cap
  (for KPIs only: it shows what the site would draw without smart charging).
"""

from __future__ import annotations

import numpy as np

from optimizer.grid import FloatArray, Grid, IntArray


def _headroom(grid: Grid, cols: IntArray, remaining: FloatArray) -> FloatArray:
    """Most each column may take this step: max power, and no more than the session still needs."""
    s = grid.col_session[cols]
    kwh_per_kw = grid.col_share[cols] * grid.step_hours
    return np.asarray(np.minimum(grid.max_power_kw[s], remaining[s] / kwh_per_kw), np.float64)


def _greedy_in_order(cap: float, want: FloatArray, pmin: FloatArray | None) -> FloatArray:
    """Give each column (already in priority order) what it wants until the cap is used up.

    With ``pmin``, a column that cannot get its minimum gets nothing and the power goes on to the
    next ones (in one pass: O(n) per step).
    """
    if pmin is None:
        before = np.cumsum(want) - want
        return np.asarray(np.clip(cap - before, 0.0, want), dtype=np.float64)
    want = np.where(want < pmin, 0.0, want)  # cannot reach its minimum even alone
    before = np.cumsum(want) - want
    p = np.clip(cap - before, 0.0, want)
    short = np.flatnonzero((p > 0) & (p < pmin))
    if short.size == 0:
        return np.asarray(p, dtype=np.float64)
    # Everyone before the first short column got all it wanted; hand out the rest one by one.
    j = int(short[0])
    left = cap - float(before[j])
    p[j:] = 0.0
    for c in range(j, want.size):
        if left < pmin[c] or want[c] <= 0.0:
            continue
        p[c] = min(want[c], left)
        left -= p[c]
    return np.asarray(p, dtype=np.float64)


def _priority_plan(grid: Grid, key: str, respect_min_power: bool) -> FloatArray:
    order, bounds = grid.columns_by_step()
    remaining = grid.energy_kwh.copy()
    p = np.zeros(grid.n_cols)
    step_s = grid.step_hours * 3600.0
    for k in range(grid.n_steps):
        cols = order[bounds[k] : bounds[k + 1]]
        if cols.size == 0:
            continue
        want = _headroom(grid, cols, remaining)
        s = grid.col_session[cols]
        if key == "laxity":
            time_left_h = (grid.departure_s[s] - k * step_s) / 3600.0
            with np.errstate(divide="ignore", invalid="ignore"):
                need_h = np.where(
                    grid.max_power_kw[s] > 0, remaining[s] / grid.max_power_kw[s], np.inf
                )
            rank = np.lexsort((s, time_left_h - need_h))
        else:
            rank = np.lexsort((s, grid.departure_s[s]))
        pmin = grid.min_power_kw[s][rank] if respect_min_power else None
        alloc = _greedy_in_order(float(grid.capacity_kw[k]), want[rank], pmin)
        p[cols[rank]] = alloc
        np.subtract.at(remaining, s[rank], alloc * grid.col_share[cols[rank]] * grid.step_hours)
        np.maximum(remaining, 0.0, out=remaining)
    return p


def least_laxity_first(grid: Grid) -> FloatArray:
    """The fallback heuristic: least laxity first under the cap, respecting min power."""
    return _priority_plan(grid, "laxity", respect_min_power=True)


def earliest_deadline_first(grid: Grid) -> FloatArray:
    """Baseline: earliest departure first under the cap."""
    return _priority_plan(grid, "deadline", respect_min_power=False)


def equal_share(grid: Grid) -> FloatArray:
    """Baseline: the cap shared equally among sessions present (water-filling)."""
    order, bounds = grid.columns_by_step()
    remaining = grid.energy_kwh.copy()
    p = np.zeros(grid.n_cols)
    for k in range(grid.n_steps):
        cols = order[bounds[k] : bounds[k + 1]]
        if cols.size == 0:
            continue
        want = _headroom(grid, cols, remaining)
        alloc = _water_fill(float(grid.capacity_kw[k]), want)
        p[cols] = alloc
        s = grid.col_session[cols]
        np.subtract.at(remaining, s, alloc * grid.col_share[cols] * grid.step_hours)
        np.maximum(remaining, 0.0, out=remaining)
    return p


def _water_fill(cap: float, want: FloatArray) -> FloatArray:
    """Largest equal level λ with sum(min(want, λ)) <= cap."""
    if want.sum() <= cap:
        return want.copy()
    srt = np.sort(want)
    m = srt.size
    used_below = np.concatenate(([0.0], np.cumsum(srt)[:-1]))
    level = (cap - used_below) / (m - np.arange(m))
    j = int(np.argmax(level <= srt))
    return np.asarray(np.minimum(want, level[j]), dtype=np.float64)


def uncontrolled(grid: Grid) -> FloatArray:
    """Baseline: everyone at max power from arrival until full, ignoring the cap."""
    p = np.zeros(grid.n_cols)
    for i in range(grid.n_sessions):
        lo, hi = int(grid.col_start[i]), int(grid.col_start[i + 1])
        if hi == lo:
            continue
        kwh_per_kw = grid.col_share[lo:hi] * grid.step_hours
        full = grid.max_power_kw[i] * kwh_per_kw
        before = np.cumsum(full) - full
        energy = np.clip(grid.energy_kwh[i] - before, 0.0, full)
        p[lo:hi] = energy / kwh_per_kw
    return p
