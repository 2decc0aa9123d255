"""OCPP 2.0.1 payloads <-> the simulator's model. Pure functions, tested without sockets.

Incoming payloads are the snake_case dicts the ``ocpp`` package passes to handlers; outgoing ones
are snake_case dicts the package turns into camelCase. A 2.0.1 EVSE is a model connector; every
simulated EVSE has one connector (connectorId 1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from charge_point_sim.charger_model import ChargerSpec, ChargerState, InstalledProfile
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
    PayloadError,
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

EXTERNAL_CONSTRAINTS = "ChargingStationExternalConstraints"


def _enum(cls: type[Any], value: object, name: str) -> Any:
    try:
        return cls(value)
    except ValueError as e:
        raise PayloadError(f"{name} {value!r} is not known") from e


def profile_from_201(payload: Mapping[str, Any]) -> ChargingProfile:
    """A 2.0.1 ``ChargingProfileType`` (snake_case) as a model profile. Raises PayloadError.

    The simulated station does not speak ISO 15118 schedules, so it takes one chargingSchedule.
    """
    purpose = payload.get("charging_profile_purpose")
    if purpose == EXTERNAL_CONSTRAINTS:
        # K01.FR.22: the CSMS must not set external constraints.
        raise PayloadError(f"{EXTERNAL_CONSTRAINTS} cannot be set by the CSMS")
    schedules = payload.get("charging_schedule")
    if not isinstance(schedules, Sequence) or len(schedules) != 1:
        raise PayloadError("this station takes exactly one chargingSchedule per profile")
    sched = mapping(schedules[0], "chargingSchedule")
    periods = schedule_periods(sched)
    min_rate = sched.get("min_charging_rate")
    tx_id = payload.get("transaction_id")
    recurrency = payload.get("recurrency_kind")
    return ChargingProfile(
        id=integer(payload.get("id"), "id"),
        stack_level=integer(payload.get("stack_level"), "stackLevel"),
        purpose=_enum(Purpose, purpose, "chargingProfilePurpose"),
        kind=_enum(Kind, payload.get("charging_profile_kind"), "chargingProfileKind"),
        recurrency=None if recurrency is None else _enum(Recurrency, recurrency, "recurrencyKind"),
        valid_from=optional_time(payload.get("valid_from"), "validFrom"),
        valid_to=optional_time(payload.get("valid_to"), "validTo"),
        transaction_id=None if tx_id is None else str(tx_id),
        schedule=Schedule(
            unit=_enum(RateUnit, sched.get("charging_rate_unit"), "chargingRateUnit"),
            periods=periods,
            duration_s=optional_int(sched.get("duration"), "duration"),
            start_schedule=optional_time(sched.get("start_schedule"), "startSchedule"),
            min_charging_rate=None if min_rate is None else number(min_rate, "minChargingRate"),
            id=optional_int(sched.get("id"), "chargingSchedule.id"),
        ),
    )


def check_201(state: ChargerState, evse_id: int, profile: ChargingProfile) -> str | None:
    """The 2.0.1 rules the version-neutral validation does not know; None when they hold."""
    if profile.purpose is Purpose.TX and profile.transaction_id is None:
        # K01.FR.03: a TxProfile names its transaction.
        return "a TxProfile needs transactionId"
    for ip in state.profiles:
        other = ip.profile
        if (
            ip.connector_id == evse_id
            and other.id != profile.id
            and other.purpose is profile.purpose
            and other.stack_level == profile.stack_level
        ):
            # K01.FR.39: no two profiles of one purpose and stack level on an EVSE.
            return (
                f"profile {other.id} already has purpose {profile.purpose} and stackLevel "
                f"{profile.stack_level} on EVSE {evse_id}"
            )
    return None


def request_start_profile(payload: Mapping[str, Any], transaction_id: str) -> ChargingProfile:
    """The TxProfile of a RequestStartTransaction, bound to the transaction it starts."""
    return replace(profile_from_201(payload), transaction_id=transaction_id)


def composite_to_201(cs: CompositeSchedule) -> dict[str, Any]:
    """The ``schedule`` (CompositeScheduleType) of a GetCompositeSchedule response.

    startPeriod in whole seconds, limits rounded down to 0.1, equal neighbours merged.
    """
    periods = wire_periods(cs)
    return {
        "evse_id": cs.connector_id,
        "duration": int(cs.duration_s),
        "schedule_start": format_time(cs.start),
        "charging_rate_unit": cs.unit.value,
        "charging_schedule_period": periods,
    }


def profile_to_201(profile: ChargingProfile) -> dict[str, Any]:
    """A model profile as a 2.0.1 ``ChargingProfileType`` (snake_case), as ReportChargingProfiles
    carries it: the inverse of :func:`profile_from_201` (times in UTC)."""
    sched = profile.schedule
    periods: list[dict[str, Any]] = []
    for p in sched.periods:
        period: dict[str, Any] = {"start_period": p.start_period_s, "limit": p.limit}
        if p.number_phases is not None:
            period["number_phases"] = p.number_phases
        periods.append(period)
    schedule: dict[str, Any] = {
        # The schedule id is required on the wire; a profile set without one (never over 2.0.1)
        # reports its profile id.
        "id": profile.id if sched.id is None else sched.id,
        "charging_rate_unit": sched.unit.value,
        "charging_schedule_period": periods,
    }
    if sched.start_schedule is not None:
        schedule["start_schedule"] = format_time(sched.start_schedule)
    if sched.duration_s is not None:
        schedule["duration"] = sched.duration_s
    if sched.min_charging_rate is not None:
        schedule["min_charging_rate"] = sched.min_charging_rate
    out: dict[str, Any] = {
        "id": profile.id,
        "stack_level": profile.stack_level,
        "charging_profile_purpose": purpose_201(profile.purpose),
        "charging_profile_kind": profile.kind.value,
        "charging_schedule": [schedule],
    }
    if profile.recurrency is not None:
        out["recurrency_kind"] = profile.recurrency.value
    if profile.valid_from is not None:
        out["valid_from"] = format_time(profile.valid_from)
    if profile.valid_to is not None:
        out["valid_to"] = format_time(profile.valid_to)
    if profile.transaction_id is not None:
        out["transaction_id"] = profile.transaction_id
    return out


def purpose_201(purpose: Purpose) -> str:
    """The 2.0.1 wire name of a purpose (ChargePointMaxProfile is ChargingStationMaxProfile)."""
    return "ChargingStationMaxProfile" if purpose is Purpose.CHARGE_POINT_MAX else purpose.value


# K01: a profile installed with SetChargingProfile has charging limit source CSO (the operator's
# central system); the simulator knows no other source (no EMS, no local limits).
CSO = "CSO"


def matching_profiles(
    state: ChargerState, evse_id: int | None, criteria: Mapping[str, Any]
) -> list[InstalledProfile]:
    """The installed profiles a GetChargingProfilesRequest asks for, by EVSE then id.

    K09: ``evse_id`` None means every EVSE and the station (0); 0 means the profiles installed on
    the station itself; N those on EVSE N. Of the criteria, ``charging_profile_id`` (a list)
    identifies profiles uniquely, so when it is given the purpose and stack level are not looked
    at (K09.FR.03 has the central system send either ids or the other fields);
    ``charging_limit_source`` must include CSO, the source of every profile here.
    """
    sources = criteria.get("charging_limit_source")
    if sources is not None and CSO not in sources:
        return []
    ids = criteria.get("charging_profile_id")
    purpose = criteria.get("charging_profile_purpose")
    stack = criteria.get("stack_level")
    if purpose == EXTERNAL_CONSTRAINTS:
        return []  # never set by a CSMS (K01.FR.22), so never installed here
    want = None if purpose is None else _enum(Purpose, purpose, "chargingProfilePurpose")

    def matches(ip: InstalledProfile) -> bool:
        if evse_id is not None and ip.connector_id != evse_id:
            return False
        if ids is not None:
            return ip.profile.id in ids
        return (want is None or ip.profile.purpose is want) and (
            stack is None or ip.profile.stack_level == stack
        )

    return sorted(
        (ip for ip in state.profiles if matches(ip)),
        key=lambda ip: (ip.connector_id, ip.profile.id),
    )


def charging_profile_reports(
    request_id: int, state: ChargerState, evse_id: int | None, criteria: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The ReportChargingProfilesRequest payloads answering a GetChargingProfilesRequest.

    One per EVSE (a report names one ``evseId``) in ascending order, all with the request's
    ``requestId`` (K09.FR.01) and source CSO; ``tbc`` is true on all but the last. Empty when
    nothing matches: the station then answers NoProfiles and sends no report.
    """
    by_evse: dict[int, list[dict[str, Any]]] = {}
    for ip in matching_profiles(state, evse_id, criteria):
        by_evse.setdefault(ip.connector_id, []).append(profile_to_201(ip.profile))
    last = len(by_evse) - 1
    return [
        {
            "request_id": request_id,
            "charging_limit_source": CSO,
            "evse_id": evse,
            "charging_profile": profiles,
            "tbc": i < last,
        }
        for i, (evse, profiles) in enumerate(by_evse.items())
    ]


def meter_value_201(reading: MeterReading, context: str = "Sample.Periodic") -> dict[str, Any]:
    """One ``MeterValueType`` (values are numbers in 2.0.1)."""
    return {
        "timestamp": format_time(reading.timestamp),
        "sampled_value": [
            {
                "value": rounded(s),
                "context": context,
                "measurand": s.measurand,
                "location": s.location,
                "unit_of_measure": {"unit": s.unit},
            }
            for s in samples(reading)
        ],
    }


def clear_criteria(
    charging_profile_id: int | None, criteria: Mapping[str, Any] | None
) -> dict[str, Any]:
    """ClearChargingProfile as keyword arguments of :meth:`Station.clear_profiles`."""
    c = criteria or {}
    purpose = c.get("charging_profile_purpose")
    return {
        "profile_id": charging_profile_id,
        "connector_id": optional_int(c.get("evse_id"), "evseId"),
        "purpose": None if purpose is None else _enum(Purpose, purpose, "chargingProfilePurpose"),
        "stack_level": optional_int(c.get("stack_level"), "stackLevel"),
    }


# -- device model (GetVariables / SetVariables) -----------------------------------------------

_Getter = Callable[[ChargerSpec, Settings], str]
_Setter = Callable[[Settings, str], Settings | None]


def _units(spec: ChargerSpec, _: Settings) -> str:
    allowed = spec.capabilities.allowed_units
    return ",".join(u.value for u in (RateUnit.A, RateUnit.W) if u in allowed)


def _positive_int(value: str) -> int | None:
    try:
        n = int(value)
    except ValueError:
        return None
    return n if n > 0 else None


def _set_heartbeat(s: Settings, v: str) -> Settings | None:
    n = _positive_int(v)
    return None if n is None else replace(s, heartbeat_interval_s=n)


def _set_meter(s: Settings, v: str) -> Settings | None:
    n = _positive_int(v)
    return None if n is None else replace(s, meter_interval_s=n)


def _set_enabled(s: Settings, v: str) -> Settings | None:
    if v.lower() not in ("true", "false"):
        return None
    return replace(s, smart_charging_enabled=v.lower() == "true")


# (component, variable) -> (getter, setter or None when ReadOnly)
VARIABLES: dict[tuple[str, str], tuple[_Getter, _Setter | None]] = {
    ("OCPPCommCtrlr", "HeartbeatInterval"): (
        lambda _, s: str(s.heartbeat_interval_s),
        _set_heartbeat,
    ),
    ("SampledDataCtrlr", "TxUpdatedInterval"): (
        lambda _, s: str(s.meter_interval_s),
        _set_meter,
    ),
    ("SmartChargingCtrlr", "Enabled"): (
        lambda _, s: str(s.smart_charging_enabled).lower(),
        _set_enabled,
    ),
    ("SmartChargingCtrlr", "Available"): (lambda sp, _: "true", None),
    ("SmartChargingCtrlr", "RateUnit"): (_units, None),
    ("SmartChargingCtrlr", "PeriodsPerSchedule"): (
        lambda sp, _: str(sp.capabilities.max_periods),
        None,
    ),
    ("SmartChargingCtrlr", "ProfileStackLevel"): (
        lambda sp, _: str(sp.capabilities.max_stack_level),
        None,
    ),
    ("SmartChargingCtrlr", "Entries"): (
        lambda sp, _: str(sp.capabilities.max_profiles or 0),
        None,
    ),
    ("SmartChargingCtrlr", "PhaseSwitchingSupported"): (lambda sp, _: "false", None),
    ("ChargingStation", "EVSECount"): (lambda sp, _: str(len(sp.connectors)), None),
}
_COMPONENTS = {c for c, _ in VARIABLES}


def _lookup(item: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    component = mapping(item.get("component"), "component")
    variable = mapping(item.get("variable"), "variable")
    status: dict[str, Any] = {"component": dict(component), "variable": dict(variable)}
    return str(component.get("name")), str(variable.get("name")), status


def _unknown(component: str, variable: str) -> str | None:
    if component not in _COMPONENTS:
        return "UnknownComponent"
    if (component, variable) not in VARIABLES:
        return "UnknownVariable"
    return None


def _prelude(item: Mapping[str, Any]) -> tuple[str, str, dict[str, Any], str | None]:
    """Component, variable, the result being built, and a refusal status if one applies."""
    component, variable, result = _lookup(item)
    attribute = item.get("attribute_type", "Actual")
    if attribute != "Actual":
        result["attribute_type"] = attribute
    status = _unknown(component, variable)
    if status is None and attribute != "Actual":
        status = "NotSupportedAttributeType"
    return component, variable, result, status


def get_variables(
    spec: ChargerSpec, settings: Settings, data: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """GetVariables: one ``GetVariableResultType`` per requested item (Actual values only)."""
    results = []
    for item in data:
        component, variable, result, status = _prelude(item)
        if status is None:
            getter, _ = VARIABLES[(component, variable)]
            result["attribute_value"] = getter(spec, settings)
            status = "Accepted"
        result["attribute_status"] = status
        results.append(result)
    return results


def set_variables(
    settings: Settings, data: Sequence[Mapping[str, Any]]
) -> tuple[Settings, list[dict[str, Any]]]:
    """SetVariables: the new settings and one ``SetVariableResultType`` per item."""
    results = []
    for item in data:
        component, variable, result, status = _prelude(item)
        if status is None:
            _, setter = VARIABLES[(component, variable)]
            changed = None if setter is None else setter(settings, str(item.get("attribute_value")))
            if changed is None:
                status = "Rejected"
            else:
                settings, status = changed, "Accepted"
        result["attribute_status"] = status
        results.append(result)
    return settings, results


__all__ = [
    "CSO",
    "VARIABLES",
    "charging_profile_reports",
    "check_201",
    "clear_criteria",
    "composite_to_201",
    "get_variables",
    "matching_profiles",
    "meter_value_201",
    "profile_from_201",
    "profile_to_201",
    "purpose_201",
    "request_start_profile",
    "set_variables",
    "unit_of",
]
