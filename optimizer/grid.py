"""The time grid: which part of which step each session may use.

The rule (stated in the README too):

* Step ``k`` covers ``[start + k·Δt, start + (k+1)·Δt)``.
* A session's window is ``[arrival, departure)``. Its *availability* in step ``k`` is the share of the
  step inside the window, ``a[i, k]`` in ``[0, 1]``. A session may only charge in steps with
  ``a[i, k] > 0``.
* The plan gives each session one power ``p[i, k]`` (kW) per step: the limit it may draw while it is
  plugged in during that step. The energy it receives in the step is ``p[i, k] · a[i, k] · Δt``.
* The site cap applies to the sum of ``p[i, k]`` over every session present at any time in the step,
  whatever its share. Within one step we cannot know who draws when (a charging profile holds one
  limit per step), so the cap must hold even if everyone present draws at once. This is conservative
  by at most one step of overlap per session, and never unsafe.
* Windows are clipped to the horizon: a session departing after the horizon ends only gets the steps
  inside it, and a session that has already left (departure <= start) gets none.
* Shares below 2 % of a step (18 s of a 15-minute step) are dropped: the session gets no power in that
  step. Without this floor, a sliver of a step would turn a kW of cap into almost no energy, and the
  secondary objective terms could outweigh the energy it is worth (see optimizer.formulation).
* All arithmetic is on absolute (UTC) time, so a daylight-saving change inside the horizon is handled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

import numpy as np
import numpy.typing as npt

from optimizer.problem import Problem

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Shares below this are dropped (see the module docstring); optimizer.formulation scales the secondary
# objective terms by it so that they can never outweigh energy.
MIN_SHARE = 0.02


@dataclass(frozen=True, slots=True)
class Grid:
    """Per-session windows on the step grid, as flat "columns" (one per session and step in window).

    Columns are ordered by session (in problem order) and then by step, so the columns of session
    ``i`` are ``col_start[i]:col_start[i + 1]``.
    """

    n_sessions: int
    n_steps: int
    step_hours: float
    col_session: IntArray
    col_step: IntArray
    col_share: FloatArray
    col_start: IntArray
    capacity_kw: FloatArray
    price_per_kwh: FloatArray | None
    energy_kwh: FloatArray
    max_power_kw: FloatArray
    min_power_kw: FloatArray
    priority: FloatArray
    departure_s: FloatArray

    @property
    def n_cols(self) -> int:
        """Number of (session, step) pairs inside some window."""
        return int(self.col_session.shape[0])

    def to_dense(self, col_values: FloatArray) -> FloatArray:
        """Scatter per-column values into a dense sessions × steps matrix."""
        out = np.zeros((self.n_sessions, self.n_steps))
        out[self.col_session, self.col_step] = col_values
        return out

    def columns_by_step(self) -> tuple[IntArray, IntArray]:
        """Column indices sorted by step, and where each step starts in that order."""
        order = np.argsort(self.col_step, kind="stable").astype(np.int64)
        bounds = np.searchsorted(self.col_step[order], np.arange(self.n_steps + 1))
        return order, bounds.astype(np.int64)


def build_grid(problem: Problem) -> Grid:
    """Compute every session's availability per step (vectorised over sessions)."""
    site = problem.site
    sessions = problem.sessions
    n, t = len(sessions), site.horizon_steps
    step_s = site.step_minutes * 60.0
    # Subtracting two datetimes of the same ZoneInfo gives wall-clock time: go through UTC.
    start = site.start.astimezone(UTC)
    arr = np.array([(s.arrival.astimezone(UTC) - start).total_seconds() for s in sessions])
    dep = np.array([(s.departure.astimezone(UTC) - start).total_seconds() for s in sessions])
    arr = arr.reshape(n)
    dep = dep.reshape(n)

    first = np.clip(np.floor(arr / step_s), 0, t).astype(np.int64)
    last = np.clip(np.ceil(dep / step_s), 0, t).astype(np.int64)
    lengths = np.maximum(last - first, 0)
    total = int(lengths.sum())
    col_session = np.repeat(np.arange(n, dtype=np.int64), lengths)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])) if n else np.zeros(0, np.int64)
    col_step = np.arange(total, dtype=np.int64) - np.repeat(offsets, lengths)
    col_step += np.repeat(first, lengths)

    lo = np.maximum(arr[col_session], col_step * step_s)
    hi = np.minimum(dep[col_session], (col_step + 1) * step_s)
    share = np.clip((hi - lo) / step_s, 0.0, 1.0)

    keep = share >= MIN_SHARE
    col_session, col_step, share = col_session[keep], col_step[keep], share[keep]
    col_start = np.searchsorted(col_session, np.arange(n + 1)).astype(np.int64)

    prices = None if site.price_per_kwh is None else np.array(site.price_per_kwh, dtype=np.float64)
    return Grid(
        n_sessions=n,
        n_steps=t,
        step_hours=site.step_minutes / 60.0,
        col_session=col_session,
        col_step=col_step,
        col_share=share,
        col_start=col_start,
        capacity_kw=np.array(site.capacity_kw, dtype=np.float64),
        price_per_kwh=prices,
        energy_kwh=np.array([s.energy_kwh for s in sessions], dtype=np.float64).reshape(n),
        max_power_kw=np.array([s.max_power_kw for s in sessions], dtype=np.float64).reshape(n),
        min_power_kw=np.array([s.min_power_kw for s in sessions], dtype=np.float64).reshape(n),
        priority=np.array([s.priority for s in sessions], dtype=np.float64).reshape(n),
        departure_s=dep,
    )
