"""Charging EVs on a charger over an interval in which the limits may change.

Ties the charger model to the EV model: the interval is cut wherever a composite limit may change,
and each piece is integrated exactly with :func:`charge_point_sim.ev_model.step`, so an EV never
draws above the limit in force, even for an instant, whatever the simulation step.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from charge_point_sim.charger_model import ChargerSpec, ChargerState
from charge_point_sim.composite import Limit, limits_over
from charge_point_sim.ev_model import Ev, power_at, step


def charge(
    spec: ChargerSpec,
    state: ChargerState,
    connector_id: int,
    ev: Ev,
    start: datetime,
    dt_s: float,
) -> tuple[Ev, float]:
    """Charge ``ev`` on ``connector_id`` over ``[start, start + dt_s)``: the new EV and Wh received.

    The power drawn at each instant is min(composite limit for the EV's phases, connector max, EV
    acceptance). Other connectors are ignored; use :func:`charge_station` to share the station
    maximum. Raises InvalidModelError on bad arguments.
    """
    pieces = limits_over(spec, state, connector_id, start, dt_s)
    total = 0.0
    for i, (offset, limit) in enumerate(pieces):
        end = pieces[i + 1][0] if i + 1 < len(pieces) else dt_s
        ev, energy = step(ev, limit.power(spec.voltage_v, ev.phases), end - offset)
        total += energy
    return ev, total


def share_station_power(station_w: float, wanted_w: Mapping[int, float]) -> dict[int, float]:
    """Split ``station_w`` among connectors wanting ``wanted_w``: nobody above what it wants, the
    rest shared equally (water-filling), and the total never above ``station_w``.

    OCPP 1.6 3.13.3: with several connectors, ChargePointMaxProfile limits them combined.
    """
    remaining = max(0.0, station_w)
    shares: dict[int, float] = {}
    ordered = sorted(wanted_w.items(), key=lambda kv: (kv[1], kv[0]))
    for i, (connector_id, want) in enumerate(ordered):
        give = max(0.0, min(want, remaining / (len(ordered) - i)))
        shares[connector_id] = give
        remaining = max(0.0, remaining - give)
    return shares


def _limit_in(pieces: list[tuple[float, Limit]], offset: float) -> Limit:
    found = pieces[0][1]
    for start, limit in pieces:
        if start <= offset:
            found = limit
        else:
            break
    return found


def charge_station(
    spec: ChargerSpec,
    state: ChargerState,
    evs: Mapping[int, Ev],
    start: datetime,
    dt_s: float,
) -> dict[int, tuple[Ev, float]]:
    """Charge the EVs plugged into a charger (connector -> EV) over ``[start, start + dt_s)``.

    Within each piece where no limit changes, each connector's draw is min(its composite limit, EV
    acceptance at the start of the piece), scaled by :func:`share_station_power` to the station
    limit (ChargePointMax and the station hardware). Power an EV stops taking within a piece (the
    taper) is not handed to others until the next piece, so the sum stays under the station limit.
    Returns the new EV and the Wh received per connector. Raises InvalidModelError.
    """
    station = limits_over(spec, state, 0, start, dt_s)
    per_connector = {c: limits_over(spec, state, c, start, dt_s) for c in evs}
    cuts = sorted(
        {o for o, _ in station}.union(*({o for o, _ in p} for p in per_connector.values()))
    )
    current = dict(evs)
    energy = dict.fromkeys(evs, 0.0)
    for i, offset in enumerate(cuts):
        end = cuts[i + 1] if i + 1 < len(cuts) else dt_s
        station_w = _limit_in(station, offset).power(spec.voltage_v)
        wanted = {
            c: power_at(ev, _limit_in(per_connector[c], offset).power(spec.voltage_v, ev.phases))
            for c, ev in current.items()
        }
        for c, share in share_station_power(station_w, wanted).items():
            current[c], e = step(current[c], share, end - offset)
            energy[c] += e
    return {c: (current[c], energy[c]) for c in evs}
