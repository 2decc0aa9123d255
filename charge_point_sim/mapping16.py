"""OCPP 1.6J payloads <-> the simulator's model. Pure functions, tested without sockets.

Incoming payloads are the snake_case dicts the ``ocpp`` package passes to handlers; outgoing ones
are snake_case dicts the package turns into camelCase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from charge_point_sim.charger_model import ChargerSpec
from charge_point_sim.composite import CompositeSchedule
from charge_point_sim.ev_model import MeterReading
from charge_point_sim.profiles import (
    ChargingProfile,
    Kind,
    Purpose,
    RateUnit,
    Recurrency,
    Schedule,
)
from charge_point_sim.station import Settings
from charge_point_sim.wire import (
    ENERGY,
    PayloadError,
    Sample,
    format_time,
    integer,
    mapping,
    number,
    optional_int,
    optional_time,
    rounded,
    samples,
    schedule_periods,
    unit_of,
    wire_periods,
)

# ChargingScheduleAllowedChargingRateUnit values (1.6 section 9.4.2).
_UNIT_NAMES = {RateUnit.A: "Current", RateUnit.W: "Power"}


def _enum(cls: type[Any], value: object, name: str) -> Any:
    try:
        return cls(value)
    except ValueError as e:
        raise PayloadError(f"{name} {value!r} is not known") from e


def profile_from_16(payload: Mapping[str, Any]) -> ChargingProfile:
    """A 1.6 ``csChargingProfiles`` (snake_case) as a model profile. Raises PayloadError."""
    sched = mapping(payload.get("charging_schedule"), "chargingSchedule")
    periods = schedule_periods(sched)
    min_rate = sched.get("min_charging_rate")
    tx_id = payload.get("transaction_id")
    recurrency = payload.get("recurrency_kind")
    return ChargingProfile(
        id=integer(payload.get("charging_profile_id"), "chargingProfileId"),
        stack_level=integer(payload.get("stack_level"), "stackLevel"),
        purpose=_enum(Purpose, payload.get("charging_profile_purpose"), "chargingProfilePurpose"),
        kind=_enum(Kind, payload.get("charging_profile_kind"), "chargingProfileKind"),
        recurrency=None if recurrency is None else _enum(Recurrency, recurrency, "recurrencyKind"),
        valid_from=optional_time(payload.get("valid_from"), "validFrom"),
        valid_to=optional_time(payload.get("valid_to"), "validTo"),
        transaction_id=None if tx_id is None else str(integer(tx_id, "transactionId")),
        schedule=Schedule(
            unit=_enum(RateUnit, sched.get("charging_rate_unit"), "chargingRateUnit"),
            periods=periods,
            duration_s=optional_int(sched.get("duration"), "duration"),
            start_schedule=optional_time(sched.get("start_schedule"), "startSchedule"),
            min_charging_rate=None if min_rate is None else number(min_rate, "minChargingRate"),
        ),
    )


def remote_start_profile(payload: Mapping[str, Any], transaction_id: str) -> ChargingProfile:
    """The TxProfile of a RemoteStartTransaction, bound to the transaction it started.

    1.6 5.11: the profile comes without a transactionId (there is none yet).
    """
    return replace(profile_from_16(payload), transaction_id=transaction_id)


def composite_to_16(cs: CompositeSchedule) -> dict[str, Any]:
    """The ``chargingSchedule`` of a GetCompositeSchedule.conf (snake_case).

    startPeriod in whole seconds (a period starting within a second takes that second), limits
    rounded down to 0.1, equal neighbours merged.
    """
    periods = wire_periods(cs)
    return {
        "duration": int(cs.duration_s),
        "start_schedule": format_time(cs.start),
        "charging_rate_unit": cs.unit.value,
        "charging_schedule_period": periods,
    }


def meter_value_16(reading: MeterReading) -> dict[str, Any]:
    """One ``meterValue`` entry (values are strings in 1.6)."""
    return {
        "timestamp": format_time(reading.timestamp),
        "sampled_value": [
            {
                "value": _text(s),
                "context": "Sample.Periodic",
                "measurand": s.measurand,
                "location": s.location,
                "unit": s.unit,
            }
            for s in samples(reading)
        ],
    }


def _text(sample: Sample) -> str:
    value = rounded(sample)
    return str(int(value)) if sample.measurand == ENERGY else f"{value:.1f}"


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """A 1.6 configuration key as GetConfiguration reports it."""

    key: str
    value: str
    readonly: bool

    def as_payload(self) -> dict[str, Any]:
        return {"key": self.key, "readonly": self.readonly, "value": self.value}


def configuration(spec: ChargerSpec, settings: Settings) -> list[ConfigKey]:
    """Every configuration key the simulated charger knows (1.6 section 9)."""
    caps = spec.capabilities
    units = ",".join(_UNIT_NAMES[u] for u in (RateUnit.A, RateUnit.W) if u in caps.allowed_units)
    keys = [
        ConfigKey("HeartbeatInterval", str(settings.heartbeat_interval_s), False),
        ConfigKey("MeterValueSampleInterval", str(settings.meter_interval_s), False),
        ConfigKey(
            "MeterValuesSampledData",
            "Energy.Active.Import.Register,Power.Active.Import,Current.Import,SoC",
            True,
        ),
        ConfigKey("NumberOfConnectors", str(len(spec.connectors)), True),
        ConfigKey("ChargeProfileMaxStackLevel", str(caps.max_stack_level), True),
        ConfigKey("ChargingScheduleAllowedChargingRateUnit", units, True),
        ConfigKey("ChargingScheduleMaxPeriods", str(caps.max_periods), True),
        ConfigKey("ConnectorSwitch3to1PhaseSupported", "false", True),
        ConfigKey("SupportedFeatureProfiles", "Core,SmartCharging,RemoteTrigger", True),
    ]
    if caps.max_profiles is not None:
        keys.append(ConfigKey("MaxChargingProfilesInstalled", str(caps.max_profiles), True))
    return keys


def get_configuration(
    spec: ChargerSpec, settings: Settings, requested: Sequence[str] | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """GetConfiguration.conf: the known keys asked for (all when none) and the unknown ones."""
    known = {k.key: k for k in configuration(spec, settings)}
    if not requested:
        return [k.as_payload() for k in known.values()], []
    found = [known[k].as_payload() for k in requested if k in known]
    return found, [k for k in requested if k not in known]


def change_configuration(
    spec: ChargerSpec, settings: Settings, key: str, value: str
) -> tuple[Settings, str]:
    """ChangeConfiguration: the new settings and the status (Accepted, Rejected, NotSupported)."""
    known = {k.key: k for k in configuration(spec, settings)}
    if key not in known:
        return settings, "NotSupported"
    if known[key].readonly:
        return settings, "Rejected"
    try:
        seconds = int(value)
    except ValueError:
        return settings, "Rejected"
    if seconds <= 0:
        return settings, "Rejected"
    if key == "HeartbeatInterval":
        return replace(settings, heartbeat_interval_s=seconds), "Accepted"
    return replace(settings, meter_interval_s=seconds), "Accepted"


def clear_criteria(payload: Mapping[str, Any]) -> dict[str, Any]:
    """ClearChargingProfile.req as keyword arguments of :meth:`Station.clear_profiles`."""
    purpose = payload.get("charging_profile_purpose")
    return {
        "profile_id": optional_int(payload.get("id"), "id"),
        "connector_id": optional_int(payload.get("connector_id"), "connectorId"),
        "purpose": None if purpose is None else _enum(Purpose, purpose, "chargingProfilePurpose"),
        "stack_level": optional_int(payload.get("stack_level"), "stackLevel"),
    }


def transaction_key(transaction_id: int) -> str:
    """The model's transaction id for a 1.6 integer one."""
    return str(transaction_id)


def started_at(reading: MeterReading) -> tuple[int, str]:
    """StartTransaction's meterStart (whole Wh, rounded down) and timestamp."""
    return int(reading.energy_wh), format_time(reading.timestamp)


__all__ = [
    "ConfigKey",
    "change_configuration",
    "clear_criteria",
    "composite_to_16",
    "configuration",
    "get_configuration",
    "meter_value_16",
    "profile_from_16",
    "remote_start_profile",
    "started_at",
    "transaction_key",
    "unit_of",
]
