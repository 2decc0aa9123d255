"""The OCPP 2.0.1 side of a simulated charging station: an ``ocpp`` ChargePoint subclass.

Each EVSE has one connector (connectorId 1). Transactions are TransactionEvent Started, Updated
(periodic meter values, trigger MeterValuePeriodic) and Ended, numbered by ``seqNo`` from 0 per
transaction; the station makes the transaction ids. An ISO 15118 EV's needs follow Started as
NotifyEVChargingNeeds (K15). Handlers are thin and synchronous, as in
:mod:`charge_point_sim.v16`; calls a handler needs made after its answer (the
ReportChargingProfiles of GetChargingProfiles, K09) go in ``_after_answer``. Every ``call()``
passes ``suppress=False``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.v201 import ChargePoint, call, call_result

from charge_point_sim import mapping201 as m
from charge_point_sim._ocpp import on
from charge_point_sim.clock import Clock
from charge_point_sim.driver import (
    AVAILABLE,
    EV_DISCONNECTED,
    REMOTE,
    Driver,
    SessionRequest,
)
from charge_point_sim.ev_model import Ev, MeterReading
from charge_point_sim.iso15118 import charging_needs
from charge_point_sim.link import Link, OfflineError, Outbox
from charge_point_sim.quirks import Quirks
from charge_point_sim.station import Station
from charge_point_sim.v16 import default_ev
from charge_point_sim.wire import PayloadError, format_time

log = logging.getLogger("charge_point_sim.v201")

SUBPROTOCOL = "ocpp2.0.1"

# Stop reason -> the TransactionEvent Ended triggerReason.
_END_TRIGGER = {REMOTE: "RemoteStop", EV_DISCONNECTED: "EVCommunicationLost"}


def _status_info(reason: str) -> dict[str, str]:
    return {"reason_code": "Rejected", "additional_info": reason[:512]}


class ChargePoint201(ChargePoint):  # type: ignore[misc]
    """A simulated OCPP 2.0.1 charging station over one connection."""

    makes_transaction_ids = True
    readings_in_start_stop = True  # Started / Ended carry a meterValue (E01, E06)

    def __init__(
        self,
        charger_id: str,
        connection: Any,
        station: Station,
        clock: Clock,
        *,
        vendor: str = "EVSmartSim",
        model: str = "SimCharger-201",
        response_timeout: float = 30,
        remote_ev: Callable[[Station, int], Ev] = default_ev,
        quirks: Quirks | None = None,
    ) -> None:
        super().__init__(charger_id, connection, response_timeout)
        self.station = station
        self.clock = clock
        self.vendor = vendor
        self.model = model
        self.remote_ev = remote_ev
        self.quirks = quirks or Quirks()
        station.ignore_profiles = self.quirks.ignores_profiles
        station.spec = replace(
            station.spec, capabilities=self.quirks.capabilities(station.spec.capabilities)
        )
        self.driver = Driver(charger_id, self, station, clock)
        self.rejections: list[str] = []
        self._seq: dict[str, int] = {}
        self.outbox = Outbox(lambda payload: self.call(payload, suppress=False))
        # Calls a handler wants made once its answer is out (see _handle_call).
        self._after_answer: list[Callable[[], Coroutine[Any, Any, None]]] = []

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

    def _offline(self) -> bool:
        return isinstance(self._connection, Link) and not self._connection.is_online

    async def _transaction_event(self, **fields: Any) -> None:
        """Queue a TransactionEvent (``offline`` when it happens offline) and send the queue."""
        event = call.TransactionEvent(offline=True if self._offline() else None, **fields)
        self.outbox.put(lambda: event)
        await self.outbox.flush()

    async def _handle_call(self, msg: Any) -> None:
        """Answer a CALL, then start the calls its handler queued in ``_after_answer``.

        Handlers run inline in the receive loop, so they must not await a call themselves (that
        deadlocks until the response timeout); and a call started from a task before the answer
        is sent could overtake it (K09: the ReportChargingProfiles follow the answer).
        """
        if self.quirks.answer_delay_s > 0:
            await self.clock.sleep(self.quirks.answer_delay_s)
        try:
            await super()._handle_call(msg)
        except OfflineError:
            # The connection went while answering: the answer is lost, as on a real station.
            log.info("%s: answer to %s lost with the connection", self.id, msg.action)
            self._after_answer.clear()
            return
        except BaseException:
            self._after_answer.clear()
            raise
        jobs, self._after_answer = self._after_answer, []
        for job in jobs:
            self.driver.spawn(job())

    async def resume(self) -> None:
        """After a reconnect: send the TransactionEvents queued while offline, in order."""
        await self.outbox.flush()

    def _next_seq(self, transaction_id: str) -> int:
        n = self._seq.get(transaction_id, 0)
        self._seq[transaction_id] = n + 1
        return n

    # -- what the station sends (OcppSide) -----------------------------------------------------

    async def boot(self) -> int:
        while True:
            try:
                res = await self.call(
                    call.BootNotification(
                        charging_station={"model": self.model, "vendor_name": self.vendor},
                        reason="PowerUp",
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
                timestamp=format_time(self.clock.now()),
                connector_status="Available" if status == AVAILABLE else "Occupied",
                evse_id=connector_id,
                connector_id=1,
            ),
            suppress=False,
        )

    async def authorize(self, id_tag: str) -> bool:
        res = await self.call(
            call.Authorize(id_token={"id_token": id_tag, "type": "ISO14443"}), suppress=False
        )
        return bool(res.id_token_info.get("status") == "Accepted")

    async def start_transaction(self, request: SessionRequest, reading: MeterReading) -> str:
        tx = request.transaction_id or uuid.uuid4().hex
        info: dict[str, Any] = {"transaction_id": tx, "charging_state": "Charging"}
        if request.remote_start_id is not None:
            info["remote_start_id"] = request.remote_start_id
        await self._transaction_event(
            event_type="Started",
            timestamp=format_time(reading.timestamp),
            trigger_reason="RemoteStart" if request.remote else "Authorized",
            seq_no=self._next_seq(tx),
            transaction_info=info,
            meter_value=[m.meter_value_201(reading, "Transaction.Begin")],
            evse={"id": request.connector_id, "connector_id": 1},
            id_token={"id_token": request.id_tag, "type": "ISO14443"},
        )
        return tx

    async def meter_values(
        self, connector_id: int, transaction_id: str, reading: MeterReading
    ) -> None:
        # Periodic sampled data of a transaction travels in TransactionEvent Updated (J02).
        await self._transaction_event(
            event_type="Updated",
            timestamp=format_time(reading.timestamp),
            trigger_reason="MeterValuePeriodic",
            seq_no=self._next_seq(transaction_id),
            transaction_info={"transaction_id": transaction_id, "charging_state": "Charging"},
            meter_value=[m.meter_value_201(reading)],
        )

    async def stop_transaction(
        self, request: SessionRequest, transaction_id: str, reading: MeterReading, reason: str
    ) -> None:
        await self._transaction_event(
            event_type="Ended",
            timestamp=format_time(reading.timestamp),
            trigger_reason=_END_TRIGGER.get(reason, "StopAuthorized"),
            seq_no=self._next_seq(transaction_id),
            transaction_info={
                "transaction_id": transaction_id,
                "charging_state": "EVConnected",
                "stopped_reason": reason,
            },
            meter_value=[m.meter_value_201(reading, "Transaction.End")],
        )
        self._seq.pop(transaction_id, None)

    async def charging_needs(self, request: SessionRequest, transaction_id: str) -> str | None:
        # K15. Not a transaction-related message, so it is not queued while offline (only
        # TransactionEvents are); the report then says "offline".
        payload = charging_needs(
            self.station.spec,
            request.connector_id,
            self.station.evs.get(request.connector_id, request.ev),
            request.departure,
        )
        try:
            res = await self.call(call.NotifyEVChargingNeeds(**payload), suppress=False)
        except OfflineError:
            return "offline"
        except TimeoutError:
            return "timeout"
        except OCPPError as e:
            return f"CallError {type(e).__name__}"
        return str(res.status)

    async def _report_profiles(self, reports: list[dict[str, Any]]) -> None:
        """Send the ReportChargingProfiles of one GetChargingProfiles, in order."""
        for report in reports:
            try:
                await self.call(call.ReportChargingProfiles(**report), suppress=False)
            except (OfflineError, TimeoutError, OCPPError) as e:
                log.warning("%s: ReportChargingProfiles not delivered: %r", self.id, e)
                return

    # -- what the central system asks ----------------------------------------------------------

    def _reject(self, what: str, reason: str) -> None:
        log.info("%s: %s rejected: %s", self.id, what, reason)
        self.rejections.append(reason)

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any]) -> Any:
        try:
            profile = m.profile_from_201(charging_profile)
        except PayloadError as e:
            reason: str | None = str(e)
        else:
            reason = m.check_201(self.station.state, evse_id, profile)
            if reason is None:
                reason = self.station.set_profile(evse_id, profile, self.clock.now())
        if reason is not None:
            self._reject("SetChargingProfile", reason)
            return call_result.SetChargingProfile(
                status="Rejected", status_info=_status_info(reason)
            )
        return call_result.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    def on_clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
    ) -> Any:
        try:
            criteria = m.clear_criteria(charging_profile_id, charging_profile_criteria)
        except PayloadError:
            return call_result.ClearChargingProfile(status="Unknown")
        removed = self.station.clear_profiles(self.clock.now(), **criteria)
        return call_result.ClearChargingProfile(status="Accepted" if removed else "Unknown")

    @on("GetChargingProfiles")
    def on_get_charging_profiles(
        self, request_id: int, charging_profile: dict[str, Any], evse_id: int | None = None
    ) -> Any:
        # K09: answer first, then report what is installed as it is now (the reports are built
        # here, so a profile changed between the answer and the reports does not show).
        try:
            reports = m.charging_profile_reports(
                request_id, self.station.state, evse_id, charging_profile
            )
        except PayloadError as e:
            return call_result.GetChargingProfiles(
                status="NoProfiles", status_info=_status_info(str(e))
            )
        if not reports:
            return call_result.GetChargingProfiles(status="NoProfiles")
        self._after_answer.append(lambda: self._report_profiles(reports))
        return call_result.GetChargingProfiles(status="Accepted")

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None
    ) -> Any:
        if self.quirks.rejects_composite:
            return call_result.GetCompositeSchedule(
                status="Rejected", status_info=_status_info("not supported")
            )
        unit = m.unit_of(charging_rate_unit, self.station.spec)
        if unit is None:
            return call_result.GetCompositeSchedule(
                status="Rejected",
                status_info=_status_info(f"unit {charging_rate_unit} not allowed"),
            )
        if not 0 <= evse_id <= len(self.station.spec.connectors):
            return call_result.GetCompositeSchedule(
                status="Rejected", status_info=_status_info(f"EVSE {evse_id} does not exist")
            )
        cs = self.station.composite(evse_id, self.clock.now(), duration, unit)
        return call_result.GetCompositeSchedule(status="Accepted", schedule=m.composite_to_201(cs))

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]]) -> Any:
        results = m.get_variables(self.station.spec, self.station.settings, get_variable_data)
        return call_result.GetVariables(get_variable_result=results)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]]) -> Any:
        self.station.settings, results = m.set_variables(self.station.settings, set_variable_data)
        return call_result.SetVariables(set_variable_result=results)

    @on("RequestStartTransaction")
    def on_request_start_transaction(
        self,
        id_token: dict[str, Any],
        remote_start_id: int,
        evse_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        evse = evse_id if evse_id is not None else self.station.free_connector()
        if evse is None or not 1 <= evse <= len(self.station.spec.connectors):
            return call_result.RequestStartTransaction(
                status="Rejected", status_info=_status_info("no such or no free EVSE")
            )
        profile_for = None
        if charging_profile is not None:
            payload = charging_profile
            try:
                purpose = m.profile_from_201(payload).purpose
            except PayloadError as e:
                self._reject("RequestStartTransaction", str(e))
                return call_result.RequestStartTransaction(
                    status="Rejected", status_info=_status_info(str(e))
                )
            if purpose.value != "TxProfile":
                reason = "the profile must be a TxProfile"
                self._reject("RequestStartTransaction", reason)
                return call_result.RequestStartTransaction(
                    status="Rejected", status_info=_status_info(reason)
                )

            def profile_for(tx: str) -> Any:
                return m.request_start_profile(payload, tx)

        tx = uuid.uuid4().hex
        request = SessionRequest(
            connector_id=evse,
            ev=self.remote_ev(self.station, evse),
            id_tag=str(id_token.get("id_token")),
            remote=True,
            remote_start_id=remote_start_id,
            transaction_id=tx,
            profile_for=profile_for,
        )
        if not self.driver.request_start(request):
            return call_result.RequestStartTransaction(
                status="Rejected", status_info=_status_info(f"EVSE {evse} is occupied")
            )
        return call_result.RequestStartTransaction(status="Accepted", transaction_id=tx)

    @on("RequestStopTransaction")
    def on_request_stop_transaction(self, transaction_id: str) -> Any:
        stopped = self.driver.request_stop(transaction_id)
        return call_result.RequestStopTransaction(status="Accepted" if stopped else "Rejected")

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None) -> Any:
        evse_id = None if evse is None else evse.get("id")
        if evse_id is not None and not 1 <= evse_id <= len(self.station.spec.connectors):
            return call_result.TriggerMessage(status="Rejected")
        accepted = self.driver.trigger(requested_message, evse_id)
        return call_result.TriggerMessage(status="Accepted" if accepted else "NotImplemented")

    @on("Reset")
    def on_reset(self, type: str, evse_id: int | None = None) -> Any:
        if evse_id is not None:
            return call_result.Reset(status="Rejected")
        return call_result.Reset(status="Accepted" if self.driver.reset() else "Rejected")
