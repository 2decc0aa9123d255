"""The pure profile builder (issue 5, "Profile building"): per version, per charger capability, and
every payload checked by the ``ocpp`` package exactly as the gateway sends it (camelCase → the
package's request dataclass → camelCase → JSON-schema validation)."""

from __future__ import annotations

import asyncio
import copy
import itertools
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, validate_payload
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from csms.domain.events import OcppVersion
from csms.domain.profiles import (
    ChargerCapabilities,
    ChargerLimits,
    PowerSchedule,
    capabilities_from_stored,
)
from csms.services.profile_builder import (
    ProfileBuildError,
    build_tx_default_profile,
    build_tx_profile,
    limit_in_unit,
    limit_to_watts,
    ocpp_version,
    refresh_at,
    same_profile,
)

V16, V201 = OcppVersion.V16, OcppVersion.V201
VERSIONS = [V16, V201]
NOW = datetime(2026, 1, 5, 8, 7, 30, 250_000, tzinfo=UTC)
PLAN_START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
WATTS = ChargerCapabilities(allowed_units=frozenset({"A", "W"}), max_periods=24, max_stack_level=3)
AMPS = ChargerCapabilities(allowed_units=frozenset({"A"}), max_periods=24, max_stack_level=3)
THREE = ChargerLimits(phases=3, voltage_v=230.0)
ONE = ChargerLimits(phases=1, voltage_v=230.0)


# --- the ocpp package as judge ----------------------------------------------------------------


def on_the_wire(payload: dict[str, Any], version: OcppVersion) -> dict[str, Any]:
    """What the gateway would put on the wire for this payload; raises if the package rejects it."""
    module = call16 if version is V16 else call201
    request = module.SetChargingProfile(**camel_to_snake_case(copy.deepcopy(payload)))
    wire: dict[str, Any] = remove_nones(snake_to_camel_case(serialize_as_dict(request)))
    message = Call(unique_id="1", action="SetChargingProfile", payload=copy.deepcopy(wire))
    asyncio.run(validate_payload(message, "1.6" if version is V16 else "2.0.1"))
    return wire


def valid(payload: dict[str, Any], version: OcppVersion) -> dict[str, Any]:
    """Validated, unchanged by the round trip, and with at most one decimal on every limit."""
    assert on_the_wire(payload, version) == payload
    sched = schedule_of(payload)
    for period in sched["chargingSchedulePeriod"]:
        text = repr(period["limit"])
        assert "e" not in text
        assert len(text.partition(".")[2]) <= 1, text
    return payload


def schedule_of(payload: dict[str, Any]) -> dict[str, Any]:
    if "csChargingProfiles" in payload:
        result: dict[str, Any] = payload["csChargingProfiles"]["chargingSchedule"]
        return result
    schedules: list[dict[str, Any]] = payload["chargingProfile"]["chargingSchedule"]
    assert len(schedules) == 1
    return schedules[0]


def profile_of(payload: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = payload.get("csChargingProfiles") or payload["chargingProfile"]
    return result


def limits_of(payload: dict[str, Any]) -> list[tuple[int, float]]:
    return [(p["startPeriod"], p["limit"]) for p in schedule_of(payload)["chargingSchedulePeriod"]]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_judge_rejects_what_the_package_rejects(version: OcppVersion) -> None:
    good = build(version, [7000.0])
    valid(good, version)
    extra = copy.deepcopy(good)
    profile_of(extra)["surprise"] = 1
    with pytest.raises((OCPPError, TypeError)):
        on_the_wire(extra, version)
    missing = copy.deepcopy(good)
    del schedule_of(missing)["chargingRateUnit"]
    with pytest.raises((OCPPError, TypeError)):
        on_the_wire(missing, version)
    if version is V16:  # the 1.6 schema asks for multiples of 0.1, checked with Decimal
        finer = copy.deepcopy(good)
        schedule_of(finer)["chargingSchedulePeriod"][0]["limit"] = 7.35
        with pytest.raises(OCPPError):
            on_the_wire(finer, version)


def build(
    version: OcppVersion,
    watts: list[float],
    *,
    now: datetime = NOW,
    start: datetime = PLAN_START,
    step_s: int = 900,
    capabilities: ChargerCapabilities = WATTS,
    limits: ChargerLimits = THREE,
    transaction_id: int | str = 42,
    stack_level: int = 1,
) -> dict[str, Any]:
    return build_tx_profile(
        PowerSchedule(start, step_s, tuple(watts)),
        now=now,
        version=version,
        transaction_id=transaction_id,
        evse_or_connector_id=2,
        capabilities=capabilities,
        limits=limits,
        profile_id=7,
        stack_level=stack_level,
    )


# --- capabilities as stored at boot -----------------------------------------------------------


def test_capabilities_1_6() -> None:
    caps = capabilities_from_stored(
        {
            "ocpp1.6": {
                "ChargeProfileMaxStackLevel": "3",
                "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
                "ChargingScheduleMaxPeriods": "24",
                "MaxChargingProfilesInstalled": "10",
            },
            "unknown_keys": [],
        }
    )
    assert caps == ChargerCapabilities(frozenset({"A", "W"}), 24, 3, True)
    assert caps.preferred_unit == "W"


def test_capabilities_2_0_1() -> None:
    stored = {
        "ocpp2.0.1": {
            "RateUnit": "A,W",
            "PeriodsPerSchedule": "24",
            "ProfileStackLevel": "8",
            "Enabled": "true",
        }
    }
    assert capabilities_from_stored(stored) == ChargerCapabilities(frozenset({"A", "W"}), 24, 8)
    stored["ocpp2.0.1"]["Enabled"] = "False"
    assert not capabilities_from_stored(stored).enabled


@pytest.mark.parametrize(
    ("value", "units"),
    [
        ("Current", {"A"}),
        ("Power", {"W"}),
        (" current , POWER ", {"A", "W"}),
        ("Current;Power", {"A", "W"}),
        ("W", {"W"}),
        ("A", {"A"}),
        (["A", "W"], {"A", "W"}),
        ("Volts", {"A"}),
        ("", {"A"}),
        (None, {"A"}),
        (12, {"A"}),
    ],
)
def test_capability_units_are_read_tolerantly(value: object, units: set[str]) -> None:
    v16 = capabilities_from_stored({"ocpp1.6": {"ChargingScheduleAllowedChargingRateUnit": value}})
    v201 = capabilities_from_stored({"ocpp2.0.1": {"RateUnit": value}})
    assert v16.allowed_units == v201.allowed_units == units


@pytest.mark.parametrize(
    ("periods", "stack", "want_periods", "want_stack"),
    [
        ("24", "3", 24, 3),
        (" 5 ", "0", 5, 0),
        ("24.0", 6, 24, 6),
        (10, 2.0, 10, 2),
        ("0", "-1", 20, 0),
        ("-4", "x", 20, 0),
        ("lots", None, 20, 0),
        (None, True, 20, 0),
        ("2.5", "1.5", 20, 0),
        ("100000", "nan", 1024, 0),
        ([], {}, 20, 0),
    ],
)
def test_capability_numbers_fall_back_to_conservative_defaults(
    periods: object, stack: object, want_periods: int, want_stack: int
) -> None:
    for stored in (
        {"ocpp1.6": {"ChargingScheduleMaxPeriods": periods, "ChargeProfileMaxStackLevel": stack}},
        {"ocpp2.0.1": {"PeriodsPerSchedule": periods, "ProfileStackLevel": stack}},
    ):
        caps = capabilities_from_stored(stored)
        assert (caps.max_periods, caps.max_stack_level) == (want_periods, want_stack)


@pytest.mark.parametrize("stored", [None, {}, [], "ocpp1.6", {"ocpp1.6": "x"}, {"other": {}}])
def test_nothing_readable_gives_the_defaults(stored: object) -> None:
    caps = capabilities_from_stored(stored)
    assert caps == ChargerCapabilities()
    assert (caps.allowed_units, caps.max_periods, caps.max_stack_level, caps.enabled) == (
        frozenset({"A"}),
        20,
        0,
        True,
    )
    assert caps.preferred_unit == "A"


def test_a_charger_that_changed_version_gets_the_stricter_of_both() -> None:
    stored = {
        "ocpp1.6": {
            "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
            "ChargingScheduleMaxPeriods": "24",
            "ChargeProfileMaxStackLevel": "3",
        },
        "ocpp2.0.1": {"RateUnit": "W", "PeriodsPerSchedule": "10", "ProfileStackLevel": "8"},
    }
    assert capabilities_from_stored(stored) == ChargerCapabilities(frozenset({"W"}), 10, 3)
    assert capabilities_from_stored(stored, "ocpp1.6").max_periods == 24
    assert capabilities_from_stored(stored, "2.0.1").max_stack_level == 8
    assert capabilities_from_stored(stored, "ocpp9") == ChargerCapabilities()


def test_value_types_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="phases"):
        ChargerLimits(phases=4)
    with pytest.raises(ValueError, match="voltage"):
        ChargerLimits(voltage_v=0)
    with pytest.raises(ValueError, match="min_current"):
        ChargerLimits(min_current_a=-1)
    with pytest.raises(ValueError, match="max_power"):
        ChargerLimits(max_power_w=float("nan"))
    with pytest.raises(ValueError, match="allowed_units"):
        ChargerCapabilities(allowed_units=frozenset())
    with pytest.raises(ValueError, match="max_periods"):
        ChargerCapabilities(max_periods=0)
    with pytest.raises(ValueError, match="max_stack_level"):
        ChargerCapabilities(max_stack_level=-1)
    with pytest.raises(ValueError, match="aware"):
        PowerSchedule(datetime(2026, 1, 5), 900, (1.0,))
    with pytest.raises(ValueError, match="whole second"):
        PowerSchedule(NOW, 900, (1.0,))
    with pytest.raises(ValueError, match="step_s"):
        PowerSchedule(PLAN_START, 0, (1.0,))
    with pytest.raises(ValueError, match=r"watts\[1\]"):
        PowerSchedule(PLAN_START, 900, (1.0, -2.0))
    schedule = PowerSchedule(PLAN_START, 900, [1.0, 2.0])  # type: ignore[arg-type]
    assert schedule.watts == (1.0, 2.0)
    assert schedule.end == PLAN_START + timedelta(minutes=30)
    assert schedule.watts_at(PLAN_START + timedelta(minutes=20)) == 2.0
    assert schedule.watts_at(schedule.end) is None
    assert ChargerLimits().min_power_w == 6 * 3 * 230


# --- one limit: unit, truncation, minimum -----------------------------------------------------


@pytest.mark.parametrize(
    ("watts", "limits", "unit", "expected"),
    [
        (1700.0, ONE, "A", 7.3),  # 7.391 A → 7.3, never 7.4
        (5100.0, THREE, "A", 7.3),  # 5100 / 690 = 7.391
        (7.39 * 690, THREE, "A", 7.3),
        (5106.0, THREE, "A", 7.4),  # exactly 7.4 A stays 7.4 (no float loss)
        (7.4 * 230, ONE, "A", 7.4),
        (4139.99, THREE, "A", 0.0),  # 5.99 A < 6 A → 0
        (4140.0, THREE, "A", 6.0),
        (1379.0, ONE, "A", 0.0),
        (1380.0, ONE, "A", 6.0),
        (22080.0, THREE, "A", 32.0),
        (7390.99, THREE, "W", 7390.9),
        (7390.95, ONE, "W", 7390.9),
        (4139.99, THREE, "W", 0.0),  # below 6 A × 3 × 230 W → 0
        (4140.0, THREE, "W", 4140.0),
        (1379.99, ONE, "W", 0.0),
        (1380.0, ONE, "W", 1380.0),
        (0.0, THREE, "W", 0.0),
        (50_000.0, ChargerLimits(max_power_w=11_000.0), "W", 11_000.0),
        (50_000.0, ChargerLimits(max_power_w=11_000.0), "A", 15.9),  # 15.94 A
        (300.0, ChargerLimits(min_current_a=0.0), "A", 0.4),
    ],
)
def test_limit_in_unit(watts: float, limits: ChargerLimits, unit: str, expected: float) -> None:
    assert limit_in_unit(watts, unit=unit, limits=limits) == expected  # type: ignore[arg-type]


def test_limit_to_watts() -> None:
    assert limit_to_watts(7.3, unit="A", limits=THREE) == pytest.approx(5037.0)
    assert limit_to_watts(7.3, unit="A", limits=ONE) == pytest.approx(1679.0)
    assert limit_to_watts(5037.0, unit="W", limits=THREE) == 5037.0
    with pytest.raises(ProfileBuildError):
        limit_in_unit(-1.0, unit="W", limits=THREE)


# --- whole TxProfiles -------------------------------------------------------------------------


def test_tx_profile_1_6_in_watts() -> None:
    payload = build(V16, [11_000.0, 11_000.0, 7390.99, 0.0], transaction_id="42")
    assert valid(payload, V16) == {
        "connectorId": 2,
        "csChargingProfiles": {
            "chargingProfileId": 7,
            "transactionId": 42,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": "2026-01-05T08:06:30Z",
                "duration": 3600 - 390,  # to the plan's end (09:00) from 08:06:30
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3},
                    {"startPeriod": 1800 - 390, "limit": 7390.9, "numberPhases": 3},
                    {"startPeriod": 2700 - 390, "limit": 0.0, "numberPhases": 3},
                ],
            },
        },
    }


def test_tx_profile_2_0_1_in_watts() -> None:
    payload = build(V201, [11_000.0, 11_000.0, 7390.99, 0.0], transaction_id=42)
    assert valid(payload, V201) == {
        "evseId": 2,
        "chargingProfile": {
            "id": 7,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "transactionId": "42",
            "chargingSchedule": [
                {
                    "id": 7,
                    "startSchedule": "2026-01-05T08:06:30Z",
                    "duration": 3210,
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [
                        {"startPeriod": 0, "limit": 11000.0, "numberPhases": 3},
                        {"startPeriod": 1410, "limit": 7390.9, "numberPhases": 3},
                        {"startPeriod": 2310, "limit": 0.0, "numberPhases": 3},
                    ],
                }
            ],
        },
    }


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("limits", "watts", "amps"),
    [
        (THREE, [22_080.0, 5100.0, 4139.0], [32.0, 7.3, 0.0]),
        (ONE, [7360.0, 1700.0, 1379.0], [32.0, 7.3, 0.0]),
        (ChargerLimits(phases=3, voltage_v=240.0), [5039.0, 4320.0], [6.9, 6.0]),
    ],
)
def test_tx_profile_in_amps_per_phase(
    version: OcppVersion, limits: ChargerLimits, watts: list[float], amps: list[float]
) -> None:
    payload = valid(build(version, watts, capabilities=AMPS, limits=limits), version)
    sched = schedule_of(payload)
    assert sched["chargingRateUnit"] == "A"
    assert [p["limit"] for p in sched["chargingSchedulePeriod"]] == amps
    assert {p["numberPhases"] for p in sched["chargingSchedulePeriod"]} == {limits.phases}


@pytest.mark.parametrize("version", VERSIONS)
def test_watts_only_charger_gets_watts(version: OcppVersion) -> None:
    caps = ChargerCapabilities(allowed_units=frozenset({"W"}))
    payload = valid(build(version, [5100.0], capabilities=caps), version)
    assert schedule_of(payload)["chargingRateUnit"] == "W"
    assert limits_of(payload) == [(0, 5100.0)]


@pytest.mark.parametrize("version", VERSIONS)
def test_start_schedule_is_a_minute_ago_in_utc_with_z(version: OcppVersion) -> None:
    paris = timezone(timedelta(hours=1))
    now = datetime(2026, 1, 5, 9, 7, 30, 999_999, tzinfo=paris)  # 08:07:30.999999Z
    payload = valid(build(version, [7000.0, 7000.0], now=now), version)
    assert schedule_of(payload)["startSchedule"] == "2026-01-05T08:06:30Z"
    with pytest.raises(ProfileBuildError, match="aware"):
        build(version, [7000.0], now=datetime(2026, 1, 5, 8, 7))


@pytest.mark.parametrize("version", VERSIONS)
def test_equal_periods_are_merged_also_after_conversion(version: OcppVersion) -> None:
    watts = [7000.0, 7000.0, 3000.0, 3000.0, 7000.0, 5100.0, 5105.0, 5037.0]
    payload = valid(build(version, watts, capabilities=AMPS, now=PLAN_START), version)
    # 7000/690 = 10.14 → 10.1; 3000/690 = 4.3 A < 6 A → 0; 5100, 5105, 5037 W all give 7.3 A.
    offsets = [p for p, _ in limits_of(payload)]
    assert [limit for _, limit in limits_of(payload)] == [10.1, 0.0, 10.1, 7.3]
    assert offsets == [0, 60 + 1800, 60 + 3600, 60 + 4500]
    assert schedule_of(payload)["duration"] == 60 + 8 * 900


@pytest.mark.parametrize("version", VERSIONS)
def test_steps_already_over_are_dropped(version: OcppVersion) -> None:
    watts = [11_000.0, 9000.0, 7000.0]
    now = PLAN_START + timedelta(minutes=16)  # in the second step
    payload = valid(build(version, watts, now=now), version)
    assert limits_of(payload) == [(0, 9000.0), (60 + 14 * 60, 7000.0)]
    assert schedule_of(payload)["duration"] == 60 + 29 * 60


@pytest.mark.parametrize("version", VERSIONS)
def test_a_plan_that_starts_later_gets_zero_until_then(version: OcppVersion) -> None:
    start = datetime(2026, 1, 5, 8, 15, tzinfo=UTC)  # NOW is 08:07:30.25
    payload = valid(build(version, [7000.0, 8000.0], start=start), version)
    assert limits_of(payload) == [(0, 0.0), (510, 7000.0), (510 + 900, 8000.0)]
    assert schedule_of(payload)["duration"] == 510 + 1800


@pytest.mark.parametrize("version", VERSIONS)
def test_a_schedule_that_is_over_is_refused(version: OcppVersion) -> None:
    with pytest.raises(ProfileBuildError, match="re-plan"):
        build(version, [7000.0], step_s=60)
    with pytest.raises(ProfileBuildError, match="re-plan"):
        build(version, [])


@pytest.mark.parametrize("version", VERSIONS)
def test_max_periods_sends_the_first_ones_then_the_rest_s_minimum(version: OcppVersion) -> None:
    caps = ChargerCapabilities(frozenset({"W"}), max_periods=4)
    watts = [10_000.0, 9000.0, 8000.0, 7000.0, 5000.0, 6000.0, 11_000.0]
    schedule = PowerSchedule(PLAN_START, 900, tuple(watts))
    payload = valid(build(version, watts, capabilities=caps, now=PLAN_START), version)
    assert limits_of(payload) == [(0, 10_000.0), (960, 9000.0), (1860, 8000.0), (2760, 5000.0)]
    assert schedule_of(payload)["duration"] == 60 + 7 * 900  # still to the plan's end
    when = refresh_at(schedule, now=PLAN_START, capabilities=caps, limits=THREE)
    assert when == PLAN_START + timedelta(minutes=45)  # where 7000 W would have begun
    # With room for everything, the profile follows the plan to its end.
    roomy = ChargerCapabilities(frozenset({"W"}), max_periods=24)
    assert len(limits_of(build(version, watts, capabilities=roomy, now=PLAN_START))) == 7
    assert refresh_at(schedule, now=PLAN_START, capabilities=roomy, limits=THREE) == schedule.end


@pytest.mark.parametrize("version", VERSIONS)
def test_max_periods_uses_the_last_slot_when_the_floor_merges(version: OcppVersion) -> None:
    caps = ChargerCapabilities(frozenset({"W"}), max_periods=2)
    watts = [10_000.0, 5000.0, 9000.0, 7000.0]  # 5000 W is also the minimum of the rest
    payload = valid(build(version, watts, capabilities=caps, now=PLAN_START), version)
    assert limits_of(payload) == [(0, 10_000.0), (960, 5000.0)]
    schedule = PowerSchedule(PLAN_START, 900, tuple(watts))
    assert refresh_at(
        schedule, now=PLAN_START, capabilities=caps, limits=THREE
    ) == PLAN_START + timedelta(minutes=30)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_single_period_charger_gets_the_current_step_until_it_changes(
    version: OcppVersion,
) -> None:
    caps = ChargerCapabilities(frozenset({"W"}), max_periods=1)
    watts = [10_000.0, 10_000.0, 5000.0, 9000.0]
    payload = valid(build(version, watts, capabilities=caps, now=PLAN_START), version)
    assert limits_of(payload) == [(0, 10_000.0)]
    assert schedule_of(payload)["duration"] == 60 + 1800
    schedule = PowerSchedule(PLAN_START, 900, tuple(watts))
    assert refresh_at(
        schedule, now=PLAN_START, capabilities=caps, limits=THREE
    ) == PLAN_START + timedelta(minutes=30)
    # When the current step is also the lowest, one period holds it to the plan's end.
    low_first = [5000.0, 10_000.0]
    payload = valid(build(version, low_first, capabilities=caps, now=PLAN_START), version)
    assert limits_of(payload) == [(0, 5000.0)]
    assert schedule_of(payload)["duration"] == 60 + 1800


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("asked", "charger_max", "sent"), [(5, 3, 3), (2, 3, 2), (4, 0, 0)])
def test_stack_level_is_capped(
    version: OcppVersion, asked: int, charger_max: int, sent: int
) -> None:
    caps = ChargerCapabilities(frozenset({"A", "W"}), max_stack_level=charger_max)
    payload = valid(build(version, [7000.0], capabilities=caps, stack_level=asked), version)
    assert profile_of(payload)["stackLevel"] == sent


def test_transaction_ids_per_version() -> None:
    assert profile_of(build(V16, [7000.0], transaction_id="17"))["transactionId"] == 17
    assert profile_of(build(V16, [7000.0], transaction_id=17))["transactionId"] == 17
    assert profile_of(build(V201, [7000.0], transaction_id=17))["transactionId"] == "17"
    uuid = "2a9a3c4e-5b6f-4d1e-9a8b-7c6d5e4f3a2b"
    assert profile_of(build(V201, [7000.0], transaction_id=uuid))["transactionId"] == uuid
    with pytest.raises(ProfileBuildError, match="integers"):
        build(V16, [7000.0], transaction_id="tx-1")
    with pytest.raises(ProfileBuildError, match="36"):
        build(V201, [7000.0], transaction_id="x" * 37)
    with pytest.raises(ProfileBuildError, match="36"):
        build(V201, [7000.0], transaction_id="")


@pytest.mark.parametrize("version", [*VERSIONS, "1.6", "2.0.1", "ocpp1.6"])
def test_tx_profile_needs_a_real_connector_and_ids(version: OcppVersion | str) -> None:
    kwargs: dict[str, Any] = {
        "now": NOW,
        "version": version,
        "transaction_id": 1,
        "capabilities": WATTS,
        "limits": THREE,
    }
    schedule = PowerSchedule(PLAN_START, 900, (7000.0,))
    ok = build_tx_profile(schedule, evse_or_connector_id=1, profile_id=1, stack_level=0, **kwargs)
    valid(ok, ocpp_version(version))
    bads: list[dict[str, Any]] = [
        {"evse_or_connector_id": 0, "profile_id": 1, "stack_level": 0},
        {"evse_or_connector_id": 1, "profile_id": 0, "stack_level": 0},
        {"evse_or_connector_id": 1, "profile_id": 1, "stack_level": -1},
    ]
    for bad in bads:
        with pytest.raises(ProfileBuildError):
            build_tx_profile(schedule, **bad, **kwargs)
    with pytest.raises(ProfileBuildError, match="version"):
        ocpp_version("1.5")


# --- the safety net at boot -------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("caps", "unit", "limit"),
    [(WATTS, "W", 4140.0), (AMPS, "A", 6.0), (ChargerCapabilities(), "A", 6.0)],
)
def test_tx_default_relative(
    version: OcppVersion, caps: ChargerCapabilities, unit: str, limit: float
) -> None:
    payload = build_tx_default_profile(
        version=version,
        limit_w=4140.0,
        capabilities=caps,
        limits=THREE,
        profile_id=1,
        stack_level=9,
    )
    valid(payload, version)
    period = {"startPeriod": 0, "limit": limit, "numberPhases": 3}
    schedule: dict[str, Any] = {"chargingRateUnit": unit, "chargingSchedulePeriod": [period]}
    level = min(9, caps.max_stack_level)
    if version is V16:
        assert payload == {
            "connectorId": 0,
            "csChargingProfiles": {
                "chargingProfileId": 1,
                "stackLevel": level,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": schedule,
            },
        }
    else:
        assert payload == {
            "evseId": 0,
            "chargingProfile": {
                "id": 1,
                "stackLevel": level,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": [{"id": 1, **schedule}],
            },
        }


@pytest.mark.parametrize("version", VERSIONS)
def test_tx_default_absolute_and_per_connector(version: OcppVersion) -> None:
    payload = build_tx_default_profile(
        version=version,
        limit_w=3000.0,  # below 6 A × 3 phases: the safe default is then 0
        capabilities=AMPS,
        limits=THREE,
        profile_id=3,
        evse_or_connector_id=2,
        kind="Absolute",
        now=NOW,
    )
    valid(payload, version)
    sched = schedule_of(payload)
    assert profile_of(payload)["chargingProfileKind"] == "Absolute"
    assert sched["startSchedule"] == "2026-01-05T08:06:30Z"
    assert "duration" not in sched
    assert limits_of(payload) == [(0, 0.0)]
    assert payload.get("connectorId", payload.get("evseId")) == 2
    assert "transactionId" not in profile_of(payload)
    with pytest.raises(ProfileBuildError, match="needs now"):
        build_tx_default_profile(
            version=version,
            limit_w=1.0,
            capabilities=AMPS,
            limits=THREE,
            profile_id=3,
            kind="Absolute",
        )
    with pytest.raises(ProfileBuildError, match="kind"):
        build_tx_default_profile(
            version=version,
            limit_w=1.0,
            capabilities=AMPS,
            limits=THREE,
            profile_id=3,
            kind="Recurring",  # type: ignore[arg-type]
        )


# --- not resending what is installed ----------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_same_profile_ignores_start_schedule_drift(version: OcppVersion) -> None:
    watts = [11_000.0, 7000.0, 0.0]
    first = build(version, watts)
    assert same_profile(first, copy.deepcopy(first))
    later = build(version, watts, now=NOW + timedelta(minutes=5))
    assert schedule_of(later)["startSchedule"] != schedule_of(first)["startSchedule"]
    assert same_profile(first, later)
    assert same_profile(later, first)
    # Also after a step boundary: from the later start on, both say the same.
    assert same_profile(first, build(version, watts, now=PLAN_START + timedelta(minutes=16)))
    # Unless the period budget made the first one cut short what the second one can now send.
    tight = ChargerCapabilities(frozenset({"W"}), max_periods=2)
    busy = [11_000.0, 7000.0, 9000.0, 0.0]
    early = build(version, busy, capabilities=tight)
    assert limits_of(early) == [(0, 11_000.0), (510, 0.0)]
    late = build(version, busy, capabilities=tight, now=PLAN_START + timedelta(minutes=16))
    assert limits_of(late) == [(0, 7000.0), (900, 0.0)]
    assert not same_profile(early, late)


@pytest.mark.parametrize("version", VERSIONS)
def test_same_profile_sees_real_changes(version: OcppVersion) -> None:
    watts = [11_000.0, 7000.0, 0.0]
    base = build(version, watts)
    assert not same_profile(base, build(version, [11_000.0, 7100.0, 0.0]))
    assert not same_profile(base, build(version, [*watts, 0.0]))  # ends later
    assert not same_profile(base, build(version, watts, transaction_id=43))
    assert not same_profile(base, build(version, watts, stack_level=2))
    assert not same_profile(base, build(version, watts, capabilities=AMPS))
    assert not same_profile(base, build(version, watts, limits=ONE))
    other = V201 if version is V16 else V16
    assert not same_profile(base, build(other, watts))
    assert not same_profile(base, None)
    assert not same_profile(None, base)
    broken = copy.deepcopy(base)
    schedule_of(broken)["startSchedule"] = "yesterday"
    assert not same_profile(base, broken)
    assert not same_profile(base, {"connectorId": 1})


@pytest.mark.parametrize("version", VERSIONS)
def test_same_profile_for_relative_defaults(version: OcppVersion) -> None:
    def default(limit_w: float) -> dict[str, Any]:
        return build_tx_default_profile(
            version=version, limit_w=limit_w, capabilities=WATTS, limits=THREE, profile_id=1
        )

    assert same_profile(default(5000.0), default(5000.0))
    assert not same_profile(default(5000.0), default(6000.0))


# --- properties -------------------------------------------------------------------------------


def _wire_watts(limit: float, unit: str, limits: ChargerLimits) -> Fraction:
    """What the charger reads (the decimal on the wire) as total watts, exactly."""
    value = Fraction(repr(limit))
    return value if unit == "W" else value * Fraction(limits.voltage_v) * limits.phases


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    step_s = draw(st.sampled_from([60, 300, 900, 3600]))
    n = draw(st.integers(1, 40))
    watts = draw(
        st.lists(
            st.one_of(
                st.sampled_from([0.0, 1380.0, 4140.0, 7360.0, 11_000.0, 22_080.0]),
                st.floats(0, 30_000, allow_nan=False),
            ),
            min_size=n,
            max_size=n,
        )
    )
    start = PLAN_START + timedelta(seconds=draw(st.integers(-2 * 3600, 2 * 3600)))
    schedule = PowerSchedule(start, step_s, tuple(watts))
    now = start + timedelta(
        seconds=draw(st.integers(-600, step_s * n - 1)),
        microseconds=draw(st.integers(0, 999_999)),
    )
    if now >= schedule.end:
        now = schedule.end - timedelta(microseconds=1)
    caps = ChargerCapabilities(
        allowed_units=draw(st.sampled_from([frozenset({"A"}), frozenset({"W"}), frozenset("AW")])),
        max_periods=draw(st.integers(1, 30)),
        max_stack_level=draw(st.integers(0, 8)),
    )
    limits = ChargerLimits(
        phases=draw(st.sampled_from([1, 2, 3])),
        voltage_v=draw(st.sampled_from([110.0, 220.0, 230.0, 231.7, 240.0])),
        min_current_a=draw(st.sampled_from([0.0, 6.0, 8.0])),
        max_power_w=draw(st.one_of(st.none(), st.floats(0, 40_000, allow_nan=False))),
    )
    return {
        "schedule": schedule,
        "now": now,
        "capabilities": caps,
        "limits": limits,
        "version": draw(st.sampled_from(VERSIONS)),
        "stack_level": draw(st.integers(0, 10)),
    }


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(cases())
def test_profiles_never_allow_more_than_planned(case: dict[str, Any]) -> None:
    schedule: PowerSchedule = case["schedule"]
    now: datetime = case["now"]
    caps: ChargerCapabilities = case["capabilities"]
    limits: ChargerLimits = case["limits"]
    version: OcppVersion = case["version"]
    payload = build_tx_profile(
        schedule,
        now=now,
        version=version,
        transaction_id=123,
        evse_or_connector_id=1,
        capabilities=caps,
        limits=limits,
        profile_id=5,
        stack_level=case["stack_level"],
    )
    valid(payload, version)
    sched = schedule_of(payload)
    unit = sched["chargingRateUnit"]
    assert unit == ("W" if "W" in caps.allowed_units else "A")
    assert profile_of(payload)["stackLevel"] == min(case["stack_level"], caps.max_stack_level)
    periods = limits_of(payload)
    starts = [p for p, _ in periods]
    assert starts[0] == 0
    assert all(a < b for a, b in itertools.pairwise(starts))
    assert len(periods) <= caps.max_periods
    assert all(a != b for (_, a), (_, b) in itertools.pairwise(periods))  # merged
    minimum = Fraction(limits.min_current_a) * (
        Fraction(limits.voltage_v) * limits.phases if unit == "W" else 1
    )
    assert all(limit == 0 or Fraction(repr(limit)) >= minimum for _, limit in periods)

    begin = datetime.fromisoformat(sched["startSchedule"])
    assert begin == now.replace(microsecond=0) - timedelta(seconds=60)
    assert sched["startSchedule"].endswith("Z")
    end = begin + timedelta(seconds=sched["duration"])
    assert starts[-1] < sched["duration"]
    assert end <= schedule.end
    follows = refresh_at(schedule, now=now, capabilities=caps, limits=limits)
    assert begin <= follows <= end
    assert follows > now  # a refresh timer never fires in a loop

    # At every instant from now to the end of the profile: limit (as the charger reads it) <= plan.
    def profile_w(t: datetime) -> Fraction:
        offset = (t - begin) // timedelta(seconds=1)
        limit = [lim for start, lim in periods if start <= offset][-1]
        return _wire_watts(limit, unit, limits)

    def plan_w(t: datetime) -> Fraction:
        planned = schedule.watts_at(t)
        return Fraction(0) if planned is None else Fraction(planned)

    step = timedelta(seconds=schedule.step_s)
    marks = {now, end}
    marks |= {begin + timedelta(seconds=s) for s in starts}
    marks |= {schedule.start + i * step for i in range(len(schedule.watts) + 1)}
    timeline = sorted(t for t in marks if now <= t <= end)
    given_wh = planned_wh = Fraction(0)
    for t0, t1 in itertools.pairwise(timeline):
        assert profile_w(t0) <= plan_w(t0), (t0, periods)
        seconds = Fraction((t1 - t0) // timedelta(microseconds=1), 1_000_000)
        given_wh += profile_w(t0) * seconds
        planned_wh += plan_w(t0) * seconds
    assert given_wh <= planned_wh


@PROPERTY
@given(cases(), st.integers(0, 3600))
def test_rebuilding_within_the_same_step_is_the_same_profile(
    case: dict[str, Any], later_s: int
) -> None:
    schedule: PowerSchedule = case["schedule"]
    now: datetime = case["now"]
    later = now + timedelta(seconds=later_s)

    def step_index(t: datetime) -> int:
        return (t - schedule.start) // timedelta(seconds=schedule.step_s)

    same_step = step_index(now) == step_index(later) and (now >= schedule.start) == (
        later >= schedule.start
    )
    kwargs: dict[str, Any] = {
        "version": case["version"],
        "transaction_id": 9,
        "evse_or_connector_id": 1,
        "capabilities": case["capabilities"],
        "limits": case["limits"],
        "profile_id": 5,
        "stack_level": case["stack_level"],
    }
    first = build_tx_profile(schedule, now=now, **kwargs)
    assert same_profile(first, first)
    if same_step and later < schedule.end:
        assert same_profile(first, build_tx_profile(schedule, now=later, **kwargs))
