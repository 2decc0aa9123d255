"""A site's planning settings and its time-of-day schedules (cap, price). Pure.

Schedules are written in the site's local time as ``[{"from": "HH:MM", <key>: value}, ...]``: each
value holds from its time of day until the next entry's, and the last one wraps past midnight to the
first. An empty schedule means the site's base value all day. Because entries are times of day on
the local wall clock, a 23- or 25-hour day (daylight-saving change) needs nothing special: the value
at any instant is looked up from that instant's local time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Method = Literal["lp", "milp", "heuristic"]
METHODS: Final[tuple[Method, ...]] = ("lp", "milp", "heuristic")
_HHMM: Final = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_SAMPLES_PER_STEP: Final = 4  # a cap change inside a step is found by sampling its sub-intervals


class SiteConfigError(ValueError):
    """A site setting is invalid; the message names the field and says what is accepted."""


@dataclass(frozen=True, slots=True)
class DailySchedule:
    """Values by local time of day: ``entries`` are (minute of day, value), sorted, distinct."""

    entries: tuple[tuple[int, float], ...] = ()

    def value_at_minute(self, minute: int, base: float) -> float:
        """The value in force at ``minute`` of the local day (``base`` when empty)."""
        if not self.entries:
            return base
        value = self.entries[-1][1]  # before the first entry: the last one, wrapped
        for start, v in self.entries:
            if start <= minute:
                value = v
            else:
                break
        return value

    @property
    def values(self) -> tuple[float, ...]:
        """Every value the schedule can take."""
        return tuple(v for _, v in self.entries)


def parse_schedule(raw: Any, key: str, *, field_name: str, minimum: float | None) -> DailySchedule:
    """Read ``[{"from": "HH:MM", key: number}, ...]``; raise ``SiteConfigError`` naming the entry."""
    if raw is None:
        return DailySchedule()
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise SiteConfigError(f'{field_name} must be a list of {{"from": "HH:MM", "{key}": n}}')
    entries: dict[int, float] = {}
    for i, item in enumerate(raw):
        where = f"{field_name}[{i}]"
        if not isinstance(item, Mapping):
            raise SiteConfigError(f'{where} must be an object {{"from": "HH:MM", "{key}": n}}')
        text = item.get("from")
        match = _HHMM.match(text) if isinstance(text, str) else None
        if match is None:
            raise SiteConfigError(f'{where}.from must be a time of day "HH:MM", not {text!r}')
        minute = int(match.group(1)) * 60 + int(match.group(2))
        value = item.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SiteConfigError(f"{where}.{key} must be a number, not {value!r}")
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            raise SiteConfigError(f"{where}.{key} is out of range") from None
        if not math.isfinite(value) or (minimum is not None and value < minimum):
            raise SiteConfigError(f"{where}.{key} must be a finite number >= {minimum}")
        if minute in entries:
            raise SiteConfigError(f"{where}.from {text} appears twice")
        entries[minute] = float(value)
    return DailySchedule(tuple(sorted(entries.items())))


def schedule_to_json(schedule: DailySchedule, key: str) -> list[dict[str, Any]]:
    """The stored / API form of a schedule."""
    return [{"from": f"{m // 60:02d}:{m % 60:02d}", key: v} for m, v in schedule.entries]


UPPER_BOUNDS: Final[dict[str, float]] = {
    "capacity_kw": 1e6,  # a 1 GW transformer
    "safety_margin_kw": 1e6,
    "tx_default_kw": 1000.0,  # per connector
    "default_charger_max_kw": 1000.0,
    "default_energy_kwh": 1000.0,
    "default_dwell_hours": 8760.0,  # a year
}


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """How one site is planned. Units: kW, kWh, hours, minutes."""

    id: str
    timezone: str = "UTC"
    capacity_kw: float = 0.0
    capacity_schedule: DailySchedule = field(default_factory=DailySchedule)
    price_schedule: DailySchedule = field(default_factory=DailySchedule)
    safety_margin_kw: float = 0.0
    tx_default_kw: float = 0.0
    default_dwell_hours: float = 8.0
    default_energy_kwh: float = 20.0
    default_charger_max_kw: float = 22.0
    method: Method = "milp"
    step_minutes: float = 15.0
    horizon_hours: float = 24.0
    smart_charging: bool = True

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America", a folder
            raise SiteConfigError(
                f"timezone {self.timezone!r} is not an IANA time zone (e.g. Europe/Berlin)"
            ) from None
        for name in (
            "capacity_kw",
            "safety_margin_kw",
            "tx_default_kw",
            "default_energy_kwh",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SiteConfigError(f"{name} must be a finite number >= 0, not {value!r}")
        for name in ("default_dwell_hours", "default_charger_max_kw", "horizon_hours"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise SiteConfigError(f"{name} must be a number > 0, not {value!r}")
        # Upper bounds far beyond any real site, so that a typo (1e300 h) is refused here rather
        # than overflowing the planner or the KPIs later.
        for name, most in UPPER_BOUNDS.items():
            if getattr(self, name) > most:
                raise SiteConfigError(
                    f"{name} must be at most {most:g}, not {getattr(self, name)!r}"
                )
        if not (math.isfinite(self.step_minutes) and 1 <= self.step_minutes <= 60):
            raise SiteConfigError(f"step_minutes must be between 1 and 60, not {self.step_minutes}")
        if self.horizon_hours * 60 / self.step_minutes > 2880:
            raise SiteConfigError("horizon_hours / step_minutes gives more than 2880 steps")
        if self.method not in METHODS:
            raise SiteConfigError(
                f"method must be one of {', '.join(METHODS)}, not {self.method!r}"
            )

    @property
    def zone(self) -> ZoneInfo:
        """The site's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def step(self) -> timedelta:
        """One planning step."""
        return timedelta(minutes=self.step_minutes)

    def cap_at(self, when: datetime) -> float:
        """The transformer cap (kW, before the safety margin) at an instant."""
        local = when.astimezone(self.zone)
        return self.capacity_schedule.value_at_minute(
            local.hour * 60 + local.minute, self.capacity_kw
        )

    def price_at(self, when: datetime) -> float | None:
        """The energy price at an instant (None: the site has no price schedule)."""
        if not self.price_schedule.entries:
            return None
        local = when.astimezone(self.zone)
        return self.price_schedule.value_at_minute(local.hour * 60 + local.minute, 0.0)

    def usable_cap_kw(self, start: datetime, length: timedelta) -> float:
        """The lowest cap minus the margin over ``[start, start + length)``: a schedule change
        inside the interval counts (sampled every minute and at the sub-interval edges)."""
        points = {start + length * (i / _SAMPLES_PER_STEP) for i in range(_SAMPLES_PER_STEP)}
        minute = timedelta(minutes=1)
        t = start.replace(second=0, microsecond=0) + minute
        while t < start + length:
            points.add(t)
            t += minute
        return max(0.0, min(self.cap_at(p) for p in points) - self.safety_margin_kw)

    @property
    def lowest_cap_kw(self) -> float:
        """The lowest cap of the day minus the margin (what a constant limit must respect)."""
        caps = self.capacity_schedule.values or (self.capacity_kw,)
        return max(0.0, min(caps) - self.safety_margin_kw)


def site_config_from_row(row: Any) -> SiteConfig:
    """Build from a ``csms.db.models.Site`` (or anything with the same attributes)."""
    return SiteConfig(
        id=row.id,
        timezone=row.timezone or "UTC",
        capacity_kw=float(row.capacity_kw),
        capacity_schedule=parse_schedule(
            row.capacity_schedule, "kw", field_name="capacity_schedule", minimum=0.0
        ),
        price_schedule=parse_schedule(
            row.price_schedule, "price", field_name="price_schedule", minimum=None
        ),
        safety_margin_kw=float(row.safety_margin_kw),
        tx_default_kw=float(row.tx_default_kw),
        default_dwell_hours=float(row.default_dwell_hours),
        default_energy_kwh=float(row.default_energy_kwh),
        default_charger_max_kw=float(row.default_charger_max_kw),
        method=row.method,
        step_minutes=float(row.step_minutes),
        horizon_hours=float(row.horizon_hours),
        smart_charging=bool(row.smart_charging),
    )
