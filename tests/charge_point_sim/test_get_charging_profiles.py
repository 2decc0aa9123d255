"""GetChargingProfiles (2.0.1 K09): which installed profiles match the criteria, how they are
reported (one ReportChargingProfiles per EVSE, tbc, requestId), and that the reports follow the
answer over a real connection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.charge_point import snake_to_camel_case
from ocpp.messages import Call, validate_payload
from ocpp.v201 import call as c201

from charge_point_sim import ChargerSpec, Ev
from charge_point_sim.charger_model import ChargerState
from charge_point_sim.clock import ScaledClock
from charge_point_sim.driver import Arrival, SessionRequest
from charge_point_sim.mapping201 import (
    charging_profile_reports,
    matching_profiles,
    profile_from_201,
    profile_to_201,
)
from charge_point_sim.profiles import Kind, Purpose
from charge_point_sim.runner import ChargerConfig, ChargerRun, run_charger
from charge_point_sim.station import Station
from tests.charge_point_sim.helpers import T0, install_all, profile, spec
from tests.charge_point_sim.ocpp_server import ocpp_server

FULL: dict[str, Any] = {
    "id": 12,
    "stack_level": 2,
    "charging_profile_purpose": "TxDefaultProfile",
    "charging_profile_kind": "Recurring",
    "recurrency_kind": "Daily",
    "valid_from": "2026-03-01T00:00:00.000Z",
    "valid_to": "2026-04-01T00:00:00.000Z",
    "charging_schedule": [
        {
            "id": 5,
            "start_schedule": "2026-03-01T06:00:00.000Z",
            "duration": 43200,
            "charging_rate_unit": "W",
            "min_charging_rate": 1380.0,
            "charging_schedule_period": [
                {"start_period": 0, "limit": 11000.0},
                {"start_period": 3600, "limit": 4140.5, "number_phases": 1},
            ],
        }
    ],
}


def _state() -> ChargerState:
    """Station max and a TxDefault on the station, a TxProfile on EVSE 1, a TxDefault on EVSE 2."""
    c = spec()
    state = ChargerState().start_transaction(1, "tx-1", T0)
    return install_all(
        c,
        state,
        (0, profile(1, [(0, 60)], purpose=Purpose.CHARGE_POINT_MAX)),
        (0, profile(2, [(0, 32)])),
        (
            1,
            profile(
                10,
                [(0, 16)],
                purpose=Purpose.TX,
                stack=1,
                kind=Kind.RELATIVE,
                transaction_id="tx-1",
            ),
        ),
        (2, profile(3, [(0, 20)], stack=1)),
    )


def _ids(state: ChargerState, evse: int | None, criteria: dict[str, Any]) -> list[int]:
    return [ip.profile.id for ip in matching_profiles(state, evse, criteria)]


def test_a_reported_profile_is_the_profile_that_was_set() -> None:
    assert profile_to_201(profile_from_201(FULL)) == FULL


async def test_reports_are_valid_2_0_1_requests() -> None:
    for report in charging_profile_reports(7, _state(), None, {}):
        await validate_payload(
            Call("1", "ReportChargingProfiles", snake_to_camel_case(report)), "2.0.1"
        )


@pytest.mark.parametrize(
    ("evse", "criteria", "expected"),
    [
        (None, {}, [1, 2, 10, 3]),  # by EVSE, then id
        (0, {}, [1, 2]),  # 0: what is installed on the station itself
        (1, {}, [10]),
        (None, {"charging_profile_purpose": "TxDefaultProfile"}, [2, 3]),
        (None, {"charging_profile_purpose": "ChargingStationMaxProfile"}, [1]),
        (None, {"charging_profile_purpose": "ChargingStationExternalConstraints"}, []),
        (None, {"stack_level": 1}, [10, 3]),
        (2, {"stack_level": 1, "charging_profile_purpose": "TxDefaultProfile"}, [3]),
        (None, {"charging_profile_id": [3, 10, 99]}, [10, 3]),
        # Ids identify profiles: the other fields do not narrow them (K09.FR.03)...
        (None, {"charging_profile_id": [3], "stack_level": 0}, [3]),
        # ...but the EVSE does.
        (1, {"charging_profile_id": [3]}, []),
        (None, {"charging_limit_source": ["EMS", "SO"]}, []),
        (None, {"charging_limit_source": ["EMS", "CSO"]}, [1, 2, 10, 3]),
    ],
)
def test_which_profiles_match(
    evse: int | None, criteria: dict[str, Any], expected: list[int]
) -> None:
    assert _ids(_state(), evse, criteria) == expected


def test_one_report_per_evse_with_tbc_on_all_but_the_last() -> None:
    reports = charging_profile_reports(42, _state(), None, {})
    assert [(r["evse_id"], r["tbc"]) for r in reports] == [(0, True), (1, True), (2, False)]
    assert {r["request_id"] for r in reports} == {42}
    assert {r["charging_limit_source"] for r in reports} == {"CSO"}
    assert [[p["id"] for p in r["charging_profile"]] for r in reports] == [[1, 2], [10], [3]]
    station_max = reports[0]["charging_profile"][0]
    assert station_max["charging_profile_purpose"] == "ChargingStationMaxProfile"
    assert reports[1]["charging_profile"][0]["transaction_id"] == "tx-1"
    assert charging_profile_reports(42, _state(), 1, {"stack_level": 7}) == []


def _tx_profile(tx: str) -> Any:
    return c201.SetChargingProfile(
        evse_id=1,
        charging_profile={
            "id": 10,
            "stack_level": 1,
            "charging_profile_purpose": "TxProfile",
            "charging_profile_kind": "Relative",
            "transaction_id": tx,
            "charging_schedule": [
                {
                    "id": 4,
                    "charging_rate_unit": "A",
                    "charging_schedule_period": [{"start_period": 0, "limit": 10.0}],
                }
            ],
        },
    )


def _default_profile() -> Any:
    return c201.SetChargingProfile(
        evse_id=0,
        charging_profile={
            "id": 1,
            "stack_level": 0,
            "charging_profile_purpose": "TxDefaultProfile",
            "charging_profile_kind": "Absolute",
            "charging_schedule": [
                {
                    "id": 1,
                    "start_schedule": "2026-01-01T00:00:00.000Z",
                    "charging_rate_unit": "W",
                    "charging_schedule_period": [{"start_period": 0, "limit": 11000.0}],
                }
            ],
        },
    )


async def test_the_station_answers_then_reports_over_the_wire() -> None:
    clock = ScaledClock(datetime.now(UTC), 600.0)
    cspec = ChargerSpec.uniform(2, 22080.0)
    run = ChargerRun(ChargerConfig("GCP", "2.0.1", cspec), Station(cspec, clock.now()))
    now = clock.now()
    ev = Ev(capacity_kwh=60.0, soc=0.2, max_power_w=11000.0)
    plan = [Arrival(now, SessionRequest(1, ev, "TAG1", departure=now + timedelta(hours=2)))]
    async with ocpp_server() as server:
        task = asyncio.create_task(run_charger(run, server.url, clock, plan, None))
        try:
            csms = await server.charger("GCP")
            started = await csms.wait_for("TransactionEvent")
            tx = started["transaction_info"]["transaction_id"]
            assert (await csms.call(_tx_profile(tx), suppress=False)).status == "Accepted"
            assert (await csms.call(_default_profile(), suppress=False)).status == "Accepted"

            res = await csms.call(
                c201.GetChargingProfiles(request_id=42, charging_profile={}),
                suppress=False,
                unique_id="get-all",
            )
            assert res.status == "Accepted"
            await csms.wait_for(
                "ReportChargingProfiles", lambda p: p["tbc"] is False and p["request_id"] == 42
            )
            reports = [p for p in csms.of("ReportChargingProfiles") if p["request_id"] == 42]
            # The answer went out before the first report (K09: reports follow the response).
            answer_at = csms.frames.index((3, "get-all"))
            report_at = csms.frames.index((2, "ReportChargingProfiles"))
            assert answer_at < report_at

            none = await csms.call(
                c201.GetChargingProfiles(
                    request_id=43, evse_id=1, charging_profile={"charging_profile_id": [99]}
                ),
                suppress=False,
            )
            assert none.status == "NoProfiles"
            only_tx = await csms.call(
                c201.GetChargingProfiles(
                    request_id=44,
                    evse_id=1,
                    charging_profile={"charging_profile_purpose": "TxProfile"},
                ),
                suppress=False,
            )
            assert only_tx.status == "Accepted"
            single = await csms.wait_for("ReportChargingProfiles", lambda p: p["request_id"] == 44)
            await asyncio.sleep(0.1)
        finally:
            task.cancel()
            async with asyncio.timeout(5):
                await asyncio.gather(task, return_exceptions=True)
    assert [(r["evse_id"], r["tbc"]) for r in reports] == [(0, True), (1, False)]
    assert reports[1]["charging_profile"] == [
        {
            "id": 10,
            "stack_level": 1,
            "charging_profile_purpose": "TxProfile",
            "charging_profile_kind": "Relative",
            "transaction_id": tx,
            "charging_schedule": [
                {
                    "id": 4,
                    "charging_rate_unit": "A",
                    "charging_schedule_period": [{"start_period": 0, "limit": 10.0}],
                }
            ],
        }
    ]
    assert reports[0]["charging_profile"][0]["charging_schedule"][0]["start_schedule"] == (
        "2026-01-01T00:00:00.000Z"
    )
    assert not [p for p in csms.of("ReportChargingProfiles") if p["request_id"] == 43]
    assert single["evse_id"] == 1
    assert [p["id"] for p in single["charging_profile"]] == [10]
    assert len([p for p in csms.of("ReportChargingProfiles") if p["request_id"] == 44]) == 1
