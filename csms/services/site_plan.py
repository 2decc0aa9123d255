"""A site's state → the optimizer's Problem → a power schedule per session. Pure.

The safety invariant (issue 5, DESIGN.md): at every instant, the limits the system has given to the
chargers of a site, plus the maximum possible draw of every charger it cannot control, stay within
the cap (minus the safety margin). So before planning, every connector the planner does not control
*reserves* power on every step, and the planner shares only what is left:

- an idle connector reserves the limit it would start a session with: its TxDefaultProfile limit
  when the charger confirmed it, else its maximum;
- a connector with a session reserves its maximum when the charger is offline, cannot do smart
  charging, rejected the session's profile, or draws more than its limit (non-compliant);
- every other session is planned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Literal

from csms.domain.needs import Needs, energy_still_needed_wh
from csms.domain.profiles import PowerSchedule
from csms.domain.site_config import SiteConfig
from optimizer.problem import Problem, Session, Site
from optimizer.result import SolveResult

ConnectorKey = tuple[str, int]
"""(charge point id, connector id for 1.6 / EVSE id for 2.0.1)"""


@dataclass(frozen=True, slots=True)
class SessionState:
    """A running transaction as the planner needs it."""

    transaction_id: int
    ocpp_transaction_id: str
    started_at: datetime
    needs: Needs
    delivered_wh: float = 0.0
    ev_limit_w: float | None = None  # the EV's observed ceiling (meter deviation), if any
    unmanaged_reason: str | None = None  # rejected its profile / non-compliant: not planned


@dataclass(frozen=True, slots=True)
class ConnectorState:
    """One connector (1.6) / EVSE (2.0.1) of the site."""

    charge_point_id: str
    evse_id: int
    ocpp_version: str
    connected: bool
    controllable: bool  # takes charging profiles (smart charging supported and enabled)
    max_power_w: float
    min_power_w: float  # the lowest power it can offer (6 A per phase); below means 0
    default_limit_w: float | None = None  # its confirmed TxDefaultProfile limit; None: unknown
    session: SessionState | None = None

    @property
    def key(self) -> ConnectorKey:
        """Its (charge point, connector/EVSE) key."""
        return (self.charge_point_id, self.evse_id)


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """Everything one plan of a site starts from."""

    config: SiteConfig
    now: datetime
    connectors: tuple[ConnectorState, ...] = ()


@dataclass(frozen=True, slots=True)
class Reservation:
    """Power a connector may draw that the planner does not control."""

    key: ConnectorKey
    watts: float
    reason: str


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What goes to the optimizer, and how to read its answer back."""

    start: datetime
    step_s: int
    problem: Problem | None  # None: no session to plan
    planned: Mapping[str, ConnectorKey]  # optimizer session id → connector
    reservations: tuple[Reservation, ...]
    cap_kw: tuple[float, ...]  # usable cap per step, before the reservations
    warnings: tuple[str, ...] = ()
    transactions: Mapping[str, int] = field(default_factory=dict)  # session id → transaction id

    @property
    def reserved_w(self) -> float:
        """Total power reserved for connectors the planner does not control."""
        return sum(r.watts for r in self.reservations)


def reservation(c: ConnectorState) -> Reservation | None:
    """What ``c`` reserves, or None when the planner controls it (see the module docstring)."""
    if c.session is None:
        if c.controllable and c.default_limit_w is not None:
            limit = min(c.default_limit_w, c.max_power_w)
            return Reservation(c.key, limit, "idle: TxDefaultProfile limit") if limit > 0 else None
        return Reservation(c.key, c.max_power_w, "idle: no confirmed TxDefaultProfile")
    if not c.connected:
        return Reservation(c.key, c.max_power_w, "offline with a session")
    if not c.controllable:
        return Reservation(c.key, c.max_power_w, "no smart charging")
    if c.session.unmanaged_reason is not None:
        return Reservation(c.key, c.max_power_w, c.session.unmanaged_reason)
    return None


def _session_max_w(c: ConnectorState, session: SessionState) -> float:
    limit = c.max_power_w
    if session.needs.max_power_w is not None:
        limit = min(limit, session.needs.max_power_w)
    if session.ev_limit_w is not None:
        limit = min(limit, session.ev_limit_w)
    # The charger cannot offer less than its minimum: a slower EV still gets (and is counted at)
    # the minimum limit, of which it takes what it can.
    if limit < c.min_power_w <= c.max_power_w:
        limit = c.min_power_w
    return limit


TOP_UP_PRIORITY = 0.5


def grid_start(now: datetime, step_s: int) -> datetime:
    """The start of the planning step ``now`` falls in, on a grid of ``step_s`` from the Unix
    epoch. Every plan of a site shares the grid, so the limits of an old and a new profile change
    at the same instants; the step already begun is planned for what is left of it."""
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step_s, tz=now.tzinfo)


def limit_range(
    schedule: PowerSchedule | None, fallback_w: float, t0: datetime, t1: datetime
) -> tuple[float, float]:
    """(lowest, highest) watts ``schedule`` allows over ``[t0, t1)``; outside the schedule (or
    without one) ``fallback_w`` applies."""

    def at(t: datetime) -> float:
        w = None if schedule is None else schedule.watts_at(t)
        return fallback_w if w is None else w

    points = [t0]
    if schedule is not None:
        step = timedelta(seconds=schedule.step_s)
        edges = [schedule.start + k * step for k in range(len(schedule.watts) + 1)]
        points.extend(e for e in edges if t0 < e < t1)
    values = [at(t) for t in points]
    return min(values), max(values)


Direction = Literal["decrease", "increase", "mixed"]


def direction(
    old: PowerSchedule | None,
    new: PowerSchedule,
    fallback_w: float,
    window: tuple[datetime, datetime],
) -> Direction:
    """How replacing ``old`` by ``new`` moves a connector's limit during the dispatch window:
    "decrease" if never up, "increase" if never down, else "mixed" (both, at different times)."""
    t0, t1 = window
    step = timedelta(seconds=new.step_s)
    cuts = sorted({t0, t1, *(new.start + k * step for k in range(len(new.watts) + 1))})
    cuts = [c for c in cuts if t0 <= c <= t1]
    up = down = False
    for a, b in pairwise(cuts):
        old_low, old_high = limit_range(old, fallback_w, a, b)
        new_low, new_high = limit_range(new, fallback_w, a, b)
        up = up or new_high > old_low
        down = down or new_low < old_high
    if not up:
        return "decrease"
    if not down:
        return "increase"
    return "mixed"


def lowered(
    old: PowerSchedule | None,
    new: PowerSchedule,
    fallback_w: float,
    window: tuple[datetime, datetime],
) -> PowerSchedule:
    """``new`` with every step that overlaps the window lowered to the least of the old limits
    there: a first profile that only lowers, before ``new`` is sent as an increase."""
    t0, t1 = window
    step = timedelta(seconds=new.step_s)
    watts = []
    for k, planned in enumerate(new.watts):
        a, b = new.start + k * step, new.start + (k + 1) * step
        overlaps = b > t0 and a < t1
        low = limit_range(old, fallback_w, max(a, t0), min(b, t1))[0] if overlaps else planned
        watts.append(min(planned, low))
    return PowerSchedule(new.start, new.step_s, tuple(watts))


def planned_energy_wh(session: SessionState) -> tuple[float, float]:
    """(energy to plan, priority) for a session.

    Known needs (EV or operator): what is still needed, priority 1. An unknown need is planned as
    the site's default energy; once that was delivered and the EV is still there, it gets another
    default amount at half priority — spare power keeps flowing to it (it stops by itself when its
    battery is full, and the meter-deviation check then plans it at its real draw), but sessions
    whose needs are known come first."""
    needed = energy_still_needed_wh(session.needs, session.delivered_wh)
    if session.needs.energy_source == "site_default" and needed <= 0:
        return session.needs.energy_wh, TOP_UP_PRIORITY
    return needed, 1.0


def plan_inputs(snap: SiteSnapshot, *, min_power: bool) -> PlanInputs:
    """Build the optimizer problem for a site: planned sessions, reservations, cap per step.

    ``min_power``: give sessions their charger's minimum power (the MILP uses it).
    """
    cfg = snap.config
    # One step length for the grid and the caps: whole seconds, as profiles count them.
    step_s = max(1, round(cfg.step.total_seconds()))
    step = timedelta(seconds=step_s)
    start = grid_start(snap.now, step_s)
    now = snap.now
    reserved = [(c, reservation(c)) for c in snap.connectors]
    reservations = tuple(r for _, r in reserved if r is not None)
    planned = [c for c, r in reserved if c.session is not None and r is None]
    max_steps = max(1, int(cfg.horizon_hours * 3600 // step_s))
    latest = max(
        (max(c.session.needs.departure, now + step) for c in planned if c.session is not None),
        default=now + step,
    )
    steps = min(max_steps, max(1, math.ceil((latest - start).total_seconds() / step_s)))
    caps = tuple(cfg.usable_cap_kw(start + i * step, step) for i in range(steps))
    reserved_kw = sum(r.watts for r in reservations) / 1000.0
    warnings: list[str] = []
    if reserved_kw > min(caps) + 1e-9:
        warnings.append(
            f"{reserved_kw:.1f} kW is reserved for connectors the system does not control, above "
            f"the usable cap of {min(caps):.1f} kW: the site can be overloaded if they all draw "
            "their maximum (check offline or non-compliant chargers)"
        )
    if not planned:
        return PlanInputs(start, step_s, None, {}, reservations, caps, tuple(warnings))
    horizon_end = start + timedelta(seconds=steps * step_s)
    prices = None
    if cfg.price_schedule.entries:
        prices = tuple(cfg.price_at(start + (i + 0.5) * step) or 0.0 for i in range(steps))
    site = Site.create(
        cfg.id,
        start,
        [max(0.0, cap - reserved_kw) for cap in caps],
        step_minutes=step_s / 60.0,
        horizon_steps=steps,
        price_per_kwh=prices,
    )
    sessions = []
    keys: dict[str, ConnectorKey] = {}
    txs: dict[str, int] = {}
    for c in planned:
        s = c.session
        assert s is not None
        sid = f"{c.charge_point_id}/{c.evse_id}"
        max_w = _session_max_w(c, s)
        departure = min(horizon_end, max(s.needs.departure, now + step))
        energy_wh, priority = planned_energy_wh(s)
        sessions.append(
            Session(
                id=sid,
                arrival=now,
                departure=departure,
                energy_kwh=energy_wh / 1000.0,
                max_power_kw=max_w / 1000.0,
                min_power_kw=min(c.min_power_w, max_w) / 1000.0 if min_power else 0.0,
                priority=priority,
            )
        )
        keys[sid] = c.key
        txs[sid] = s.transaction_id
    return PlanInputs(
        start, step_s, Problem.of(site, sessions), keys, reservations, caps, tuple(warnings), txs
    )


def schedules(inputs: PlanInputs, result: SolveResult | None) -> dict[ConnectorKey, PowerSchedule]:
    """Each planned connector's power schedule (watts). Without a result: 0 W for everyone, which
    is always safe (used when every planner failed)."""
    out: dict[ConnectorKey, PowerSchedule] = {}
    steps = len(inputs.cap_kw)
    for sid, key in inputs.planned.items():
        if result is None or sid not in result.session_ids:
            watts: tuple[float, ...] = (0.0,) * steps
        else:
            watts = tuple(max(0.0, float(p) * 1000.0) for p in result.session_power(sid))
        out[key] = PowerSchedule(inputs.start, inputs.step_s, watts)
    return out


def committed_w(limits_now: Mapping[ConnectorKey, float], inputs: PlanInputs) -> float:
    """The power the site is committed to now: the limits believed in force on planned connectors
    plus every reservation (what the safety invariant bounds)."""
    reserved = {r.key for r in inputs.reservations}
    return inputs.reserved_w + sum(w for k, w in limits_now.items() if k not in reserved)
