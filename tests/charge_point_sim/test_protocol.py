"""The simulated chargers over real websockets against a minimal ``ocpp`` central system.

Both versions: boot and heartbeat, a transaction with meter values, a profile accepted and obeyed
within one meter interval, profiles rejected as a strict charger would, GetCompositeSchedule.
The clock runs 600x: a 60 s meter interval takes 0.1 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201

from charge_point_sim import Capabilities, ChargerSpec, Ev, RateUnit
from charge_point_sim.clock import ScaledClock
from charge_point_sim.driver import Arrival, SessionRequest
from charge_point_sim.quirks import Quirks
from charge_point_sim.runner import ChargerConfig, ChargerRun, report, run_charger, run_site
from charge_point_sim.station import Station
from tests.charge_point_sim.ocpp_server import Server, ocpp_server

SPEED = 600.0
VERSIONS = ["1.6", "2.0.1"]
STRICT = Capabilities(max_stack_level=3, max_periods=4, allowed_units=frozenset({RateUnit.A}))
ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"


def ev(max_power_w: float = 11000.0) -> Ev:
    return Ev(capacity_kwh=60.0, soc=0.2, max_power_w=max_power_w)


@asynccontextmanager
async def charger(
    version: str,
    *,
    arrivals: Sequence[tuple[float, float, Ev]] = (),
    capabilities: Capabilities | None = None,
    password: str | None = None,
    quirks: Quirks | None = None,
) -> AsyncIterator[tuple[Server, Any, ChargerRun, ScaledClock]]:
    """A server and one simulated charger (22 kW, two connectors) running against it.

    ``arrivals``: (seconds from now, stay in seconds, EV) on connector 1, 2, ...
    """
    clock = ScaledClock(datetime.now(UTC), SPEED)
    spec = ChargerSpec.uniform(2, 22080.0, capabilities=capabilities)
    cfg = ChargerConfig(f"CP-{version}", version, spec, password, quirks or Quirks())
    run = ChargerRun(cfg, Station(spec, clock.now()))
    plan = [
        Arrival(
            clock.now() + timedelta(seconds=at),
            SessionRequest(i, e, f"TAG{i}", departure=clock.now() + timedelta(seconds=at + stay)),
        )
        for i, (at, stay, e) in enumerate(arrivals, start=1)
    ]
    async with ocpp_server() as server:
        task = asyncio.create_task(run_charger(run, server.url, clock, plan, None))
        try:
            csms = await server.charger(cfg.charger_id)
            await csms.wait_for("BootNotification")
            yield server, csms, run, clock
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


def values(meter_value: dict[str, Any]) -> dict[str, float]:
    return {s["measurand"]: float(s["value"]) for s in meter_value["sampled_value"]}


def meter_values(csms: Any, version: str) -> list[dict[str, Any]]:
    """Every periodic meter value received, in order."""
    if version == "1.6":
        return [mv for p in csms.of("MeterValues") for mv in p["meter_value"]]
    return [
        mv
        for p in csms.of("TransactionEvent")
        if p["event_type"] == "Updated"
        for mv in p.get("meter_value", [])
    ]


def started(csms: Any, version: str) -> str:
    if version == "1.6":
        return str(csms.of("StartTransaction")[0]["transaction_id"])
    return str(csms.of("TransactionEvent")[0]["transaction_info"]["transaction_id"])


def tx_profile(version: str, tx: str, limit: float, **changes: Any) -> Any:
    """A SetChargingProfile for connector/EVSE 1: a TxProfile of ``limit`` A from now."""
    unit = changes.pop("unit", "A")
    periods = changes.pop("periods", [{"start_period": 0, "limit": limit}])
    stack = changes.pop("stack_level", 1)
    connector = changes.pop("connector", 1)
    schedule = {"charging_rate_unit": unit, "charging_schedule_period": periods}
    if version == "1.6":
        return c16.SetChargingProfile(
            connector_id=connector,
            cs_charging_profiles={
                "charging_profile_id": 10,
                "stack_level": stack,
                "charging_profile_purpose": "TxProfile",
                "charging_profile_kind": "Relative",
                "transaction_id": int(tx),
                "charging_schedule": schedule,
            },
        )
    return c201.SetChargingProfile(
        evse_id=connector,
        charging_profile={
            "id": 10,
            "stack_level": stack,
            "charging_profile_purpose": "TxProfile",
            "charging_profile_kind": "Relative",
            "transaction_id": tx,
            "charging_schedule": [{"id": 1, **schedule}],
        },
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_boot_status_and_heartbeat(version: str) -> None:
    async with charger(version, password="s3cret") as (server, csms, run, _):
        statuses = await csms.wait_for("StatusNotification")
        await csms.wait_for("Heartbeat", timeout=2)  # 30 s interval = 0.05 s here
    assert run.ever_connected
    assert server.headers[run.config.charger_id] == "Basic Q1AtMS42OnMzY3JldA==" or server.headers[
        run.config.charger_id
    ].startswith("Basic ")
    assert run.station.settings.heartbeat_interval_s == 30
    if version == "1.6":
        assert statuses["status"] == "Available"
        assert {p["connector_id"] for p in csms.of("StatusNotification")} >= {1, 2}
    else:
        assert statuses["connector_status"] == "Available"
        assert {p["evse_id"] for p in csms.of("StatusNotification")} >= {1, 2}


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_transaction_with_meter_values(version: str) -> None:
    # Plugged at once for 10 simulated minutes: ~10 meter values at 60 s.
    async with charger(version, arrivals=[(0, 600, ev())]) as (_, csms, run, _clock):
        if version == "1.6":
            await csms.wait_for("StopTransaction", timeout=5)
        else:
            await csms.wait_for("TransactionEvent", lambda p: p["event_type"] == "Ended", 5)
        await csms.wait_for(
            "StatusNotification",
            lambda p: (
                p.get("status", p.get("connector_status")) == "Available"
                and p.get("connector_id", p.get("evse_id")) == 1
            ),
        )
    mvs = meter_values(csms, version)
    assert len(mvs) >= 5
    energy = [values(mv)[ENERGY] for mv in mvs]
    assert energy == sorted(energy)
    assert energy[-1] > energy[0]
    for mv in mvs:
        v = values(mv)
        assert set(v) == {ENERGY, POWER, "Current.Import", "SoC"}
        assert v[POWER] == pytest.approx(11000.0, abs=0.1)
        assert v["Current.Import"] == pytest.approx(11000 / 690, abs=0.1)
    result = run.results[0]
    assert 1500 < result.delivered_wh < 2000  # 11 kW for ~10 min
    assert result.reason == "EVDisconnected"
    if version == "1.6":
        start = csms.of("StartTransaction")[0]
        stop = csms.of("StopTransaction")[0]
        assert csms.of("Authorize")[0]["id_tag"] == "TAG1"
        assert stop["transaction_id"] == start["transaction_id"]
        assert stop["meter_stop"] >= energy[-1] >= start["meter_start"]
        assert stop["reason"] == "EVDisconnected"
    else:
        events = csms.of("TransactionEvent")
        assert [e["seq_no"] for e in events] == list(range(len(events)))
        assert events[0]["event_type"] == "Started"
        assert events[-1]["event_type"] == "Ended"
        assert {e["transaction_info"]["transaction_id"] for e in events} == {
            events[0]["transaction_info"]["transaction_id"]
        }
        assert events[-1]["transaction_info"]["stopped_reason"] == "EVDisconnected"


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_accepted_profile_is_obeyed_within_one_meter_interval(version: str) -> None:
    async with charger(version, arrivals=[(0, 3600, ev())]) as (_, csms, run, clock):
        await asyncio.sleep(0.15)
        while not meter_values(csms, version):
            await asyncio.sleep(0.01)
        tx = started(csms, version)
        res = await csms.call(tx_profile(version, tx, 6.0), suppress=False)
        accepted_at = clock.now()
        assert res.status == "Accepted", run_rejections(run)
        # The first meter value at least one interval after acceptance shows the new limit.
        deadline = accepted_at + timedelta(seconds=60)

        def after(mv: dict[str, Any]) -> bool:
            return datetime.fromisoformat(mv["timestamp"]) >= deadline

        async with asyncio.timeout(3):
            while not any(after(mv) for mv in meter_values(csms, version)):
                await asyncio.sleep(0.01)
        first = next(mv for mv in meter_values(csms, version) if after(mv))
        assert values(first)[POWER] <= 6 * 230 * 3 + 0.1
        assert values(first)[POWER] == pytest.approx(4140.0, abs=0.1)
        # And the composite schedule says the same, in whole seconds and 0.1 A.
        if version == "1.6":
            cs = await csms.call(
                c16.GetCompositeSchedule(connector_id=1, duration=600, charging_rate_unit="A"),
                suppress=False,
            )
            periods = cs.charging_schedule["charging_schedule_period"]
        else:
            cs = await csms.call(
                c201.GetCompositeSchedule(evse_id=1, duration=600, charging_rate_unit="A"),
                suppress=False,
            )
            periods = cs.schedule["charging_schedule_period"]
        assert cs.status == "Accepted"
        assert periods[0]["start_period"] == 0
        assert periods[0]["limit"] == 6.0
        assert run.station.power_w(1, clock.now()) == pytest.approx(4140.0)


STRICT_CASES = [
    ("stack level too high", {"stack_level": 4}, "stackLevel 4"),
    (
        "too many periods",
        {"periods": [{"start_period": 60 * i, "limit": 16.0} for i in range(5)]},
        "5 periods",
    ),
    ("unit not allowed", {"unit": "W"}, "chargingRateUnit W"),
    ("TxProfile without a transaction", {"connector": 2}, "needs a running transaction"),
]


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_strict_charger_rejects_what_it_cannot_honour(version: str) -> None:
    async with charger(version, arrivals=[(0, 3600, ev())], capabilities=STRICT) as (
        _,
        csms,
        run,
        _clock,
    ):
        if version == "1.6":
            await csms.wait_for("StartTransaction")
        else:
            await csms.wait_for("TransactionEvent")
        tx = started(csms, version)
        for _name, changes, reason in STRICT_CASES:
            res = await csms.call(tx_profile(version, tx, 16.0, **changes), suppress=False)
            assert res.status == "Rejected", _name
            assert reason in run_rejections(run)[-1]
            if version == "2.0.1":
                assert reason in res.status_info["additional_info"]
        assert not run.station.state.profiles
        ok = await csms.call(tx_profile(version, tx, 16.0), suppress=False)
        assert ok.status == "Accepted"


def run_rejections(run: ChargerRun) -> list[str]:
    return list(getattr(_cp(run), "rejections", []))


def _cp(run: ChargerRun) -> Any:
    return run.driver.side if run.driver is not None else None


@pytest.mark.parametrize("version", VERSIONS)
async def test_get_composite_schedule_of_a_tx_default_profile(version: str) -> None:
    async with charger(version) as (_, csms, run, clock):
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        now = clock.now().replace(microsecond=0)
        offset = int((now - start).total_seconds())
        periods = [
            {"start_period": 0, "limit": 16.0},
            {"start_period": offset + 300, "limit": 10.0},
        ]
        schedule = {
            "charging_rate_unit": "A",
            "charging_schedule_period": periods,
            "start_schedule": start.isoformat(),
        }
        if version == "1.6":
            res = await csms.call(
                c16.SetChargingProfile(
                    connector_id=0,
                    cs_charging_profiles={
                        "charging_profile_id": 1,
                        "stack_level": 0,
                        "charging_profile_purpose": "TxDefaultProfile",
                        "charging_profile_kind": "Absolute",
                        "charging_schedule": schedule,
                    },
                ),
                suppress=False,
            )
            assert res.status == "Accepted"
            cs = await csms.call(
                c16.GetCompositeSchedule(connector_id=1, duration=900, charging_rate_unit="W"),
                suppress=False,
            )
            sched = cs.charging_schedule
            assert cs.connector_id == 1
        else:
            res = await csms.call(
                c201.SetChargingProfile(
                    evse_id=0,
                    charging_profile={
                        "id": 1,
                        "stack_level": 0,
                        "charging_profile_purpose": "TxDefaultProfile",
                        "charging_profile_kind": "Absolute",
                        "charging_schedule": [{"id": 1, **schedule}],
                    },
                ),
                suppress=False,
            )
            assert res.status == "Accepted"
            cs = await csms.call(
                c201.GetCompositeSchedule(evse_id=1, duration=900, charging_rate_unit="W"),
                suppress=False,
            )
            sched = cs.schedule
            assert sched["evse_id"] == 1
        assert cs.status == "Accepted"
        got = [(p["start_period"], p["limit"]) for p in sched["charging_schedule_period"]]
        assert got[0] == (0, 11040.0)  # 16 A x 230 V x 3
        assert got[1][1] == 6900.0
        assert 290 <= got[1][0] <= 300
        assert all(isinstance(s, int) for s, _ in got)
        assert sched["charging_rate_unit"] == "W"
        assert sched["duration"] == 900
        # Clearing by purpose removes it; the composite is back to the hardware limit.
        if version == "1.6":
            cleared = await csms.call(
                c16.ClearChargingProfile(charging_profile_purpose="TxDefaultProfile"),
                suppress=False,
            )
        else:
            cleared = await csms.call(
                c201.ClearChargingProfile(
                    charging_profile_criteria={"charging_profile_purpose": "TxDefaultProfile"}
                ),
                suppress=False,
            )
        assert cleared.status == "Accepted"
        assert not run.station.state.profiles


@pytest.mark.parametrize("version", VERSIONS)
async def test_remote_start_and_stop(version: str) -> None:
    async with charger(version) as (_, csms, run, _clock):
        await csms.wait_for("StatusNotification")
        if version == "1.6":
            res = await csms.call(
                c16.RemoteStartTransaction(id_tag="REMOTE", connector_id=2), suppress=False
            )
            assert res.status == "Accepted"
            start = await csms.wait_for("StartTransaction")
            tx: Any = start["transaction_id"]
            assert start["connector_id"] == 2
            stop = await csms.call(c16.RemoteStopTransaction(transaction_id=tx), suppress=False)
            assert stop.status == "Accepted"
            ended = await csms.wait_for("StopTransaction")
            assert ended["reason"] == "Remote"
            assert not csms.of("Authorize")
        else:
            res = await csms.call(
                c201.RequestStartTransaction(
                    id_token={"id_token": "REMOTE", "type": "Central"},
                    remote_start_id=7,
                    evse_id=2,
                ),
                suppress=False,
            )
            assert res.status == "Accepted"
            started_event = await csms.wait_for("TransactionEvent")
            assert started_event["transaction_info"]["transaction_id"] == res.transaction_id
            assert started_event["transaction_info"]["remote_start_id"] == 7
            assert started_event["trigger_reason"] == "RemoteStart"
            stop = await csms.call(
                c201.RequestStopTransaction(transaction_id=res.transaction_id), suppress=False
            )
            assert stop.status == "Accepted"
            ended = await csms.wait_for("TransactionEvent", lambda p: p["event_type"] == "Ended")
            assert ended["transaction_info"]["stopped_reason"] == "Remote"
        assert run.driver is not None
        assert run.driver.results[0].reason == "Remote"


@pytest.mark.parametrize("version", VERSIONS)
async def test_configuration_and_trigger_over_the_wire(version: str) -> None:
    async with charger(version, capabilities=STRICT) as (_, csms, _run, _clock):
        if version == "1.6":
            conf = await csms.call(
                c16.GetConfiguration(key=["ChargeProfileMaxStackLevel", "Unknown"]),
                suppress=False,
            )
            assert conf.configuration_key[0]["value"] == "3"
            assert conf.unknown_key == ["Unknown"]
            changed = await csms.call(
                c16.ChangeConfiguration(key="HeartbeatInterval", value="10"), suppress=False
            )
            assert changed.status == "Accepted"
            trig = await csms.call(
                c16.TriggerMessage(requested_message="Heartbeat"), suppress=False
            )
        else:
            got = await csms.call(
                c201.GetVariables(
                    get_variable_data=[
                        {
                            "component": {"name": "SmartChargingCtrlr"},
                            "variable": {"name": "PeriodsPerSchedule"},
                        }
                    ]
                ),
                suppress=False,
            )
            assert got.get_variable_result[0]["attribute_value"] == "4"
            trig = await csms.call(
                c201.TriggerMessage(requested_message="Heartbeat"), suppress=False
            )
        assert trig.status == "Accepted"
        before = len(csms.of("Heartbeat"))
        await csms.wait_for("Heartbeat", lambda _: len(csms.of("Heartbeat")) > before)


async def test_a_mixed_site_runs_to_the_end_and_reports() -> None:
    clock = ScaledClock(datetime.now(UTC), SPEED)
    start = clock.now()
    cfgs = [
        ChargerConfig("S1", "1.6", ChargerSpec.uniform(1, 11000.0)),
        ChargerConfig("S2", "2.0.1", ChargerSpec.uniform(1, 11000.0)),
    ]
    runs = [ChargerRun(c, Station(c.spec, start)) for c in cfgs]
    arrivals = {
        c.charger_id: [
            Arrival(start, SessionRequest(1, ev(), "T", departure=start + timedelta(hours=2)))
        ]
        for c in cfgs
    }
    ticks: list[int] = []
    async with ocpp_server() as server:
        await run_site(
            runs,
            server.url,
            clock,
            arrivals,
            start + timedelta(seconds=300),
            on_tick=lambda: ticks.append(1),
            tick_s=0.05,
        )
    data = report(runs, start, clock.now(), SPEED, server.url)
    assert ticks
    assert [c["connected"] for c in data["chargers"]] == [True, True]
    assert [s["stop_reason"] for s in data["sessions"]] == ["Local", "Local"]
    for c in data["chargers"]:
        assert 4 <= len(c["power_kw_per_minute"]) <= 6
        assert max(c["power_kw_per_minute"]) == pytest.approx(11.0, abs=0.01)
    assert data["site_peak_kw"] == pytest.approx(22.0, abs=0.02)
    # 11 kW on each charger from its transaction start to the end (a loaded machine may take a
    # few simulated seconds to connect and boot, so the charging time is measured, not assumed).
    charging_s = [
        (
            datetime.fromisoformat(s["stopped_at"]) - datetime.fromisoformat(s["arrival"])
        ).total_seconds()
        for s in data["sessions"]
    ]
    assert all(240 <= t <= 300 for t in charging_s)
    assert data["energy_delivered_kwh"] == pytest.approx(11 * sum(charging_s) / 3600, rel=0.05)
