"""The planning input: a site and the charging sessions on it.

Frozen dataclasses, validated on construction. All datetimes must carry a UTC offset; the optimizer
works on a grid of equal steps starting at ``Site.start`` (see :mod:`optimizer.grid` for how a session
window that does not fall on step boundaries is handled).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from optimizer.errors import FieldProblem, InvalidProblemError

DEFAULT_STEP_MINUTES = 15.0
DEFAULT_HORIZON_STEPS = 96
# A week of 1-minute steps; beyond that a plan is no longer a plan but a simulation.
MAX_HORIZON_STEPS = 10_080


@dataclass(frozen=True, slots=True)
class Session:
    """One vehicle's charging session as the planner sees it.

    ``energy_kwh`` is the energy still needed from ``Site.start`` on. ``min_power_kw`` is the lowest power
    at which the charger can charge at all (IEC 61851: 6 A per phase), used by the MILP only.
    ``priority`` scales the value of a kWh delivered to this session (default 1).
    """

    id: str
    arrival: datetime
    departure: datetime
    energy_kwh: float
    max_power_kw: float
    min_power_kw: float = 0.0
    priority: float = 1.0


@dataclass(frozen=True, slots=True)
class Site:
    """A site behind one transformer: the planning grid and the power cap per step."""

    id: str
    start: datetime
    capacity_kw: tuple[float, ...]
    step_minutes: float = DEFAULT_STEP_MINUTES
    price_per_kwh: tuple[float, ...] | None = None

    @property
    def horizon_steps(self) -> int:
        """Number of steps in the planning horizon (the length of ``capacity_kw``)."""
        return len(self.capacity_kw)

    @property
    def step(self) -> timedelta:
        """Length of one step."""
        return timedelta(minutes=self.step_minutes)

    @property
    def end(self) -> datetime:
        """End of the planning horizon (in UTC: aware arithmetic in one zone is wall-clock time)."""
        return self.start.astimezone(UTC) + self.step * self.horizon_steps

    @classmethod
    def create(
        cls,
        id: str,
        start: datetime,
        capacity_kw: float | Sequence[float],
        *,
        step_minutes: float = DEFAULT_STEP_MINUTES,
        horizon_steps: int | None = None,
        price_per_kwh: Sequence[float] | None = None,
    ) -> Site:
        """Build a site, expanding a single cap to every step. Raises InvalidProblemError."""
        problems: list[FieldProblem] = []
        if horizon_steps is None:
            horizon_steps = (
                DEFAULT_HORIZON_STEPS
                if isinstance(capacity_kw, int | float)
                else len(list(capacity_kw))
            )
        if not isinstance(horizon_steps, int) or isinstance(horizon_steps, bool):
            problems.append(FieldProblem("site.horizon_steps", "must be a whole number"))
            raise InvalidProblemError(problems)
        if horizon_steps < 1 or horizon_steps > MAX_HORIZON_STEPS:
            # Checked before anything is allocated: a typo of 10**8 steps must not exhaust memory.
            problems.append(
                FieldProblem(
                    "site.horizon_steps",
                    f"must be between 1 and {MAX_HORIZON_STEPS} (got {horizon_steps})",
                )
            )
            raise InvalidProblemError(problems)
        if isinstance(capacity_kw, int | float):
            caps = tuple(float(capacity_kw) for _ in range(horizon_steps))
        else:
            caps = tuple(float(x) for x in capacity_kw)
            if len(caps) != horizon_steps:
                problems.append(
                    FieldProblem(
                        "site.capacity_kw",
                        f"has {len(caps)} values but horizon_steps is {horizon_steps}: "
                        "give one value per step, or a single number for every step",
                    )
                )
        prices = None if price_per_kwh is None else tuple(float(x) for x in price_per_kwh)
        if prices is not None and len(prices) != horizon_steps:
            problems.append(
                FieldProblem(
                    "site.price_per_kwh",
                    f"has {len(prices)} values but horizon_steps is {horizon_steps}: "
                    "give one price per step",
                )
            )
        if problems:
            raise InvalidProblemError(problems)
        return cls(
            id=id, start=start, capacity_kw=caps, step_minutes=step_minutes, price_per_kwh=prices
        )


@dataclass(frozen=True, slots=True)
class Problem:
    """A site and its sessions. Construction validates everything and raises InvalidProblemError."""

    site: Site
    sessions: tuple[Session, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        problems = list(_site_problems(self.site))
        problems.extend(_session_problems(self.sessions))
        if problems:
            raise InvalidProblemError(problems)

    @classmethod
    def of(cls, site: Site, sessions: Iterable[Session]) -> Problem:
        """Build a problem from any iterable of sessions."""
        return cls(site=site, sessions=tuple(sessions))


def _finite(x: object) -> bool:
    if not isinstance(x, int | float) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond float range
        return False


def _aware(x: object) -> bool:
    return isinstance(x, datetime) and x.tzinfo is not None and x.utcoffset() is not None


def _site_problems(site: Site) -> Iterable[FieldProblem]:
    if not isinstance(site.id, str) or not site.id:
        yield FieldProblem("site.id", "must be a non-empty string")
    if not _aware(site.start):
        yield FieldProblem(
            "site.start", "must be a datetime with a UTC offset, e.g. 2019-06-14T00:00:00-07:00"
        )
    if not _finite(site.step_minutes) or not 0 < site.step_minutes <= 1440:
        yield FieldProblem(
            "site.step_minutes",
            f"must be a number of minutes in (0, 1440] (got {site.step_minutes})",
        )
    n = len(site.capacity_kw)
    if n < 1 or n > MAX_HORIZON_STEPS:
        yield FieldProblem(
            "site.horizon_steps", f"must be between 1 and {MAX_HORIZON_STEPS} (got {n})"
        )
    for k, cap in enumerate(site.capacity_kw):
        if not _finite(cap) or cap < 0:
            yield FieldProblem(f"site.capacity_kw[{k}]", f"must be a number >= 0 kW (got {cap})")
            break
    if site.price_per_kwh is not None:
        if len(site.price_per_kwh) != n:
            yield FieldProblem(
                "site.price_per_kwh",
                f"has {len(site.price_per_kwh)} values but the horizon has {n} steps",
            )
        for k, price in enumerate(site.price_per_kwh):
            if not _finite(price):
                yield FieldProblem(f"site.price_per_kwh[{k}]", f"must be a number (got {price})")
                break


def _session_problems(sessions: Sequence[Session]) -> Iterable[FieldProblem]:
    seen: set[str] = set()
    for i, s in enumerate(sessions):
        where = f"sessions[{i}]"
        if not isinstance(s.id, str) or not s.id:
            yield FieldProblem(f"{where}.id", "must be a non-empty string")
        elif s.id in seen:
            yield FieldProblem(f"{where}.id", f"duplicate session id {s.id!r}: ids must be unique")
        else:
            seen.add(s.id)
        where = f"sessions[{i}] ({s.id})" if isinstance(s.id, str) and s.id else where
        arrival_ok = _aware(s.arrival)
        departure_ok = _aware(s.departure)
        if not arrival_ok:
            yield FieldProblem(f"{where}.arrival", "must be a datetime with a UTC offset")
        if not departure_ok:
            yield FieldProblem(f"{where}.departure", "must be a datetime with a UTC offset")
        if arrival_ok and departure_ok and s.departure <= s.arrival:
            yield FieldProblem(
                f"{where}.departure",
                f"must be after arrival ({s.departure.isoformat()} is not after "
                f"{s.arrival.isoformat()})",
            )
        if not _finite(s.energy_kwh) or s.energy_kwh < 0:
            yield FieldProblem(f"{where}.energy_kwh", f"must be a number >= 0 (got {s.energy_kwh})")
        if not _finite(s.max_power_kw) or s.max_power_kw < 0:
            yield FieldProblem(
                f"{where}.max_power_kw", f"must be a number >= 0 (got {s.max_power_kw})"
            )
        if not _finite(s.min_power_kw) or s.min_power_kw < 0:
            yield FieldProblem(
                f"{where}.min_power_kw", f"must be a number >= 0 (got {s.min_power_kw})"
            )
        elif _finite(s.max_power_kw) and s.max_power_kw >= 0 and s.min_power_kw > s.max_power_kw:
            yield FieldProblem(
                f"{where}.min_power_kw",
                f"must not exceed max_power_kw ({s.min_power_kw} > {s.max_power_kw})",
            )
        if not _finite(s.priority) or s.priority <= 0:
            yield FieldProblem(f"{where}.priority", f"must be a number > 0 (got {s.priority})")
