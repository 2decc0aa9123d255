"""OCPP 2.0.1 central system side: thin handlers, mapping in csms.ocpp.mapping201."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

from csms.ocpp import mapping201
from csms.ocpp.connection import LoggedConnection
from csms.ocpp.context import ConnectionContext
from csms.ocpp.hot_checks import check_meter_values
from csms.ocpp.parsing import ocpp_time
from csms.services.stations import MeterCall

log = logging.getLogger(__name__)
VERSION = "ocpp2.0.1"

# Read at boot (2.0.1 part 2, SmartChargingCtrlr).
CAPABILITY_VARIABLES = ["Enabled", "RateUnit", "PeriodsPerSchedule", "ProfileStackLevel", "Entries"]


class CentralSystem201(ChargePoint):  # type: ignore[misc]
    """One connected 2.0.1 charging station."""

    def __init__(
        self, charge_point_id: str, connection: LoggedConnection, ctx: ConnectionContext
    ) -> None:
        super().__init__(charge_point_id, connection, response_timeout=30)
        self.ctx = ctx

    def _extra(self, tx: object = None) -> dict[str, Any]:
        return {"charge_point": self.id, "ocpp_version": VERSION, "transaction": tx}

    @on(Action.boot_notification)
    async def on_boot(self, call_unique_id: str, **p: Any) -> call_result.BootNotification:
        await self.ctx.service.booted(self.id, mapping201.boot(p))
        self.ctx.boot_call_id = call_unique_id
        return call_result.BootNotification(
            current_time=ocpp_time(self.ctx.clock.now()),
            interval=self.ctx.heartbeat_interval_s,
            status="Accepted",
        )

    @on(Action.heartbeat, skip_schema_validation=True)  # an empty object: nothing to check
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        await self.ctx.service.seen(self.id)
        return call_result.Heartbeat(current_time=ocpp_time(self.ctx.clock.now()))

    @on(Action.status_notification)
    async def on_status(self, **p: Any) -> call_result.StatusNotification:
        await self.ctx.service.status_changed(self.id, mapping201.status(p, self.ctx.clock.now()))
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_token: dict[str, Any], **_: Any) -> call_result.Authorize:
        status = await self.ctx.service.authorize(id_token.get("id_token"))
        return call_result.Authorize(id_token_info={"status": status})

    @on(Action.transaction_event)
    async def on_transaction_event(self, **p: Any) -> call_result.TransactionEvent:
        ev = mapping201.transaction_event(p, self.ctx.clock.now())
        result = await self.ctx.service.transaction_event(self.id, VERSION, ev)
        log.info(
            "transaction event %s seq %d%s",
            ev.event_type,
            ev.seq_no,
            " (resent)" if result.duplicate else "",
            extra=self._extra(ev.ocpp_id),
        )
        if result.id_token_status is None:
            return call_result.TransactionEvent()
        return call_result.TransactionEvent(id_token_info={"status": result.id_token_status})

    @on(Action.meter_values, skip_schema_validation=True)  # see csms.ocpp.hot_checks
    async def on_meter_values(self, **p: Any) -> call_result.MeterValues:
        check_meter_values(p, VERSION)
        await self.ctx.meters.submit(
            MeterCall(
                self.id,
                int(p.get("evse_id", 0)),
                None,
                mapping201.samples(p.get("meter_value") or [], self.ctx.clock.now()),
            )
        )
        return call_result.MeterValues()

    @on(Action.notify_ev_charging_needs)
    async def on_needs(self, **p: Any) -> call_result.NotifyEVChargingNeeds:
        attached = await self.ctx.service.needs_reported(
            self.id, mapping201.needs(p, self.ctx.clock.now())
        )
        return call_result.NotifyEVChargingNeeds(status="Accepted" if attached else "Rejected")

    @on(Action.notify_charging_limit)
    async def on_notify_charging_limit(self, **_: Any) -> call_result.NotifyChargingLimit:
        return call_result.NotifyChargingLimit()

    @on(Action.report_charging_profiles)
    async def on_report_profiles(self, **_: Any) -> call_result.ReportChargingProfiles:
        return call_result.ReportChargingProfiles()

    @on(Action.notify_report)
    async def on_notify_report(self, **_: Any) -> call_result.NotifyReport:
        return call_result.NotifyReport()

    @on(Action.data_transfer)
    async def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")

    async def read_capabilities(self) -> dict[str, Any]:
        """GetVariables on SmartChargingCtrlr; returns what the station reported."""
        request = [
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": name}}
            for name in CAPABILITY_VARIABLES
        ]
        response = await self.call(call.GetVariables(get_variable_data=request), suppress=False)
        values: dict[str, Any] = {}
        for item in response.get_variable_result or []:
            if item.get("attribute_status") == "Accepted":
                values[item["variable"]["name"]] = item.get("attribute_value")
        return {"ocpp2.0.1": values}
