"""Seeded synthetic sites: congested workplace days for benchmarks and tests.

Arrivals are morning-heavy (most around 08:00, the rest spread over the day), dwell 1–10 h, energy
5–60 kWh, chargers of 7.4 kW (single phase), 11 kW or 22 kW (three phase). The cap is set so that the
site cannot serve everyone: about 2 kW per session.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from optimizer.problem import Problem, Session, Site

# (max kW, phases): min power is 6 A × 230 V × phases (IEC 61851).
CHARGERS = ((7.4, 1), (11.0, 3), (22.0, 3))
MIN_CURRENT_A = 6.0
VOLTAGE_V = 230.0
CAP_KW_PER_SESSION = 2.0


def congested_day(
    n_sessions: int,
    *,
    seed: int = 0,
    horizon_steps: int = 96,
    step_minutes: float | None = None,
    cap_kw_per_session: float = CAP_KW_PER_SESSION,
    with_prices: bool = False,
    start: datetime | None = None,
) -> Problem:
    """A congested day of ``n_sessions`` sessions over ``horizon_steps`` steps covering 24 h."""
    rng = np.random.default_rng(seed)
    start = start or datetime(2026, 1, 5, tzinfo=UTC)
    if step_minutes is None:
        step_minutes = 24 * 60 / horizon_steps
    day_h = horizon_steps * step_minutes / 60.0
    morning = rng.random(n_sessions) < 0.7
    arrival_h = np.where(
        morning,
        rng.normal(8.0, 1.0, n_sessions),
        rng.uniform(6.0, 18.0, n_sessions),
    )
    arrival_h = np.clip(arrival_h, 0.0, max(day_h - 1.0, 0.0)) * day_h / 24.0
    dwell_h = rng.uniform(1.0, 10.0, n_sessions)
    energy = rng.uniform(5.0, 60.0, n_sessions)
    kind = rng.integers(0, len(CHARGERS), n_sessions)
    sessions = []
    for i in range(n_sessions):
        pmax, phases = CHARGERS[int(kind[i])]
        arrival = start + timedelta(hours=float(arrival_h[i]))
        sessions.append(
            Session(
                id=f"s{i:05d}",
                arrival=arrival,
                departure=arrival + timedelta(hours=float(dwell_h[i])),
                energy_kwh=round(float(energy[i]), 3),
                max_power_kw=pmax,
                min_power_kw=round(MIN_CURRENT_A * VOLTAGE_V * phases / 1000.0, 3),
            )
        )
    prices = None
    if with_prices:
        hours = (np.arange(horizon_steps) + 0.5) * step_minutes / 60.0
        # A time-of-use tariff: cheap at night, dear in the late afternoon.
        prices = [0.30 if 16 <= h % 24 < 21 else 0.12 if 0 <= h % 24 < 6 else 0.20 for h in hours]
    site = Site.create(
        "synthetic",
        start,
        round(cap_kw_per_session * max(n_sessions, 1), 3),
        step_minutes=step_minutes,
        horizon_steps=horizon_steps,
        price_per_kwh=prices,
    )
    return Problem.of(site, sessions)
