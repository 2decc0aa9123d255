"""Payload <-> model mapping for both versions, the station core and the report, without sockets."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from charge_point_sim import mapping16, mapping201
from charge_point_sim.charger_model import Capabilities, ChargerState
from charge_point_sim.composite import CompositePeriod, CompositeSchedule
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.ev_model import Ev, Meter
from charge_point_sim.profiles import Kind, Purpose, RateUnit
from charge_point_sim.runner import ChargerConfig, ChargerRun, basic_auth, report
from charge_point_sim.scenario import ChargerSlot, parse_scenario, random_arrivals
from charge_point_sim.station import Settings, Station
from charge_point_sim.wire import PayloadError, format_time, truncate_01
from tests.charge_point_sim.helpers import T0, profile, spec

P16: dict[str, Any] = {
    "charging_profile_id": 7,
    "stack_level": 2,
    "charging_profile_purpose": "TxProfile",
    "charging_profile_kind": "Relative",
    "transaction_id": 42,
    "charging_schedule": {
        "charging_rate_unit": "A",
        "duration": 3600,
        "charging_schedule_period": [
            {"start_period": 0, "limit": Decimal("16.0")},
            {"start_period": 900, "limit": 10, "number_phases": 1},
        ],
        "min_charging_rate": Decimal("6.0"),
    },
}


def test_a_16_profile_maps_onto_the_model() -> None:
    p = mapping16.profile_from_16(P16)
    assert (p.id, p.stack_level, p.purpose, p.kind) == (7, 2, Purpose.TX, Kind.RELATIVE)
    assert p.transaction_id == "42"
    assert p.schedule.unit is RateUnit.A
    assert [(x.start_period_s, x.limit, x.number_phases) for x in p.schedule.periods] == [
        (0, 16.0, None),
        (900, 10.0, 1),
    ]
    assert p.schedule.duration_s == 3600
    assert p.schedule.min_charging_rate == 6.0
    bound = mapping16.remote_start_profile({**P16, "transaction_id": None}, "5")
    assert bound.transaction_id == "5"


def test_absolute_times_keep_their_offset_and_naive_ones_stay_naive() -> None:
    payload = {
        **P16,
        "charging_profile_kind": "Absolute",
        "valid_to": "2026-03-02T10:00:00Z",
        "charging_schedule": {**P16["charging_schedule"], "start_schedule": "2026-03-02T08:00:00"},
    }
    p = mapping16.profile_from_16(payload)
    assert p.valid_to is not None
    assert p.valid_to.utcoffset() == timedelta(0)
    assert p.schedule.start_schedule is not None
    assert p.schedule.start_schedule.tzinfo is None
    station = Station(spec(), T0)
    station.start_transaction(1, "42", T0)
    assert station.set_profile(1, p, T0) == "startSchedule must carry a UTC offset"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"charging_profile_purpose": "Nope"}, "chargingProfilePurpose"),
        ({"stack_level": "2"}, "stackLevel"),
        ({"charging_schedule": None}, "chargingSchedule"),
        ({"valid_from": "yesterday"}, "validFrom"),
    ],
)
def test_payloads_the_model_cannot_hold_are_payload_errors(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        mapping16.profile_from_16({**P16, **change})


def test_limits_are_truncated_to_a_tenth_never_rounded_up() -> None:
    assert truncate_01(16.09) == 16.0
    assert truncate_01(15.9999999999) == 16.0  # float noise, not a lower limit
    assert truncate_01(7359.99) == 7359.9
    assert truncate_01(0.0) == 0.0


def test_composite_to_16_gives_whole_seconds_and_merges_what_truncation_made_equal() -> None:
    cs = CompositeSchedule(
        1,
        T0,
        600.0,
        RateUnit.A,
        (
            CompositePeriod(0.0, 16.04, 3),
            CompositePeriod(120.4, 16.01, 3),  # equal once truncated: merged
            CompositePeriod(300.0, 10.0, 3),
            CompositePeriod(300.5, 8.0, 3),  # same whole second: the later wins
        ),
    )
    out = mapping16.composite_to_16(cs)
    assert out["charging_schedule_period"] == [
        {"start_period": 0, "limit": 16.0, "number_phases": 3},
        {"start_period": 300, "limit": 8.0, "number_phases": 3},
    ]
    assert out["start_schedule"] == "2026-03-02T00:00:00.000Z"
    assert out["duration"] == 600
    schedule = mapping201.composite_to_201(cs)
    assert schedule["evse_id"] == 1
    assert schedule["charging_schedule_period"] == out["charging_schedule_period"]


def test_meter_values_carry_every_measurand_consistently() -> None:
    reading = Meter(1234.56).read(T0, 7360.0, voltage_v=230.0, phases=1, soc=0.456)
    mv16 = mapping16.meter_value_16(reading)
    got = {s["measurand"]: s["value"] for s in mv16["sampled_value"]}
    assert got == {
        "Energy.Active.Import.Register": "1234",
        "Power.Active.Import": "7360.0",
        "Current.Import": "32.0",
        "SoC": "45.6",
    }
    mv201 = mapping201.meter_value_201(reading)
    got201 = {
        s["measurand"]: (s["value"], s["unit_of_measure"]["unit"]) for s in mv201["sampled_value"]
    }
    assert got201["Energy.Active.Import.Register"] == (1234.0, "Wh")
    assert got201["SoC"] == (45.6, "Percent")


def test_16_configuration_reports_the_smart_charging_keys_and_guards_read_only_ones() -> None:
    charger = spec(
        capabilities=Capabilities(
            max_stack_level=3, max_periods=20, allowed_units=frozenset({RateUnit.A}), max_profiles=5
        )
    )
    settings = Settings()
    found, unknown = mapping16.get_configuration(
        charger,
        settings,
        ["ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit", "Foo"],
    )
    assert [(k["key"], k["value"], k["readonly"]) for k in found] == [
        ("ChargeProfileMaxStackLevel", "3", True),
        ("ChargingScheduleAllowedChargingRateUnit", "Current", True),
    ]
    assert unknown == ["Foo"]
    every, _ = mapping16.get_configuration(charger, settings, None)
    keys = {k["key"]: k["value"] for k in every}
    assert keys["ChargingScheduleMaxPeriods"] == "20"
    assert keys["MaxChargingProfilesInstalled"] == "5"
    assert keys["NumberOfConnectors"] == "2"
    new, status = mapping16.change_configuration(
        charger, settings, "MeterValueSampleInterval", "10"
    )
    assert (status, new.meter_interval_s) == ("Accepted", 10)
    assert (
        mapping16.change_configuration(charger, settings, "ChargeProfileMaxStackLevel", "9")[1]
        == "Rejected"
    )
    assert (
        mapping16.change_configuration(charger, settings, "HeartbeatInterval", "-1")[1]
        == "Rejected"
    )
    assert mapping16.change_configuration(charger, settings, "Nope", "1")[1] == "NotSupported"


def test_16_clear_criteria() -> None:
    assert mapping16.clear_criteria({"charging_profile_purpose": "TxDefaultProfile"}) == {
        "profile_id": None,
        "connector_id": None,
        "purpose": Purpose.TX_DEFAULT,
        "stack_level": None,
    }


P201: dict[str, Any] = {
    "id": 3,
    "stack_level": 0,
    "charging_profile_purpose": "ChargingStationMaxProfile",
    "charging_profile_kind": "Absolute",
    "charging_schedule": [
        {
            "id": 1,
            "start_schedule": "2026-03-02T00:00:00Z",
            "charging_rate_unit": "W",
            "charging_schedule_period": [{"start_period": 0, "limit": 50000.0}],
        }
    ],
}


def test_a_201_profile_maps_onto_the_model() -> None:
    p = mapping201.profile_from_201(P201)
    assert p.purpose is Purpose.CHARGE_POINT_MAX
    assert p.schedule.unit is RateUnit.W
    assert p.schedule.start_schedule == T0


def test_201_rules_the_neutral_model_does_not_know() -> None:
    with pytest.raises(PayloadError, match="ChargingStationExternalConstraints"):
        mapping201.profile_from_201(
            {**P201, "charging_profile_purpose": "ChargingStationExternalConstraints"}
        )
    with pytest.raises(PayloadError, match="exactly one chargingSchedule"):
        mapping201.profile_from_201({**P201, "charging_schedule": P201["charging_schedule"] * 2})
    tx = profile(5, [(0, 16)], purpose=Purpose.TX, kind=Kind.RELATIVE)
    assert mapping201.check_201(ChargerState(), 1, tx) == "a TxProfile needs transactionId"
    state = ChargerState().install(1, profile(1, [(0, 16)], stack=2))
    clash = profile(2, [(0, 10)], stack=2)
    assert "already has purpose" in (mapping201.check_201(state, 1, clash) or "")
    assert mapping201.check_201(state, 1, profile(1, [(0, 10)], stack=2)) is None  # same id
    assert mapping201.check_201(state, 2, clash) is None


def _var(component: str, variable: str, value: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"component": {"name": component}, "variable": {"name": variable}}
    if value is not None:
        item["attribute_value"] = value
    return item


def test_201_device_model_get_and_set() -> None:
    charger = spec(
        capabilities=Capabilities(max_stack_level=3, allowed_units=frozenset({RateUnit.A}))
    )
    results = mapping201.get_variables(
        charger,
        Settings(),
        [
            _var("SmartChargingCtrlr", "RateUnit"),
            _var("SmartChargingCtrlr", "ProfileStackLevel"),
            _var("SmartChargingCtrlr", "Nope"),
            _var("Nope", "Nope"),
        ],
    )
    assert [(r["attribute_status"], r.get("attribute_value")) for r in results] == [
        ("Accepted", "A"),
        ("Accepted", "3"),
        ("UnknownVariable", None),
        ("UnknownComponent", None),
    ]
    settings, results = mapping201.set_variables(
        Settings(),
        [
            _var("SampledDataCtrlr", "TxUpdatedInterval", "15"),
            _var("SmartChargingCtrlr", "PeriodsPerSchedule", "99"),
            _var("OCPPCommCtrlr", "HeartbeatInterval", "soon"),
            _var("SmartChargingCtrlr", "Enabled", "false"),
        ],
    )
    assert [r["attribute_status"] for r in results] == [
        "Accepted",
        "Rejected",
        "Rejected",
        "Accepted",
    ]
    assert settings.meter_interval_s == 15
    assert settings.smart_charging_enabled is False


def test_the_station_books_energy_per_minute_and_obeys_a_new_limit_at_once() -> None:
    station = Station(spec(), T0)
    station.plug(1, Ev(capacity_kwh=60, soc=0.2, max_power_w=11000))
    station.start_transaction(1, "t1", T0)
    station.advance(T0 + timedelta(seconds=90))
    assert station.power_w(1, T0 + timedelta(seconds=90)) == pytest.approx(11000)
    limit = profile(1, [(0, 6)], purpose=Purpose.TX, kind=Kind.RELATIVE, transaction_id="t1")
    assert station.set_profile(1, limit, T0 + timedelta(seconds=90)) is None
    station.advance(T0 + timedelta(seconds=120))
    assert station.power_w(1, T0 + timedelta(seconds=120)) == pytest.approx(4140)
    assert station.minute_power_kw() == pytest.approx([11.0, 0.5 * 11 + 0.5 * 4.14])
    reading = station.reading(1, T0 + timedelta(seconds=120))
    assert reading.energy_wh == pytest.approx(11000 / 60 + (5500 + 2070) / 60)
    station.unplug(1)
    assert station.state.transactions == ()
    assert station.power_w(1, T0 + timedelta(seconds=120)) == 0.0
    station.settings = Settings(smart_charging_enabled=False)
    assert (
        station.set_profile(0, profile(2, [(0, 6)]), T0)
        == "smart charging is disabled on this charger"
    )


def test_random_arrivals_are_seeded_and_fit_the_run() -> None:
    slots = [ChargerSlot(f"CP{i}", spec()) for i in range(5)]
    a = random_arrivals(3, slots, T0, 3600)
    assert a == random_arrivals(3, slots, T0, 3600)
    assert a != random_arrivals(4, slots, T0, 3600)
    for arrivals in a.values():
        for arr in arrivals:
            assert T0 <= arr.at <= T0 + timedelta(seconds=900)
            assert arr.request.departure is not None
            assert arr.request.departure <= T0 + timedelta(seconds=900 + 0.9 * 3600)
    assert parse_scenario("random:42") == 42
    with pytest.raises(InvalidModelError, match="random:SEED"):
        parse_scenario("acn:x")


def test_the_report_has_power_per_charger_per_minute_and_the_site_peak() -> None:
    runs = []
    for i, kw in enumerate((11.0, 7.0)):
        station = Station(spec(), T0)
        station.minute_wh = {0: kw * 1000 / 60, 2: kw * 1000 / 60}
        runs.append(ChargerRun(ChargerConfig(f"CP{i}", "1.6", spec()), station))
    data = report(runs, T0, T0 + timedelta(minutes=3), 60.0, "ws://x")
    assert data["chargers"][0]["power_kw_per_minute"] == [11.0, 0.0, 11.0]
    assert data["site_power_kw_per_minute"] == [18.0, 0.0, 18.0]
    assert data["site_peak_kw"] == 18.0
    assert data["start"] == format_time(T0)


def test_basic_auth_header() -> None:
    assert basic_auth("CP1", "pw") == "Basic Q1AxOnB3"
