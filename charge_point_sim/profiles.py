"""Charging profiles as a charger stores them: version-neutral frozen dataclasses and their timing.

OCPP 1.6 (section 3.13, the ``ChargingProfile`` type) and 2.0.1 (functional block K, ``ChargingProfileType``)
describe the same thing with different names; the OCPP shells map both onto these types. Nothing here
knows about connectors or transactions beyond the transaction start needed to anchor Relative schedules.

A profile is *active* at an instant when it is valid (``valid_from <= t < valid_to``), its schedule has
started (``start <= t``), has not run out (``t < start + duration``) and a period covers the instant
(``start_period_s <= t - start``). Intervals are half-open, so at a boundary the later period applies.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

# OCPP 1.6 ChargingSchedulePeriod / 2.0.1 ChargingSchedulePeriodType: "When numberPhases is
# absent, 3 SHALL be assumed."
DEFAULT_NUMBER_PHASES = 3
DAY = timedelta(days=1)
WEEK = timedelta(days=7)


class Purpose(StrEnum):
    """Why a profile is installed. 1.6 ChargePointMaxProfile is 2.0.1 ChargingStationMaxProfile."""

    CHARGE_POINT_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"

    # The 2.0.1 name of the same purpose (K01): an alias, so both spellings are one member.
    CHARGING_STATION_MAX = "ChargePointMaxProfile"

    @classmethod
    def _missing_(cls, value: object) -> Purpose | None:
        # Parse the 2.0.1 wire name too: Purpose("ChargingStationMaxProfile") is CHARGE_POINT_MAX.
        return cls.CHARGE_POINT_MAX if value == "ChargingStationMaxProfile" else None


class Kind(StrEnum):
    """How the schedule is anchored in time (1.6 ChargingProfileKindType, 2.0.1 K01)."""

    ABSOLUTE = "Absolute"
    RELATIVE = "Relative"
    RECURRING = "Recurring"


class Recurrency(StrEnum):
    """How often a Recurring schedule repeats from its ``start_schedule``."""

    DAILY = "Daily"
    WEEKLY = "Weekly"

    @property
    def period(self) -> timedelta:
        """Length of one recurrence. OCPP times are UTC, so a day is always 24 h here."""
        return DAY if self is Recurrency.DAILY else WEEK


class RateUnit(StrEnum):
    """Unit of a schedule's limits: amps per phase or watts in total (1.6 ChargingRateUnitType)."""

    A = "A"
    W = "W"


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    """One period: from ``start_period_s`` seconds after the schedule start, ``limit`` in the unit."""

    start_period_s: int
    limit: float
    number_phases: int | None = None

    @property
    def phases(self) -> int:
        """The number of phases this period allows (3 when absent, per the spec)."""
        return DEFAULT_NUMBER_PHASES if self.number_phases is None else self.number_phases


@dataclass(frozen=True, slots=True)
class Schedule:
    """A charging schedule: periods in ascending ``start_period_s``, the first at 0."""

    unit: RateUnit
    periods: tuple[SchedulePeriod, ...]
    duration_s: int | None = None
    start_schedule: datetime | None = None
    min_charging_rate: float | None = None
    # The 2.0.1 ChargingScheduleType id, kept so that ReportChargingProfiles reports the schedule
    # as it was sent (K09); 1.6 schedules have none.
    id: int | None = None


@dataclass(frozen=True, slots=True)
class ChargingProfile:
    """A charging profile as received by the charger (before any validation)."""

    id: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    schedule: Schedule
    recurrency: Recurrency | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None


def is_valid_at(profile: ChargingProfile, t: datetime) -> bool:
    """Whether ``t`` falls within the profile's validity ``[valid_from, valid_to)``."""
    if profile.valid_from is not None and t < profile.valid_from:
        return False
    return profile.valid_to is None or t < profile.valid_to


def schedule_start(profile: ChargingProfile, t: datetime, relative_anchor: datetime) -> datetime:
    """The start of the schedule (or of its current recurrence) that governs instant ``t``.

    Relative schedules start at ``relative_anchor`` (the transaction start; 1.6 3.13.1 "relative to a
    situation-specific start point, such as the start of a transaction"). A Recurring schedule repeats
    every day or week from ``start_schedule``; instants before it belong to an earlier, virtual
    recurrence, since only validity bounds a recurring profile in time.
    """
    sched = profile.schedule
    if profile.kind is Kind.RELATIVE or sched.start_schedule is None:
        return relative_anchor
    if profile.kind is Kind.RECURRING:
        period = (profile.recurrency or Recurrency.DAILY).period
        return sched.start_schedule + ((t - sched.start_schedule) // period) * period
    return sched.start_schedule


def _schedule_end(profile: ChargingProfile, start: datetime) -> datetime | None:
    """Where the schedule starting at ``start`` stops applying (duration, or the next recurrence)."""
    duration = profile.schedule.duration_s
    end = None if duration is None else start + timedelta(seconds=duration)
    if profile.kind is Kind.RECURRING:
        # A recurrence never overlaps the next one: the next start takes over.
        nxt = start + (profile.recurrency or Recurrency.DAILY).period
        end = nxt if end is None else min(end, nxt)
    return end


def active_period(
    profile: ChargingProfile, t: datetime, relative_anchor: datetime
) -> SchedulePeriod | None:
    """The period of ``profile`` in force at ``t``, or None when the profile does not apply then."""
    if not is_valid_at(profile, t):
        return None
    start = schedule_start(profile, t, relative_anchor)
    if t < start:
        return None
    end = _schedule_end(profile, start)
    if end is not None and t >= end:
        return None
    offset = (t - start).total_seconds()
    found: SchedulePeriod | None = None
    for p in profile.schedule.periods:
        if p.start_period_s <= offset:
            found = p
        else:
            break
    return found


def breakpoints(
    profile: ChargingProfile, start: datetime, end: datetime, relative_anchor: datetime
) -> Iterator[datetime]:
    """Instants in ``[start, end)`` where what ``profile`` says may change (used to cut the composite)."""
    candidates: list[datetime] = []
    if profile.valid_from is not None:
        candidates.append(profile.valid_from)
    if profile.valid_to is not None:
        candidates.append(profile.valid_to)
    if profile.kind is Kind.RECURRING and profile.schedule.start_schedule is not None:
        period = (profile.recurrency or Recurrency.DAILY).period
        first = schedule_start(profile, start, relative_anchor)
        anchors = []
        a = first
        while a < end:
            anchors.append(a)
            a += period
    else:
        anchors = [schedule_start(profile, start, relative_anchor)]
    for anchor in anchors:
        candidates.extend(
            anchor + timedelta(seconds=p.start_period_s) for p in profile.schedule.periods
        )
        sched_end = _schedule_end(profile, anchor)
        if sched_end is not None:
            candidates.append(sched_end)
    for c in candidates:
        if start <= c < end:
            yield c


def is_aware(t: datetime | None) -> bool:
    """True for None or a datetime that carries a UTC offset."""
    return t is None or (t.tzinfo is not None and t.utcoffset() is not None)


def finite(x: float) -> bool:
    """True for a finite number (rejects NaN and infinities from the wire)."""
    return math.isfinite(x)
