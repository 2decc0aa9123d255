"""Scenarios: which vehicles arrive where and when. Pure and seeded, so a run can be replayed."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from charge_point_sim.charger_model import ChargerSpec
from charge_point_sim.driver import Arrival, SessionRequest
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.ev_model import Ev

# (max AC power W, phases): a 7.4 kW single-phase car, 11 kW and 22 kW three-phase ones.
_EV_TYPES = ((7400.0, 1), (11000.0, 3), (11000.0, 3), (22000.0, 3))
_CAPACITIES_KWH = (40.0, 60.0, 77.0)


@dataclass(frozen=True, slots=True)
class ChargerSlot:
    """A charger of the site as a scenario sees it (``stations``: ACN station ids of its
    connectors 1, 2, ...)."""

    charger_id: str
    spec: ChargerSpec
    stations: tuple[str, ...] = ()


def random_arrivals(
    seed: int,
    chargers: Sequence[ChargerSlot],
    start: datetime,
    duration_s: float,
    *,
    occupancy: float = 0.9,
) -> dict[str, list[Arrival]]:
    """One vehicle per connector (with probability ``occupancy``), seeded.

    Arrivals fall in the first quarter of the run, stays last 40-90 % of it, SoC at arrival
    10-50 %, target 80-100 %. The same seed and site always give the same arrivals.
    """
    if duration_s <= 0:
        raise InvalidModelError("duration_s must be > 0")
    rng = random.Random(seed)
    out: dict[str, list[Arrival]] = {}
    n = 0
    for slot in chargers:
        arrivals: list[Arrival] = []
        for connector_id, conn in enumerate(slot.spec.connectors, start=1):
            if rng.random() >= occupancy:
                continue
            n += 1
            at = start + timedelta(seconds=rng.uniform(0, 0.25 * duration_s))
            stay = timedelta(seconds=rng.uniform(0.4, 0.9) * duration_s)
            max_w, phases = rng.choice(_EV_TYPES)
            ev = Ev(
                capacity_kwh=rng.choice(_CAPACITIES_KWH),
                soc=round(rng.uniform(0.1, 0.5), 3),
                target_soc=round(rng.uniform(0.8, 1.0), 3),
                max_power_w=min(max_w, conn.max_power_w),
                phases=min(phases, conn.phases),
                departure=at + stay,
                min_power_w=6 * 230.0 * min(phases, conn.phases),
            )
            request = SessionRequest(connector_id, ev, f"TAG{n:05d}", departure=at + stay)
            arrivals.append(Arrival(at, request))
        out[slot.charger_id] = arrivals
    return out


def parse_scenario(text: str) -> int:
    """The seed of a ``random:SEED`` scenario. Raises InvalidModelError with what to write."""
    kind, _, arg = text.partition(":")
    if kind != "random" or not arg.isdigit():
        raise InvalidModelError(f"--scenario {text!r}: write random:SEED or acn:FILE:DATE")
    return int(arg)
