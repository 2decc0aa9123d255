"""The OCPP 1.6J side of a simulated charger: an ``ocpp`` ChargePoint subclass.

Handlers are thin and synchronous: they map the payload with :mod:`charge_point_sim.mapping16`,
change the :class:`~charge_point_sim.station.Station` and answer. Anything that needs an outgoing
call (a remote start, a triggered message, a reset) is handed to the :class:`Driver`, which sends
from its own tasks. Every ``call()`` passes ``suppress=False``: a CALLERROR raises.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ocpp.v16 import ChargePoint, call, call_result

from charge_point_sim import mapping16 as m
from charge_point_sim._ocpp import on
from charge_point_sim.clock import Clock
from charge_point_sim.driver import Driver, SessionRequest
from charge_point_sim.ev_model import Ev, MeterReading
from charge_point_sim.link import Link, OfflineError, Outbox
from charge_point_sim.quirks import Quirks
from charge_point_sim.station import Station
from charge_point_sim.wire import PayloadError, format_time, parse_time

log = logging.getLogger("charge_point_sim.v16")

SUBPROTOCOL = "ocpp1.6"


# How long (simulated s) a charger that is online waits for the answer to StartTransaction, after
# the call's own response timeout, before it charges under a local transaction id; offline it does
# not wait (as with LocalAuthorizeOffline).
START_ANSWER_WAIT_S = 30.0
LOCAL_PREFIX = "local-"


@dataclass(frozen=True, slots=True)
class _Start:
    """A StartTransaction in the outbox and the local id of its session (see ``start_transaction``)."""

    payload: Any
    local_id: str


def default_ev(station: Station, connector_id: int) -> Ev:
    """The vehicle a remote start charges when the scenario has none: 60 kWh at 30 %."""
    c = station.spec.connector(connector_id)
    return Ev(capacity_kwh=60.0, soc=0.3, max_power_w=c.max_power_w, phases=c.phases)


class ChargePoint16(ChargePoint):  # type: ignore[misc]
    """A simulated OCPP 1.6J charge point over one connection."""

    makes_transaction_ids = False
    readings_in_start_stop = False  # StartTransaction / StopTransaction: meterStart, meterStop

    def __init__(
        self,
        charger_id: str,
        connection: Any,
        station: Station,
        clock: Clock,
        *,
        vendor: str = "EVSmartSim",
        model: str = "SimCharger-16",
        response_timeout: float = 30,
        remote_ev: Callable[[Station, int], Ev] = default_ev,
        quirks: Quirks | None = None,
        start_answer_wait_s: float = START_ANSWER_WAIT_S,
    ) -> None:
        super().__init__(charger_id, connection, response_timeout)
        self.station = station
        self.clock = clock
        self.vendor = vendor
        self.model = model
        self.remote_ev = remote_ev
        self.quirks = quirks or Quirks()
        self.start_answer_wait_s = start_answer_wait_s
        station.ignore_profiles = self.quirks.ignores_profiles
        station.spec = replace(
            station.spec, capabilities=self.quirks.capabilities(station.spec.capabilities)
        )
        self.driver = Driver(charger_id, self, station, clock)
        self.rejections: list[str] = []
        self.outbox = Outbox(self._send_transaction_message)
        # The StartTransaction out (its message id, the entry, its start time), see route_message.
        self._start: tuple[str, _Start, datetime] | None = None
        # Local ids of sessions waiting for their StartTransaction answer, of sessions that went
        # on without it, and the real (model) ids the answers gave.
        self._waiting: set[str] = set()
        self._provisional: set[str] = set()
        self._real: dict[str, str] = {}

    async def call(
        self,
        payload: Any,
        suppress: bool = True,
        unique_id: Any = None,
        skip_schema_validation: bool = False,
    ) -> Any:
        """The ``ocpp`` call, failing fast with :class:`OfflineError` when the connection drops."""
        coro = super().call(payload, suppress, unique_id, skip_schema_validation)
        if isinstance(self._connection, Link):
            return await self._connection.guard(coro)
        return await coro

    async def _send_transaction_message(self, message: Any) -> Any:
        if not isinstance(message, _Start):
            return await self.call(message, suppress=False)
        uid = uuid.uuid4().hex
        self._start = (uid, message, parse_time(message.payload.timestamp, "timestamp"))
        try:
            return await self.call(message.payload, suppress=False, unique_id=uid)
        finally:
            self._start = None

    async def route_message(self, raw_msg: str) -> None:
        """Route as the ``ocpp`` package does; on the answer to StartTransaction, start the
        transaction in the model at once, before the receive loop reads the next message (a
        TxProfile for it may follow straight away), or give the session that went on without
        the answer its real id."""
        await super().route_message(raw_msg)
        start = self._start
        if start is None:
            return
        with suppress(ValueError, TypeError, KeyError, IndexError):
            msg = json.loads(raw_msg)
            if msg[0] == 3 and msg[1] == start[0]:
                self._answered(start[1], m.transaction_key(int(msg[2]["transactionId"])), start[2])

    def _answered(self, start: _Start, tx: str, at: datetime) -> None:
        local, connector = start.local_id, start.payload.connector_id
        self._real[local] = tx
        running = self.station.state.transaction_on(connector)
        if local in self._waiting and running is None:
            self.station.start_transaction(connector, tx, at)
        elif local in self._provisional:
            self._provisional.discard(local)
            if running is not None and running.transaction_id == local:
                self.station.rename_transaction(local, tx)
            self.driver.transaction_renamed(local, tx)

    def wire_transaction_id(self, transaction_id: str) -> int:
        """The 1.6 transactionId of a model transaction id, a local one resolved through the
        answer to its StartTransaction (queued ahead of every message that needs it)."""
        return int(self._real.get(transaction_id, transaction_id))

    async def _transaction_message(self, message: Any) -> asyncio.Future[Any]:
        """Queue a transaction message (sent again until answered, 1.6 4.10) and send the
        queue; return the answer's future. ``message`` is a payload, or a callable that builds
        it when it goes out (so it can take a transaction id known only by then)."""
        answer = self.outbox.put(message if callable(message) else lambda: message)
        await self.outbox.flush()
        return answer

    async def _handle_call(self, msg: Any) -> None:
        if self.quirks.answer_delay_s > 0:
            await self.clock.sleep(self.quirks.answer_delay_s)
        try:
            await super()._handle_call(msg)
        except OfflineError:
            # The connection went while answering: the answer is lost, as on a real charger.
            log.info("%s: answer to %s lost with the connection", self.id, msg.action)

    async def resume(self) -> None:
        """After a reconnect: send again what got no answer, in order."""
        await self.outbox.flush()

    # -- what the charger sends (OcppSide) ----------------------------------------------------

    async def boot(self) -> int:
        while True:
            try:
                res = await self.call(
                    call.BootNotification(
                        charge_point_model=self.model, charge_point_vendor=self.vendor
                    ),
                    suppress=False,
                )
            except OfflineError:
                if isinstance(self._connection, Link):
                    await self._connection.online.wait()
                continue
            if res.status == "Accepted":
                return int(res.interval)
            await self.clock.sleep(res.interval or 60)

    async def heartbeat(self) -> None:
        await self.call(call.Heartbeat(), suppress=False)

    async def status(self, connector_id: int, status: str) -> None:
        await self.call(
            call.StatusNotification(
                connector_id=connector_id,
                error_code="NoError",
                status=status,
                timestamp=format_time(self.clock.now()),
            ),
            suppress=False,
        )

    async def authorize(self, id_tag: str) -> bool:
        res = await self.call(call.Authorize(id_tag=id_tag), suppress=False)
        return bool(res.id_tag_info.get("status") == "Accepted")

    async def start_transaction(self, request: SessionRequest, reading: MeterReading) -> str:
        """Send StartTransaction; return the transaction id of its answer, or a local id.

        The id comes with the answer. Offline (the message could not go out or its connection
        dropped), or online without an answer within the call's response timeout and then
        ``start_answer_wait_s`` (simulated) more, the charger charges anyway under a local id
        (as with the LocalAuthorizeOffline configuration key; the message stays queued and is
        sent again, 1.6 4.10).
        Its MeterValues and StopTransaction queue behind it and take the real id when they go
        out; the model's transaction and the session take it when the answer comes.
        """
        meter_start, timestamp = m.started_at(reading)
        local = f"{LOCAL_PREFIX}{uuid.uuid4().hex[:12]}"
        start = _Start(
            call.StartTransaction(
                connector_id=request.connector_id,
                id_tag=request.id_tag,
                meter_start=meter_start,
                timestamp=timestamp,
            ),
            local,
        )
        self._waiting.add(local)
        try:
            answer = await self._transaction_message(start)
            if not answer.done() and self._online():
                with suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(answer), self.start_answer_wait_s / self.clock.speed
                    )
        finally:
            self._waiting.discard(local)
        if not answer.done():
            log.info("%s: no answer to StartTransaction yet, charging as %s", self.id, local)
            self._provisional.add(local)
            return local
        res = answer.result()
        if res.id_tag_info.get("status") != "Accepted":
            log.info("%s: StartTransaction answered %s", self.id, res.id_tag_info)
        return m.transaction_key(res.transaction_id)

    def _online(self) -> bool:
        return not isinstance(self._connection, Link) or self._connection.is_online

    async def meter_values(
        self, connector_id: int, transaction_id: str, reading: MeterReading
    ) -> None:
        meter_value = [m.meter_value_16(reading)]
        await self._transaction_message(
            lambda: call.MeterValues(
                connector_id=connector_id,
                transaction_id=self.wire_transaction_id(transaction_id),
                meter_value=meter_value,
            )
        )

    async def stop_transaction(
        self, request: SessionRequest, transaction_id: str, reading: MeterReading, reason: str
    ) -> None:
        meter_stop, timestamp = m.started_at(reading)
        await self._transaction_message(
            lambda: call.StopTransaction(
                meter_stop=meter_stop,
                timestamp=timestamp,
                transaction_id=self.wire_transaction_id(transaction_id),
                reason=reason,
                id_tag=request.id_tag,
            )
        )

    async def charging_needs(self, request: SessionRequest, transaction_id: str) -> str | None:
        return None  # OCPP 1.6 has no message for what an ISO 15118 EV needs

    # -- what the central system asks ---------------------------------------------------------

    def _reject(self, what: str, reason: str) -> None:
        log.info("%s: %s rejected: %s", self.id, what, reason)
        self.rejections.append(reason)

    @on("SetChargingProfile")
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any]
    ) -> Any:
        try:
            profile = m.profile_from_16(cs_charging_profiles)
        except PayloadError as e:
            reason: str | None = str(e)
        else:
            reason = self.station.set_profile(connector_id, profile, self.clock.now())
        if reason is not None:
            self._reject("SetChargingProfile", reason)
            return call_result.SetChargingProfile(status="Rejected")
        return call_result.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, **payload: Any) -> Any:
        try:
            criteria = m.clear_criteria(payload)
        except PayloadError:
            return call_result.ClearChargingProfile(status="Unknown")
        removed = self.station.clear_profiles(self.clock.now(), **criteria)
        return call_result.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None
    ) -> Any:
        if self.quirks.rejects_composite:
            return call_result.GetCompositeSchedule(status="Rejected")
        unit = m.unit_of(charging_rate_unit, self.station.spec)
        if unit is None or not 0 <= connector_id <= len(self.station.spec.connectors):
            return call_result.GetCompositeSchedule(status="Rejected")
        cs = self.station.composite(connector_id, self.clock.now(), duration, unit)
        schedule = m.composite_to_16(cs)
        return call_result.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=schedule["start_schedule"],
            charging_schedule=schedule,
        )

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None) -> Any:
        found, unknown = m.get_configuration(self.station.spec, self.station.settings, key)
        return call_result.GetConfiguration(configuration_key=found, unknown_key=unknown or None)

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str) -> Any:
        settings, status = m.change_configuration(
            self.station.spec, self.station.settings, key, value
        )
        self.station.settings = settings
        return call_result.ChangeConfiguration(status=status)

    @on("RemoteStartTransaction")
    def on_remote_start_transaction(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
    ) -> Any:
        connector = connector_id if connector_id is not None else self.station.free_connector()
        if connector is None or not 1 <= connector <= len(self.station.spec.connectors):
            return call_result.RemoteStartTransaction(status="Rejected")
        profile_for = None
        if charging_profile is not None:
            payload = charging_profile
            try:
                purpose = m.profile_from_16(payload).purpose
            except PayloadError as e:
                self._reject("RemoteStartTransaction", str(e))
                return call_result.RemoteStartTransaction(status="Rejected")
            if purpose.value != "TxProfile":
                self._reject("RemoteStartTransaction", "the profile must be a TxProfile")
                return call_result.RemoteStartTransaction(status="Rejected")

            def profile_for(tx: str) -> Any:
                return m.remote_start_profile(payload, tx)

        request = SessionRequest(
            connector_id=connector,
            ev=self.remote_ev(self.station, connector),
            id_tag=id_tag,
            remote=True,
            profile_for=profile_for,
        )
        accepted = self.driver.request_start(request)
        return call_result.RemoteStartTransaction(status="Accepted" if accepted else "Rejected")

    @on("RemoteStopTransaction")
    def on_remote_stop_transaction(self, transaction_id: int) -> Any:
        stopped = self.driver.request_stop(m.transaction_key(transaction_id))
        return call_result.RemoteStopTransaction(status="Accepted" if stopped else "Rejected")

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None) -> Any:
        if connector_id is not None and not 1 <= connector_id <= len(self.station.spec.connectors):
            return call_result.TriggerMessage(status="Rejected")
        accepted = self.driver.trigger(requested_message, connector_id)
        return call_result.TriggerMessage(status="Accepted" if accepted else "NotImplemented")

    @on("Reset")
    def on_reset(self, type: str) -> Any:
        return call_result.Reset(status="Accepted" if self.driver.reset() else "Rejected")
