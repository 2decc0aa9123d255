"""OCPP 1.6J central system side: thin handlers, mapping in csms.ocpp.mapping16."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, DataTransferStatus, RegistrationStatus

from csms.ocpp import mapping16
from csms.ocpp.connection import LoggedConnection
from csms.ocpp.context import ConnectionContext
from csms.ocpp.hot_checks import check_meter_values
from csms.ocpp.parsing import ocpp_time
from csms.services.stations import MeterCall

log = logging.getLogger(__name__)
VERSION = "ocpp1.6"

# Read at boot (OCPP 1.6 §9.1, smart charging keys).
CAPABILITY_KEYS = [
    "ChargeProfileMaxStackLevel",
    "ChargingScheduleAllowedChargingRateUnit",
    "ChargingScheduleMaxPeriods",
    "MaxChargingProfilesInstalled",
    "NumberOfConnectors",
]


class CentralSystem16(ChargePoint):  # type: ignore[misc]
    """One connected 1.6 charge point."""

    def __init__(
        self, charge_point_id: str, connection: LoggedConnection, ctx: ConnectionContext
    ) -> None:
        super().__init__(charge_point_id, connection, response_timeout=30)
        self.ctx = ctx

    def _extra(self, tx: object = None) -> dict[str, Any]:
        return {"charge_point": self.id, "ocpp_version": VERSION, "transaction": tx}

    @on(Action.boot_notification)
    async def on_boot(self, call_unique_id: str, **p: Any) -> call_result.BootNotification:
        await self.ctx.service.booted(self.id, mapping16.boot(p))
        self.ctx.boot_call_id = call_unique_id
        return call_result.BootNotification(
            current_time=ocpp_time(self.ctx.clock.now()),
            interval=self.ctx.heartbeat_interval_s,
            status=RegistrationStatus.accepted,
        )

    @on(Action.heartbeat, skip_schema_validation=True)  # an empty object: nothing to check
    async def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        await self.ctx.service.seen(self.id)
        return call_result.Heartbeat(current_time=ocpp_time(self.ctx.clock.now()))

    @on(Action.status_notification)
    async def on_status(self, **p: Any) -> call_result.StatusNotification:
        await self.ctx.service.status_changed(self.id, mapping16.status(p, self.ctx.clock.now()))
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str, **_: Any) -> call_result.Authorize:
        status = await self.ctx.service.authorize(id_tag)
        return call_result.Authorize(id_tag_info={"status": status})

    @on(Action.start_transaction)
    async def on_start(self, **p: Any) -> call_result.StartTransaction:
        result = await self.ctx.service.start_transaction(
            self.id, VERSION, mapping16.start(p, self.ctx.clock.now())
        )
        log.info(
            "transaction started%s",
            " (resent)" if result.duplicate else "",
            extra=self._extra(result.transaction_id),
        )
        return call_result.StartTransaction(
            transaction_id=result.transaction_id, id_tag_info={"status": result.id_tag_status}
        )

    @on(Action.stop_transaction)
    async def on_stop(self, **p: Any) -> call_result.StopTransaction:
        end = mapping16.stop(p, self.ctx.clock.now())
        known = await self.ctx.service.stop_transaction(self.id, end)
        if not known:
            log.warning(
                "StopTransaction for an unknown transaction", extra=self._extra(end.ocpp_id)
            )
        log.info("transaction stopped", extra=self._extra(end.ocpp_id))
        if p.get("id_tag"):
            status = await self.ctx.service.authorize(p["id_tag"])
            return call_result.StopTransaction(id_tag_info={"status": status})
        return call_result.StopTransaction()

    @on(Action.meter_values, skip_schema_validation=True)  # see csms.ocpp.hot_checks
    async def on_meter_values(self, **p: Any) -> call_result.MeterValues:
        check_meter_values(p, VERSION)
        tx = p.get("transaction_id")
        await self.ctx.meters.submit(
            MeterCall(
                self.id,
                int(p["connector_id"]),  # 1.6 connector N is EVSE N; checked above
                None if tx is None else str(tx),
                mapping16.samples(p.get("meter_value") or [], self.ctx.clock.now()),
            )
        )
        return call_result.MeterValues()

    @on(Action.data_transfer)
    async def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        # No vendor extensions are handled (1.6 §4.3): say so, as the spec asks.
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    async def read_capabilities(self) -> dict[str, Any]:
        """GetConfiguration for the smart-charging keys; returns what the charger reported."""
        response = await self.call(call.GetConfiguration(key=CAPABILITY_KEYS), suppress=False)
        values = {
            item["key"]: item.get("value")
            for item in (response.configuration_key or [])
            if isinstance(item, dict) and "key" in item
        }
        return {"ocpp1.6": values, "unknown_keys": list(response.unknown_key or [])}
