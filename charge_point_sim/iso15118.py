"""EVs that speak ISO 15118: which sessions do, and the charging needs they declare.

Pure functions, tested without sockets. On an OCPP 2.0.1 station such an EV makes the station send
NotifyEVChargingNeeds right after TransactionEvent Started (use case K15: the EV's
ChargeParameterDiscoveryReq becomes NotifyEVChargingNeedsRequest); OCPP 1.6 has no such message.

Which sessions speak it is a seeded draw per session: a hash of the seed and the session (charger,
connector, id tag, arrival) compared with the share, so the choice does not depend on the other
sessions, the speed or the order of the run, and a session chosen at share ``p`` is also chosen at
any larger share.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from charge_point_sim.charger_model import ChargerSpec
from charge_point_sim.driver import Arrival
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.ev_model import Ev
from charge_point_sim.wire import format_time

# EnergyTransferModeEnumType for the AC phases the EV charges on. The simulator models AC chargers
# only, so "DC" is never requested.
_AC_TRANSFER = {1: "AC_single_phase", 2: "AC_two_phase", 3: "AC_three_phase"}
# Float noise tolerated before rounding a current up (6 A x 230 V / 230 V must stay 6 A).
_SLACK = 1e-9


def draw(seed: int, key: str) -> float:
    """A deterministic number in [0, 1) for ``key`` under ``seed`` (SHA-256, not ``hash()``, which
    changes between processes)."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def session_key(charger_id: str, arrival: Arrival) -> str:
    """What identifies a scenario session for the draw."""
    r = arrival.request
    return f"{charger_id}\x1f{r.connector_id}\x1f{r.id_tag}\x1f{arrival.at.isoformat()}"


def with_iso15118(
    arrivals: Mapping[str, Sequence[Arrival]], share: float, seed: int
) -> dict[str, list[Arrival]]:
    """``arrivals`` with the EV of each drawn session marked as speaking ISO 15118.

    A session is drawn when ``draw(seed, its key) < share``: about ``share`` of the sessions, each
    decided on its own. Raises InvalidModelError unless 0 <= share <= 1.
    """
    if not (math.isfinite(share) and 0.0 <= share <= 1.0):
        raise InvalidModelError("the ISO 15118 share must be within [0, 1]")
    out: dict[str, list[Arrival]] = {}
    for charger_id, items in arrivals.items():
        out[charger_id] = [
            (
                replace(a, request=replace(a.request, ev=replace(a.request.ev, iso15118=True)))
                if draw(seed, session_key(charger_id, a)) < share
                else a
            )
            for a in items
        ]
    return out


def energy_transfer(phases: int) -> str:
    """The requestedEnergyTransfer of an AC EV charging on ``phases`` phases."""
    try:
        return _AC_TRANSFER[phases]
    except KeyError as e:
        raise InvalidModelError("phases must be 1, 2 or 3") from e


def charging_needs(
    spec: ChargerSpec, evse_id: int, ev: Ev, departure: datetime | None
) -> dict[str, Any]:
    """The NotifyEVChargingNeedsRequest (snake_case) of ``ev`` plugged into ``evse_id``.

    Consistent with the EV model: it charges on min(EVSE phases, EV phases) at the charger's
    line-to-neutral voltage, so ``evMaxCurrent`` is its maximum power per phase in A (rounded to
    the nearest A: the schema wants integers) and ``evMaxVoltage`` that voltage, so that
    evMaxCurrent x evMaxVoltage x phases is its maximum power within half an amp per phase.
    ``evMinCurrent`` is the smallest whole current at which it draws at all (its
    ``min_power_w``, IEC 61851's 6 A on most cars), and ``energyAmount`` (Wh) what it still
    declares it needs. ``departureTime`` is the session's departure in UTC, when known.
    """
    phases = min(spec.connector(evse_id).phases, ev.phases)
    volts = spec.voltage_v
    max_a = max(1, round(ev.max_power_w / (volts * phases)))
    min_a = min(max_a, math.ceil(ev.min_power_w / (volts * phases) - _SLACK))
    needs: dict[str, Any] = {
        "requested_energy_transfer": energy_transfer(phases),
        "ac_charging_parameters": {
            "energy_amount": round(ev.needs_wh),
            "ev_min_current": max(0, min_a),
            "ev_max_current": max_a,
            "ev_max_voltage": round(volts),
        },
    }
    if departure is not None:
        needs["departure_time"] = format_time(departure)
    return {"evse_id": evse_id, "charging_needs": needs}


__all__ = [
    "charging_needs",
    "draw",
    "energy_transfer",
    "session_key",
    "with_iso15118",
]
