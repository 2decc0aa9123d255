"""What a simulated charger does over time, whatever its OCPP version.

:class:`Driver` owns a charger's tasks (in one TaskGroup): boot, heartbeats at the interval the
central system gives, one session loop per connector, and the actions the central system asked for
(remote start/stop, trigger, reset). The OCPP side (1.6 or 2.0.1) implements :class:`OcppSide`;
its ``@on`` handlers never await a call themselves (that would deadlock the receive loop), they
ask the driver, which sends from its own tasks.

A session: plug the EV, authorize, start the transaction, then each tick advance the station model
under the composite limit and send meter values every ``meter_interval_s`` simulated seconds, until
the EV departs or someone stops it; then stop the transaction and unplug.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from charge_point_sim.clock import Clock, sleep_until, wait_event
from charge_point_sim.ev_model import Ev, MeterReading
from charge_point_sim.link import OfflineError
from charge_point_sim.profiles import ChargingProfile
from charge_point_sim.station import Station
from charge_point_sim.wire import samples

log = logging.getLogger("charge_point_sim")

# Version-neutral connector states; the 2.0.1 side maps the occupied ones onto "Occupied".
AVAILABLE = "Available"
PREPARING = "Preparing"
CHARGING = "Charging"
FINISHING = "Finishing"

# Stop reasons valid in both versions (1.6 Reason, 2.0.1 ReasonEnumType).
EV_DISCONNECTED = "EVDisconnected"
LOCAL = "Local"
REMOTE = "Remote"
REBOOT = "Reboot"


class OcppSide(Protocol):
    """The messages a charger sends, implemented once per OCPP version.

    ``makes_transaction_ids``: the charger names its transactions (2.0.1), so the driver starts
    the transaction in the model before telling the central system; 1.6 gets the id in the answer.
    ``readings_in_start_stop``: the start and stop messages carry a meter reading as sampled values
    (2.0.1 TransactionEvent Started / Ended); 1.6 sends only meterStart / meterStop.
    """

    makes_transaction_ids: bool
    readings_in_start_stop: bool

    async def boot(self) -> int:
        """Send BootNotification until Accepted; return the heartbeat interval (s)."""
        ...

    async def heartbeat(self) -> None: ...

    async def status(self, connector_id: int, status: str) -> None: ...

    async def authorize(self, id_tag: str) -> bool: ...

    async def start_transaction(self, request: SessionRequest, reading: MeterReading) -> str:
        """Start a transaction; return its id (the model's string form)."""
        ...

    async def meter_values(
        self, connector_id: int, transaction_id: str, reading: MeterReading
    ) -> None: ...

    async def stop_transaction(
        self, request: SessionRequest, transaction_id: str, reading: MeterReading, reason: str
    ) -> None: ...

    async def charging_needs(self, request: SessionRequest, transaction_id: str) -> str | None:
        """Tell the central system what an ISO 15118 EV needs; return its answer (Accepted,
        Rejected, Processing) or why there is none, or None when the version has no such
        message (1.6)."""
        ...

    async def resume(self) -> None:
        """After a reconnect: send the transaction messages still owed, in order."""
        ...


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """A vehicle to charge on ``connector_id`` until ``departure`` (None: until stopped).

    ``remote`` sessions were started by the central system (no Authorize). ``profile_for`` builds
    the TxProfile that came with a remote start once the transaction id is known.
    ``transaction_id`` is a preset id (2.0.1 RequestStartTransaction answers with it).
    """

    connector_id: int
    ev: Ev
    id_tag: str
    departure: datetime | None = None
    remote: bool = False
    remote_start_id: int | None = None
    transaction_id: str | None = None
    profile_for: Callable[[str], ChargingProfile] | None = None


@dataclass(frozen=True, slots=True)
class Arrival:
    """A scenario's vehicle arriving at ``at``."""

    at: datetime
    request: SessionRequest


@dataclass(slots=True)
class SessionResult:
    """How a session went (for the report).

    ``iso15118``: the EV spoke ISO 15118; ``needs_status``: what the central system answered to
    its NotifyEVChargingNeeds (or why there was no answer), None when none was sent.

    What went on the wire, so a central system's records can be checked against it:
    ``started_at`` and ``stopped_at`` are the timestamps of the start and stop messages,
    ``meter_start_wh`` and ``meter_stop_wh`` the energy register in them (whole Wh, rounded
    down as sent); ``meter_values`` counts the meter readings the session's transaction messages
    carried (1.6 MeterValues; 2.0.1 every TransactionEvent, Started and Ended included) and
    ``samples`` their sampled values. Each reading is counted once, when it is queued, however
    often it is sent again.
    """

    connector_id: int
    id_tag: str
    arrival: datetime
    departure: datetime | None
    requested_wh: float
    transaction_id: str | None = None
    delivered_wh: float = 0.0
    stopped_at: datetime | None = None
    reason: str | None = None
    iso15118: bool = False
    needs_status: str | None = None
    started_at: datetime | None = None
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    meter_values: int = 0
    samples: int = 0

    def sent(self, reading: MeterReading) -> None:
        """Count a meter reading sent for this session."""
        self.meter_values += 1
        self.samples += len(samples(reading))

    @property
    def met(self) -> bool:
        """Whether the EV got what it asked for (within 1 Wh)."""
        return self.delivered_wh >= self.requested_wh - 1.0


@dataclass(slots=True)
class _Live:
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = LOCAL
    transaction_id: str | None = None
    result: SessionResult | None = None


class Driver:
    """Runs one charger's behaviour over an :class:`OcppSide`. Single event loop."""

    def __init__(self, charger_id: str, side: OcppSide, station: Station, clock: Clock) -> None:
        self.charger_id = charger_id
        self.side = side
        self.station = station
        self.clock = clock
        self.status: dict[int, str] = dict.fromkeys(station.meters, AVAILABLE)
        self.results: list[SessionResult] = []
        self.booted = asyncio.Event()
        self._live: dict[int, _Live] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tg: asyncio.TaskGroup | None = None
        # The run is over (``until`` passed): no session starts any more, while those running
        # stop and send what they owe (which may take a while if the central system is slow).
        self.ending = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, arrivals: Sequence[Arrival], until: datetime | None) -> None:
        """Boot, then heartbeat and play ``arrivals`` until ``until`` (None: until cancelled).

        At the end every running session is stopped (reason Local) and sent.
        """
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            await self._boot()
            heartbeats = tg.create_task(self._heartbeats())
            for a in arrivals:
                self.spawn(self._arrive(a))
            if until is None:
                await asyncio.Event().wait()  # until cancelled
            else:
                await sleep_until(self.clock, until)
            self.ending = True
            self.stop_all(LOCAL)
            await self.idle()
            heartbeats.cancel()
            for t in list(self._tasks):
                t.cancel()
        self._tg = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> bool:
        """Run ``coro`` in the charger's TaskGroup; False (and dropped) when not running."""
        if self._tg is None:
            coro.close()
            return False
        task = self._tg.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def idle(self) -> None:
        """Wait until no session runs."""
        while self._live:
            await asyncio.sleep(0.01)

    async def _boot(self) -> None:
        interval = await self.side.boot()
        if interval > 0:
            self.station.settings = replace(self.station.settings, heartbeat_interval_s=interval)
        self.booted.set()
        for c, status in self.status.items():
            await self._status(c, status)

    async def _heartbeats(self) -> None:
        while True:
            await self.clock.sleep(self.station.settings.heartbeat_interval_s)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        try:
            await self.side.heartbeat()
        except OfflineError:
            log.debug("%s: offline, heartbeat skipped", self.charger_id)

    async def _status(self, connector_id: int, status: str) -> None:
        """Send a status; lost when offline (:meth:`reconnected` sends them all again)."""
        try:
            await self.side.status(connector_id, status)
        except OfflineError:
            log.debug("%s: offline, status %s not sent", self.charger_id, status)

    async def _authorize(self, id_tag: str) -> bool:
        """Authorize; offline, the charger authorizes locally (LocalAuthorizeOffline)."""
        try:
            return await self.side.authorize(id_tag)
        except OfflineError:
            return True

    def reconnected(self) -> bool:
        """The connection is back: send what is owed, then every connector's status."""
        return self.spawn(self._reconnected())

    async def _reconnected(self) -> None:
        await self.side.resume()
        await self._send_statuses(list(self.status))

    # -- what the central system may ask (called from @on handlers: never await calls there) ---

    def request_start(self, request: SessionRequest) -> bool:
        """Start a session now if its connector is free (and the run is not over)."""
        if self.ending:
            return False
        if request.connector_id in self.station.evs or request.connector_id in self._live:
            return False
        self._live[request.connector_id] = _Live()
        return self.spawn(self._session(request, self._live[request.connector_id]))

    def request_stop(self, transaction_id: str, reason: str = REMOTE) -> bool:
        """Stop the session running ``transaction_id``."""
        for live in self._live.values():
            if live.transaction_id == transaction_id and not live.stop.is_set():
                live.reason = reason
                live.stop.set()
                return True
        return False

    def stop_all(self, reason: str) -> None:
        """Stop every running session."""
        for live in self._live.values():
            if not live.stop.is_set():
                live.reason = reason
                live.stop.set()

    def transaction_renamed(self, old: str, new: str) -> None:
        """A session that went on under a local transaction id got its real one (1.6 offline
        start): remote stops and the report use the real one from now on."""
        for live in self._live.values():
            if live.transaction_id == old:
                live.transaction_id = new
        for result in self.results:
            if result.transaction_id == old:
                result.transaction_id = new

    def transaction_on(self, connector_id: int) -> str | None:
        """The transaction id running on ``connector_id``."""
        tx = self.station.state.transaction_on(connector_id)
        return None if tx is None else tx.transaction_id

    def trigger(self, message: str, connector_id: int | None) -> bool:
        """Send ``message`` soon (TriggerMessage); False when not supported."""
        connectors = [connector_id] if connector_id else list(self.status)
        if message == "BootNotification":
            return self.spawn(self._resend_boot())
        if message == "Heartbeat":
            return self.spawn(self._heartbeat())
        if message == "StatusNotification":
            return self.spawn(self._send_statuses(connectors))
        if message == "MeterValues":
            return self.spawn(self._send_meters(connectors))
        return False

    def reset(self) -> bool:
        """Stop every session (reason Reboot), then boot again."""
        return self.spawn(self._reset())

    async def _resend_boot(self) -> None:
        await self.side.boot()

    async def _send_statuses(self, connectors: list[int]) -> None:
        for c in connectors:
            await self._status(c, self.status[c])

    async def _send_meters(self, connectors: list[int]) -> None:
        now = self.clock.now()
        self.station.advance(now)
        for c in connectors:
            tx = self.transaction_on(c)
            if tx is not None:
                reading = self.station.reading(c, now)
                live = self._live.get(c)
                if live is not None and live.result is not None:
                    live.result.sent(reading)
                await self.side.meter_values(c, tx, reading)

    async def _reset(self) -> None:
        self.stop_all(REBOOT)
        await self.idle()
        await self._boot()

    # -- sessions ------------------------------------------------------------------------------

    async def _arrive(self, arrival: Arrival) -> None:
        await sleep_until(self.clock, arrival.at)
        if self.ending:
            return  # it arrives after the run: not played
        if not self.request_start(arrival.request):
            log.warning(
                "%s: connector %s busy, vehicle %s turned away",
                self.charger_id,
                arrival.request.connector_id,
                arrival.request.id_tag,
            )

    async def _set_status(self, connector_id: int, status: str) -> None:
        self.status[connector_id] = status
        await self._status(connector_id, status)

    async def _session(self, req: SessionRequest, live: _Live) -> None:
        c = req.connector_id
        now = self.clock.now()
        result = SessionResult(
            c, req.id_tag, now, req.departure, req.ev.needs_wh, iso15118=req.ev.iso15118
        )
        self.results.append(result)
        live.result = result
        self.station.advance(now)
        self.station.plug(c, req.ev)
        try:
            await self._set_status(c, PREPARING)
            if not req.remote and not await self._authorize(req.id_tag):
                result.reason = "NotAuthorized"
                return
            now = self.clock.now()
            self.station.advance(now)
            reading = self.station.reading(c, now)
            if self.side.makes_transaction_ids:
                # 2.0.1: the charger knows its transaction before it tells anyone, so a TxProfile
                # the central system sends on seeing TransactionEvent Started finds it running.
                if req.transaction_id is None:
                    req = replace(req, transaction_id=uuid.uuid4().hex)
                assert req.transaction_id is not None
                live.transaction_id = result.transaction_id = req.transaction_id
                self.station.start_transaction(c, req.transaction_id, now)
            result.started_at = reading.timestamp
            result.meter_start_wh = math.floor(reading.energy_wh)
            if self.side.readings_in_start_stop:
                result.sent(reading)
            tx = await self.side.start_transaction(req, reading)
            live.transaction_id = result.transaction_id = tx
            if self.station.state.transaction_on(c) is None:
                self.station.start_transaction(c, tx, now)
            start_register = self.station.meters[c].register_wh
            if req.ev.iso15118:
                # 2.0.1 K15: the EV's charge parameters reach the station once the transaction
                # runs; the station forwards them as NotifyEVChargingNeeds.
                result.needs_status = await self.side.charging_needs(req, tx)
            if req.profile_for is not None:
                reason = self.station.set_profile(c, req.profile_for(tx), self.clock.now())
                if reason is not None:
                    log.info("%s: profile with remote start rejected: %s", self.charger_id, reason)
            await self._set_status(c, CHARGING)
            await self._charge(req, live, tx, result)
            now = self.clock.now()
            self.station.advance(now)
            reading = self.station.reading(c, now)
            result.delivered_wh = self.station.meters[c].register_wh - start_register
            result.stopped_at, result.reason = now, live.reason
            result.meter_stop_wh = math.floor(reading.energy_wh)
            if self.side.readings_in_start_stop:
                result.sent(reading)
            await self.side.stop_transaction(req, tx, reading, live.reason)
            self.station.end_transaction(c)
            await self._set_status(c, FINISHING)
        finally:
            self.station.unplug(c)
            self._live.pop(c, None)
        await self._set_status(c, AVAILABLE)

    async def _charge(
        self, req: SessionRequest, live: _Live, tx: str, result: SessionResult
    ) -> None:
        c = req.connector_id
        last_meter = self.clock.now()
        while True:
            now = self.clock.now()
            if req.departure is not None and now >= req.departure:
                live.reason = EV_DISCONNECTED
                return
            wake = last_meter.timestamp() + self.station.settings.meter_interval_s - now.timestamp()
            if req.departure is not None:
                wake = min(wake, (req.departure - now).total_seconds())
            if await wait_event(self.clock, live.stop, wake):
                return
            now = self.clock.now()
            self.station.advance(now)
            if (now - last_meter).total_seconds() >= self.station.settings.meter_interval_s:
                reading = self.station.reading(c, now)
                result.sent(reading)
                await self.side.meter_values(c, tx, reading)
                last_meter = now
