"""OCPP 1.6J central system side: thin handlers, mapping in csms.ocpp.mapping16."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import FormatViolationError, TypeConstraintViolationError
from ocpp.messages import MessageType, get_validator
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


def _snake(name: str) -> str:
    return str(next(iter(camel_to_snake_case({name: None}))))


def _fields(properties: dict[str, Any]) -> frozenset[str]:
    return frozenset(_snake(k) for k in properties)


# MeterValues skip the schema (csms.ocpp.hot_checks checks what we read); what we store must still
# be what the schema allows. Field names and enums straight from the schema the package ships.
_MV = get_validator(MessageType.Call, "MeterValues", "1.6").schema["properties"]
_MV_ITEM = _MV["meterValue"]["items"]["properties"]
_SAMPLE = _MV_ITEM["sampledValue"]["items"]["properties"]
_MV_FIELDS = (_fields(_MV), _fields(_MV_ITEM), _fields(_SAMPLE))
_SAMPLE_ENUMS = {_snake(k): frozenset(v["enum"]) for k, v in _SAMPLE.items() if "enum" in v}


def check_meter_fields(p: dict[str, Any]) -> None:
    """After ``check_meter_values``: no field the schema does not have, enum values from its lists;
    answered as the schema would be (FormationViolation, TypeConstraintViolation)."""
    top, item, sample = _MV_FIELDS
    if not p.keys() <= top:
        raise FormatViolationError(details={"cause": "MeterValues has an unknown field"})
    if p.get("transaction_id", 0) is None:  # an absent field is left out, never null (OCPP-J)
        raise TypeConstraintViolationError(details={"cause": "transactionId is an integer"})
    for mv in p["meter_value"]:
        if not mv.keys() <= item:
            raise FormatViolationError(details={"cause": "meterValue has an unknown field"})
        for sv in mv["sampled_value"]:
            if not sv.keys() <= sample:
                raise FormatViolationError(details={"cause": "sampledValue has an unknown field"})
            for key in sv.keys() & _SAMPLE_ENUMS.keys():
                if not isinstance(sv[key], str):
                    raise TypeConstraintViolationError(details={"cause": f"{key} is a string"})
                if sv[key] not in _SAMPLE_ENUMS[key]:
                    raise FormatViolationError(details={"cause": f"{key}: not a known value"})


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

    @on(Action.heartbeat, skip_schema_validation=True)  # an empty object: checked here
    async def on_heartbeat(self, **p: Any) -> call_result.Heartbeat:
        if p:  # the schema's answer to any field: additionalProperties is false
            raise FormatViolationError(details={"cause": "Heartbeat has no fields"})
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
        check_meter_fields(p)
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
