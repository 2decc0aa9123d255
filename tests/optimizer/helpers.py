"""Shared test helpers: problem builders, hypothesis strategies and an independent plan checker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import strategies as st

from optimizer import Problem, Session, Site, SolveResult

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOL = 1e-5


def at(minutes: float) -> datetime:
    """A time ``minutes`` after T0."""
    return T0 + timedelta(minutes=minutes)


def session(
    sid: str,
    arrive_min: float,
    depart_min: float,
    energy: float,
    pmax: float,
    pmin: float = 0.0,
    priority: float = 1.0,
) -> Session:
    """A session given in minutes after T0."""
    return Session(sid, at(arrive_min), at(depart_min), energy, pmax, pmin, priority)


def problem(
    sessions: list[Session],
    cap: float | list[float],
    *,
    step_minutes: float = 60.0,
    steps: int | None = None,
    prices: list[float] | None = None,
) -> Problem:
    """A problem starting at T0."""
    site = Site.create(
        "test", T0, cap, step_minutes=step_minutes, horizon_steps=steps, price_per_kwh=prices
    )
    return Problem.of(site, sessions)


def shares(p: Problem) -> np.ndarray:
    """Availability per session and step, computed independently of optimizer.grid."""
    site = p.site
    out = np.zeros((len(p.sessions), site.horizon_steps))
    for i, s in enumerate(p.sessions):
        for k in range(site.horizon_steps):
            lo = max(s.arrival, site.start + k * site.step)
            hi = min(s.departure, site.start + (k + 1) * site.step)
            if hi > lo:
                out[i, k] = (hi - lo) / site.step
    return out


def check_plan(p: Problem, r: SolveResult, *, min_power: bool = False, cap: bool = True) -> None:
    """Assert every hard constraint on a result, from first principles."""
    a = shares(p)
    power = r.power_kw
    dt = p.site.step_minutes / 60.0
    assert power.shape == a.shape
    assert np.all(np.isfinite(power))
    assert np.all(power >= -TOL), "negative power"
    # Outside the window (share 0, or below the grid's 1e-6 threshold) there is no power.
    assert np.all(power[a < 1e-6] == 0.0), "power outside a session's window"
    for i, s in enumerate(p.sessions):
        assert np.all(power[i] <= s.max_power_kw + TOL), f"{s.id} above max power"
        if min_power:
            on = power[i] > 1e-3
            assert np.all(power[i][on] >= s.min_power_kw - TOL), f"{s.id} below min power"
    delivered = (power * a).sum(axis=1) * dt
    np.testing.assert_allclose(r.delivered_kwh, delivered, atol=1e-6)
    needed = np.array([s.energy_kwh for s in p.sessions])
    assert np.all(delivered <= needed + TOL), "more energy than needed"
    np.testing.assert_allclose(r.unmet_kwh, np.maximum(needed - delivered, 0), atol=1e-6)
    site_power = power.sum(axis=0)
    np.testing.assert_allclose(r.site_power_kw, site_power, atol=1e-6)
    if cap:
        caps = np.array(p.site.capacity_kw)
        assert np.all(site_power <= caps + TOL), "site power above the cap"


@st.composite
def problems(draw: st.DrawFn, *, max_sessions: int = 8, with_min_power: bool = False) -> Problem:
    """Random small problems: arbitrary (not step-aligned) windows, caps varying per step."""
    step = draw(st.sampled_from([15.0, 30.0, 60.0]))
    steps = draw(st.integers(1, 16))
    horizon = step * steps
    if draw(st.booleans()):
        cap: float | list[float] = draw(st.floats(0, 60))
    else:
        cap = draw(st.lists(st.floats(0, 60), min_size=steps, max_size=steps))
    prices = None
    if draw(st.booleans()):
        prices = draw(st.lists(st.floats(-0.1, 0.5), min_size=steps, max_size=steps))
    n = draw(st.integers(0, max_sessions))
    sessions = []
    for i in range(n):
        arrive = draw(st.floats(-60, horizon + 30))
        dwell = draw(st.floats(1, horizon + 60))
        pmax = draw(st.sampled_from([0.0, 3.7, 7.4, 11.0, 22.0]))
        pmin = 0.0
        if with_min_power and pmax > 0 and draw(st.booleans()):
            pmin = draw(st.sampled_from([1.38, 4.14]))
            pmin = min(pmin, pmax)
        sessions.append(
            session(
                f"s{i}",
                arrive,
                arrive + dwell,
                draw(st.floats(0, 60)),
                pmax,
                pmin,
                1.0,
            )
        )
    return problem(sessions, cap, step_minutes=step, steps=steps, prices=prices)
