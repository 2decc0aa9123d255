"""One simulated charging station: hardware, profiles, plugged EVs and meters, advanced in time.

This is the state an OCPP side (1.6 or 2.0.1) drives. It does no I/O: :meth:`Station.advance`
integrates every plugged EV under the composite limits up to a given instant (sharing the station
maximum among connectors with :func:`~charge_point_sim.charging.charge_station`), so a profile
installed at ``t`` governs the draw from ``t`` on. Energy is also booked per simulated minute of
the run, which is what the report's "metered power per charger per minute" is made of.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from charge_point_sim.charger_model import ChargerSpec, ChargerState, set_charging_profile
from charge_point_sim.charging import charge_station, share_station_power
from charge_point_sim.composite import (
    CompositeSchedule,
    composite_schedule,
    connector_limit,
    limit_at,
)
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.ev_model import Ev, Meter, MeterReading, power_at
from charge_point_sim.profiles import ChargingProfile, Purpose, RateUnit, is_aware

MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Settings:
    """Run-time settings a central system may change (1.6 configuration / 2.0.1 device model)."""

    heartbeat_interval_s: int = 300
    meter_interval_s: int = 60
    smart_charging_enabled: bool = True


class Station:
    """Mutable simulation state of one station. Single-threaded: call from one event loop."""

    def __init__(self, spec: ChargerSpec, now: datetime, settings: Settings | None = None) -> None:
        if not is_aware(now):
            raise InvalidModelError("now must be timezone-aware")
        self.spec = spec
        self.settings = settings or Settings()
        self.state = ChargerState()
        self.evs: dict[int, Ev] = {}
        self.meters: dict[int, Meter] = {c: Meter() for c in range(1, len(spec.connectors) + 1)}
        self.origin = now
        self.last = now
        # Energy drawn by the whole station per minute of the run (index 0 is [origin, origin+1m)).
        self.minute_wh: dict[int, float] = {}
        # The "accepts but ignores profiles" quirk: profiles are installed and reported but the
        # draw follows only the hardware (see charge_point_sim.quirks).
        self.ignore_profiles = False

    @property
    def drawing_state(self) -> ChargerState:
        """The state the draw follows: without profiles when they are ignored."""
        if self.ignore_profiles:
            return ChargerState(transactions=self.state.transactions)
        return self.state

    # -- time --------------------------------------------------------------------------------

    def advance(self, now: datetime) -> None:
        """Integrate every connector with a running transaction from the last instant to ``now``."""
        if not is_aware(now):
            raise InvalidModelError("now must be timezone-aware")
        while self.last < now:
            minute = math.floor((self.last - self.origin) / MINUTE)
            end = min(now, self.origin + (minute + 1) * MINUTE)
            dt = (end - self.last).total_seconds()
            charging = {c: ev for c, ev in self.evs.items() if self.state.transaction_on(c)}
            if charging and dt > 0:
                for c, (ev, wh) in charge_station(
                    self.spec, self.drawing_state, charging, self.last, dt
                ).items():
                    self.evs[c] = ev
                    self.meters[c] = self.meters[c].add(wh)
                    self.minute_wh[minute] = self.minute_wh.get(minute, 0.0) + wh
            self.last = end

    def power_w(self, connector_id: int, at: datetime) -> float:
        """The power drawn on ``connector_id`` at ``at`` (0 without an EV or a transaction)."""
        return self.powers_w(at).get(connector_id, 0.0)

    def powers_w(self, at: datetime) -> dict[int, float]:
        """The power drawn per charging connector at ``at``, shared under the station limit."""
        state = self.drawing_state
        wanted = {
            c: power_at(ev, limit_at(self.spec, state, c, at, ev_phases=ev.phases))
            for c, ev in self.evs.items()
            if state.transaction_on(c)
        }
        station_w = connector_limit(self.spec, state, 0, at).power(self.spec.voltage_v)
        return share_station_power(station_w, wanted)

    def reading(self, connector_id: int, at: datetime) -> MeterReading:
        """A meter sample of ``connector_id`` at ``at``; call :meth:`advance` to ``at`` first."""
        ev = self.evs.get(connector_id)
        phases = self.spec.connector(connector_id).phases
        if ev is not None:
            phases = min(phases, ev.phases)
        return self.meters[connector_id].read(
            at,
            self.power_w(connector_id, at),
            voltage_v=self.spec.voltage_v,
            phases=phases,
            soc=None if ev is None else ev.soc,
        )

    # -- EVs and transactions ------------------------------------------------------------------

    def plug(self, connector_id: int, ev: Ev) -> None:
        """Plug ``ev`` into ``connector_id``. Raises InvalidModelError if one is there already."""
        self.spec.connector(connector_id)
        if connector_id in self.evs:
            raise InvalidModelError(f"connector {connector_id} already has an EV")
        self.evs[connector_id] = ev

    def unplug(self, connector_id: int) -> Ev | None:
        """Unplug the EV on ``connector_id`` (ends its transaction); return it."""
        if self.state.transaction_on(connector_id) is not None:
            self.end_transaction(connector_id)
        return self.evs.pop(connector_id, None)

    def start_transaction(self, connector_id: int, transaction_id: str, at: datetime) -> None:
        """Start charging on ``connector_id`` from ``at``."""
        self.advance(at)
        self.state = self.state.start_transaction(connector_id, transaction_id, at)

    def rename_transaction(self, old: str, new: str) -> None:
        """Transaction ``old`` is now called ``new`` (see :meth:`ChargerState.rename_transaction`)."""
        self.state = self.state.rename_transaction(old, new)

    def end_transaction(self, connector_id: int) -> None:
        """Stop charging on ``connector_id`` (its TxProfiles go with the transaction)."""
        self.state = self.state.end_transaction(connector_id)

    def connector_of(self, transaction_id: str) -> int | None:
        """The connector running ``transaction_id``."""
        for tx in self.state.transactions:
            if tx.transaction_id == transaction_id:
                return tx.connector_id
        return None

    def free_connector(self) -> int | None:
        """The lowest connector without an EV."""
        return next((c for c in self.meters if c not in self.evs), None)

    # -- smart charging ------------------------------------------------------------------------

    def set_profile(self, connector_id: int, profile: ChargingProfile, at: datetime) -> str | None:
        """Validate and install ``profile``: None when accepted, else the reason it was rejected.

        The draw up to ``at`` is integrated under the old limits first.
        """
        if not self.settings.smart_charging_enabled:
            return "smart charging is disabled on this charger"
        self.advance(at)
        self.state, reason = set_charging_profile(self.spec, self.state, connector_id, profile)
        return reason

    def clear_profiles(
        self,
        at: datetime,
        *,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> int:
        """Clear matching profiles (see :meth:`ChargerState.clear`); return how many went."""
        self.advance(at)
        self.state, removed = self.state.clear(
            profile_id=profile_id,
            connector_id=connector_id,
            purpose=purpose,
            stack_level=stack_level,
        )
        return removed

    def composite(
        self, connector_id: int, at: datetime, duration_s: int, unit: RateUnit | None
    ) -> CompositeSchedule:
        """The composite schedule from ``at`` (truncated to the whole second)."""
        start = at.replace(microsecond=0)
        return composite_schedule(self.spec, self.state, connector_id, start, duration_s, unit)

    def with_settings(self, settings: Settings) -> None:
        """Apply new run-time settings."""
        self.settings = settings

    def minute_power_kw(self) -> list[float]:
        """Average station power per minute of the run so far, in kW (0 for idle minutes)."""
        if not self.minute_wh:
            return []
        last = max(self.minute_wh)
        return [round(self.minute_wh.get(m, 0.0) * 60 / 1000, 4) for m in range(last + 1)]
