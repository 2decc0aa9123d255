"""OCPP 2.0.1 central system side: thin handlers, mapping in csms.ocpp.mapping201."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.exceptions import (
    FormatViolationError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)
from ocpp.messages import MessageType, get_validator
from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from ocpp.v201.enums import Action

from csms.domain.events import MeterSample
from csms.ocpp import mapping201
from csms.ocpp.connection import LoggedConnection
from csms.ocpp.context import ConnectionContext
from csms.ocpp.hot_checks import check_meter_values
from csms.ocpp.parsing import ocpp_time
from csms.services.stations import MeterCall

log = logging.getLogger(__name__)
VERSION = "ocpp2.0.1"
T = TypeVar("T")


def _mapped(build: Callable[[], T]) -> T:
    """Map a payload; a value the mapping cannot use is the payload's fault, answered as such
    (OCPP-J §4.3: Type/PropertyConstraintViolation), not as an InternalError of ours: e.g. a
    multiplier of 400, which the schema allows but 10.0**400 overflows."""
    try:
        return build()
    except OverflowError as exc:  # e.g. multiplier 400: 10.0**400
        raise PropertyConstraintViolationError(
            details={"cause": "a value is out of range"}
        ) from exc
    except (ValueError, TypeError, AttributeError) as exc:
        raise TypeConstraintViolationError(details={"cause": "a value has the wrong type"}) from exc


def _snake(name: str) -> str:
    return str(next(iter(camel_to_snake_case({name: None}))))


# MeterValues skip the schema (csms.ocpp.hot_checks checks what we read); what we store must still
# be what the schema allows. Field names, enums and lengths from the schema the package ships.
_SCHEMA = get_validator(MessageType.Call, "MeterValues", "2.0.1").schema
_DEFS = _SCHEMA["definitions"]


def _fields(properties: dict[str, Any]) -> frozenset[str]:
    return frozenset(_snake(k) for k in properties)


_MV_FIELDS = (
    _fields(_SCHEMA["properties"]),
    _fields(_DEFS["MeterValueType"]["properties"]),
    _fields(_DEFS["SampledValueType"]["properties"]),
    _fields(_DEFS["UnitOfMeasureType"]["properties"]),
)
_SAMPLE_ENUMS = {
    _snake(k): frozenset(_DEFS[v["$ref"].rsplit("/", 1)[-1]]["enum"])
    for k, v in _DEFS["SampledValueType"]["properties"].items()
    if "Enum" in v.get("$ref", "")
}
_UNIT_LENGTH = int(_DEFS["UnitOfMeasureType"]["properties"]["unit"]["maxLength"])


def _known_fields(obj: dict[str, Any], fields: frozenset[str], what: str) -> None:
    if not obj.keys() <= fields:
        raise FormatViolationError(details={"cause": f"{what} has an unknown field"})
    if not isinstance(obj.get("custom_data", {}), dict):
        raise TypeConstraintViolationError(details={"cause": "customData is an object"})


def check_meter_fields(p: dict[str, Any]) -> None:
    """After ``check_meter_values``: no field the schema does not have, enum values from its lists,
    unitOfMeasure as the schema has it; answered as the schema would be."""
    top, item, sample, unit_fields = _MV_FIELDS
    _known_fields(p, top, "MeterValues")
    for mv in p["meter_value"]:
        _known_fields(mv, item, "meterValue")
        for sv in mv["sampled_value"]:
            _known_fields(sv, sample, "sampledValue")
            for key in sv.keys() & _SAMPLE_ENUMS.keys():
                if not isinstance(sv[key], str):
                    raise TypeConstraintViolationError(details={"cause": f"{key} is a string"})
                if sv[key] not in _SAMPLE_ENUMS[key]:
                    raise FormatViolationError(details={"cause": f"{key}: not a known value"})
            if not isinstance(sv.get("signed_meter_value", {}), dict):
                raise TypeConstraintViolationError(details={"cause": "signedMeterValue: object"})
            unit = sv.get("unit_of_measure", {})
            if not isinstance(unit, dict):
                raise TypeConstraintViolationError(details={"cause": "unitOfMeasure: object"})
            _known_fields(unit, unit_fields, "unitOfMeasure")
            name, multiplier = unit.get("unit", ""), unit.get("multiplier", 0)
            if not isinstance(name, str) or len(name) > _UNIT_LENGTH:
                raise TypeConstraintViolationError(details={"cause": "unit is string[20]"})
            if not isinstance(multiplier, int) or isinstance(multiplier, bool):
                raise TypeConstraintViolationError(details={"cause": "multiplier: integer"})


def _finite(samples: Iterable[MeterSample]) -> None:
    """A reading times 10^multiplier can overflow to infinity: never store it (it would become the
    transaction's energy register)."""
    if not all(math.isfinite(x.value) for x in samples):
        raise PropertyConstraintViolationError(details={"cause": "a reading is out of range"})


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

    @on(Action.heartbeat, skip_schema_validation=True)  # an empty object: checked here
    async def on_heartbeat(self, **p: Any) -> call_result.Heartbeat:
        _known_fields(p, frozenset({"custom_data"}), "Heartbeat")  # the schema's answers
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
        ev = _mapped(lambda: mapping201.transaction_event(p, self.ctx.clock.now()))
        _finite(ev.samples)
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
        check_meter_fields(p)
        samples = _mapped(lambda: mapping201.samples(p["meter_value"], self.ctx.clock.now()))
        _finite(samples)
        await self.ctx.meters.submit(MeterCall(self.id, int(p.get("evse_id", 0)), None, samples))
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
    async def on_report_profiles(self, **p: Any) -> call_result.ReportChargingProfiles:
        # K09: the answer to our GetChargingProfiles, passed on as on the wire (camelCase).
        self.ctx.service.profiles_reported(self.id, snake_to_camel_case(p))
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
