"""The planning loop after a restart of the central system (a new ``SmartCharging`` on the same
database): chargers that stayed up only reconnect, and what they have installed is read back
before they are planned again (tests/faults/test_csms_killed.py runs the whole thing)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import csms.services.smart_charging as smart_module
from csms.domain.commands import Command, CommandResult, RawCall
from csms.domain.leadership import Fence
from csms.domain.profiles import ChargerLimits, PowerSchedule
from csms.services.audit import AuditFilter
from csms.services.notifications import Notice, Notifier
from csms.services.site_plan import grid_start
from csms.services.smart_charging import (
    RECONCILING,
    SmartCharging,
    direction_within,
    schedule_bounds,
)
from tests.csms.test_smart_charging import (  # noqa: F401 - make_env is a fixture
    AMPS_TO_W,
    T0,
    Env,
    FakeGateway,
    MakeEnv,
    make_env,
)

HORIZON_S = 8 * 3600  # the test site's horizon


class ReadBackGateway(FakeGateway):
    """A FakeGateway whose answers to some actions carry a payload, and that can do something
    once it answered (a 2.0.1 station sends its ReportChargingProfiles then)."""

    def __init__(self) -> None:
        super().__init__()
        self.payloads: dict[str, dict[str, Any]] = {}
        self.after: dict[str, Callable[[str, dict[str, Any]], None]] = {}

    async def send(
        self, charge_point_id: str, command: Command, *, fence: Fence | None = None
    ) -> CommandResult:
        result = await super().send(charge_point_id, command, fence=fence)
        assert isinstance(command, RawCall)
        payload = self.payloads.get(command.action)
        if payload is not None and result.ok:
            result = CommandResult(ok=True, status=payload.get("status"), payload=payload)
        hook = self.after.get(command.action)
        if hook is not None:
            hook(charge_point_id, command.payload)
        return result

    def actions(self, charge_point_id: str) -> list[str]:
        """What was sent to the charger, SetChargingProfile by purpose."""
        out = []
        for event, cp, action, payload in self.log:
            if event != "send" or cp != charge_point_id:
                continue
            if action == "SetChargingProfile":
                profile = payload.get("csChargingProfiles") or payload["chargingProfile"]
                out.append(profile["chargingProfilePurpose"])
            else:
                out.append(action)
        return out


async def before_the_restart(env: Env, cp: str = "A", version: str = "ocpp1.6") -> int:
    """A charger that booted with the first process (capabilities read, TxDefaultProfile
    installed) and a session charging at 11 kW (15.9 A) under an accepted TxProfile."""
    await env.charger(cp)
    await env.stations.connected(cp, version, None)
    await env.stations.save_capabilities(cp, {version: {}})
    await env.drain()
    await env.smart._install_default("S1", cp)
    tx = await env.start(cp)
    await env.needs(cp, 20_000.0, 11_000.0)
    await env.replan()
    assert env.smart.tx_control[tx].installed is not None
    return tx


def restarted(env: Env, gw: FakeGateway) -> SmartCharging:
    """The loop of a new process on the same database (it remembers nothing)."""
    old = env.smart
    return SmartCharging(old._sessions, env.clock, gw, Notifier(), old._settings)


async def reconnect(smart: SmartCharging, cp: str, *then: Notice) -> None:
    """The charger connects (and sends ``then``); wait until the loop's work on it is done."""
    smart._loop("S1")  # made outside the group: its planning task would run forever in it
    async with asyncio.TaskGroup() as tg:
        smart._tg = tg
        await smart._handle(Notice("connected", cp))
        for notice in then:
            await smart._handle(notice)
    smart._tg = None


async def plan(smart: SmartCharging) -> Any:
    row = await smart.audit.plan(await smart.replan("S1", "test") or -1)
    assert row is not None
    return row


@pytest.fixture(name="env")
async def first_process(make_env: MakeEnv) -> Env:  # noqa: F811 - the fixture imported above
    """The central system before its restart."""
    return await make_env()


@pytest.fixture(autouse=True)
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smart_module, "RECONNECT_GRACE_S", 0.0)


def composite(limit_a: float, minutes: int = 1440) -> dict[str, Any]:
    """A 1.6 GetCompositeSchedule answer: ``limit_a`` from now for ``minutes``."""
    return {
        "status": "Accepted",
        "connectorId": 1,
        "chargingSchedule": {
            "startSchedule": T0.isoformat(),
            "duration": minutes * 60,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_a}],
        },
    }


async def test_a_reconnected_1_6_charger_is_reserved_until_reconciled_then_reinstalled(
    env: Env,
) -> None:
    tx = await before_the_restart(env)
    env.clock.advance(600)
    gw = ReadBackGateway()
    gw.payloads["GetCompositeSchedule"] = composite(15.9)
    smart = restarted(env, gw)
    # Back before its "connected" notice is handled: what it has installed is unknown.
    first = await plan(smart)
    assert first.inputs["reservations"] == [
        {"charge_point_id": "A", "evse_id": 1, "watts": 22_000.0, "reason": RECONCILING}
    ]
    assert gw.log == []
    await reconnect(smart, "A")
    # The safety net installed again, then what is in force read back (1.6 cannot list profiles).
    assert gw.actions("A") == ["TxDefaultProfile", "GetCompositeSchedule"]
    request = next(p for _, _, a, p in gw.log if a == "GetCompositeSchedule")
    assert request == {"connectorId": 1, "duration": HORIZON_S, "chargingRateUnit": "A"}
    control, sc = smart.cp_control["A"], smart.tx_control[tx]
    assert (control.known, control.reconciling, control.default_limit_w) == (True, False, 0.0)
    assert sc.schedule is not None
    assert sc.floor is None  # the composite's limit changes on the planning grid: exact
    assert sc.schedule.watts_at(env.clock.now()) == pytest.approx(15.9 * AMPS_TO_W)
    assert sc.installed is None
    assert "charger reconciled" in smart._loops["S1"].reasons
    # Planned again: its profile is sent again (reinstalled), as the same limit: no increase.
    after = await plan(smart)
    assert after.inputs["reservations"] == []
    rows = await smart.audit.profiles(AuditFilter(), plan_id=after.id)
    assert [(r.purpose, r.phase, r.status, r.limit_w) for r in rows] == [
        ("TxProfile", "decrease", "Accepted", pytest.approx(15.9 * AMPS_TO_W))
    ]


async def test_a_2_0_1_station_reports_what_it_has_installed(env: Env) -> None:
    tx = await before_the_restart(env, "B", "ocpp2.0.1")
    installed = env.gw.profiles("answer")[-1][1]
    assert installed["chargingProfile"]["chargingProfilePurpose"] == "TxProfile"
    gw = ReadBackGateway()
    smart = restarted(env, gw)

    def report(cp: str, request: dict[str, Any]) -> None:
        notice = Notice(
            "profiles_reported",
            cp,
            1,
            data={
                "requestId": request["requestId"],
                "chargingLimitSource": "CSO",
                "evseId": 1,
                "chargingProfile": [installed["chargingProfile"]],
                "tbc": False,
            },
        )
        asyncio.get_running_loop().call_soon(smart._on_profiles_reported, notice)

    gw.after["GetChargingProfiles"] = report
    await reconnect(smart, "B")
    assert gw.actions("B") == ["TxDefaultProfile", "GetChargingProfiles"]
    request = next(p for _, _, a, p in gw.log if a == "GetChargingProfiles")
    assert request["chargingProfile"] == {"chargingProfilePurpose": "TxProfile"}
    sc = smart.tx_control[tx]
    assert sc.schedule is not None
    assert sc.floor is None
    assert sc.schedule.watts_at(env.clock.now()) == pytest.approx(15.9 * AMPS_TO_W)
    assert smart._reports == {}  # nothing left waiting


async def test_a_2_0_1_station_without_profiles_of_ours_is_at_its_tx_default(env: Env) -> None:
    tx = await before_the_restart(env, "B", "ocpp2.0.1")
    gw = ReadBackGateway()
    gw.payloads["GetChargingProfiles"] = {"status": "NoProfiles"}
    smart = restarted(env, gw)
    await reconnect(smart, "B")
    assert gw.actions("B") == ["TxDefaultProfile", "GetChargingProfiles"]
    sc = smart.tx_control[tx]
    assert (sc.schedule, sc.floor, sc.installed) == (None, None, None)


async def test_limits_known_only_within_bounds_are_lowered_before_being_raised(
    env: Env,
) -> None:
    """The charger answers nothing useful: its session may be anywhere between 0 and its
    maximum, so its new profile is first sent lowered to what it surely has (0 W), and raised
    only once every decrease of the plan was accepted."""
    tx = await before_the_restart(env)
    gw = ReadBackGateway()
    gw.payloads["GetCompositeSchedule"] = {"status": "Rejected"}
    smart = restarted(env, gw)
    await reconnect(smart, "A")
    sc = smart.tx_control[tx]
    assert sc.floor is not None
    assert sc.schedule is not None
    assert set(sc.floor.watts) == {0.0}
    assert set(sc.schedule.watts) == {22_000.0}
    after = await plan(smart)
    rows = await smart.audit.profiles(AuditFilter(), plan_id=after.id)
    assert [(r.phase, r.limit_w) for r in sorted(rows, key=lambda r: r.id or 0)] == [
        ("decrease", 0.0),
        ("increase", pytest.approx(15.9 * AMPS_TO_W)),
    ]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("Rejected", "TxProfile not accepted (Rejected)"),
        # An error made it unmanaged until the charger reconnects, which it just did.
        ("NotSupported: no", None),
        ("no answer within 30 s", None),
    ],
)
async def test_a_session_unmanaged_before_the_restart_stays_unmanaged(
    make_env: MakeEnv,  # noqa: F811 - the fixture imported above
    answer: str,
    reason: str | None,
) -> None:
    env = await make_env()
    await env.charger("A")
    await env.stations.connected("A", "ocpp1.6", None)
    await env.stations.save_capabilities("A", {"ocpp1.6": {}})
    await env.drain()
    await env.smart._install_default("S1", "A")
    tx = await env.start("A")
    env.gw.script["A"] = [answer, answer]  # a rejection is tried twice
    await env.replan()
    gw = ReadBackGateway()
    gw.payloads["GetCompositeSchedule"] = composite(0.0)
    smart = restarted(env, gw)
    await reconnect(smart, "A")
    assert smart.tx_control[tx].unmanaged_reason == reason
    reserved = [r["reason"] for r in (await plan(smart)).inputs["reservations"]]
    assert reserved == ([] if reason is None else [reason])


async def test_a_session_found_non_compliant_before_the_restart_stays_unmanaged(
    env: Env,
) -> None:
    tx = await before_the_restart(env)
    finding = "non-compliant: draws 20000 W over its limit of 11000 W"
    audit_id = env.smart.tx_control[tx].audit_id
    assert audit_id is not None
    await env.smart.audit.set_verification(audit_id, finding, env.clock.now(), overrides=True)
    gw = ReadBackGateway()
    gw.payloads["GetCompositeSchedule"] = composite(15.9)
    smart = restarted(env, gw)
    await reconnect(smart, "A")
    assert smart.tx_control[tx].unmanaged_reason == finding
    after = await plan(smart)
    assert after.inputs["reservations"] == [
        {"charge_point_id": "A", "evse_id": 1, "watts": 22_000.0, "reason": finding}
    ]


async def test_a_charger_that_boots_after_connecting_is_set_up_by_its_boot(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    await before_the_restart(env)
    monkeypatch.setattr(smart_module, "RECONNECT_GRACE_S", 0.05)
    gw = ReadBackGateway()
    smart = restarted(env, gw)
    await reconnect(smart, "A", Notice("booted", "A"))
    assert gw.log == []  # nothing asked of it before its boot is answered
    control = smart.cp_control["A"]
    assert (control.known, control.reconciling) == (False, False)


async def test_a_charger_that_never_booted_with_us_is_left_to_its_boot(env: Env) -> None:
    await env.charger("A")  # registered, never connected: no capabilities stored
    gw = ReadBackGateway()
    smart = restarted(env, gw)
    await reconnect(smart, "A")
    assert gw.log == []
    assert smart.cp_control["A"].reconciling is False
    assert (await plan(smart)).inputs["reservations"][0]["reason"] != RECONCILING


def test_schedule_bounds_on_the_planning_grid() -> None:
    """A profile from 08:02 (a minute before it was sent) changing at 08:10 and ending at 08:30,
    in amps, on a 5-minute grid with a 0 W TxDefaultProfile outside it."""
    start = T0 + timedelta(minutes=2)
    schedule = {
        "startSchedule": start.isoformat().replace("+00:00", "Z"),
        "duration": 28 * 60,
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 16.0},
            {"startPeriod": 8 * 60, "limit": 10.0},
        ],
    }
    limits = ChargerLimits(phases=3, voltage_v=230.0)
    bounds = schedule_bounds(
        schedule, limits=limits, fallback_w=0.0, step_s=300, horizon_s=HORIZON_S
    )
    assert bounds is not None
    low, high = bounds
    assert low.start == high.start == grid_start(start, 300) == T0
    w16, w10 = 16 * AMPS_TO_W, 10 * AMPS_TO_W
    # 08:00-05 (TxDefault, then 16 A), 05-10, 10-15, 15-20, 20-25, 25-30, then 0.
    assert low.watts == (0.0, w16, w10, w10, w10, w10)
    assert high.watts == (w16, w16, w10, w10, w10, w10)
    assert (
        schedule_bounds(
            {"chargingSchedulePeriod": []}, limits=limits, fallback_w=0.0, step_s=300, horizon_s=60
        )
        is None
    )


def test_direction_within_bounds() -> None:
    grid = (T0, T0 + timedelta(hours=1))

    def flat(watts: float) -> PowerSchedule:
        return PowerSchedule(T0, 900, (watts,) * 4)

    low, high = flat(2000.0), flat(8000.0)
    assert direction_within(low, high, flat(1000.0), 0.0, grid) == "decrease"
    assert direction_within(low, high, flat(9000.0), 0.0, grid) == "increase"
    assert direction_within(low, high, flat(5000.0), 0.0, grid) == "mixed"
    exact = flat(5000.0)
    assert direction_within(exact, exact, flat(6000.0), 0.0, grid) == "increase"


async def test_a_charger_gone_during_its_reconciliation_is_read_again_when_back(env: Env) -> None:
    tx = await before_the_restart(env)
    gw = ReadBackGateway()
    gw.script["A"] = ["Accepted", "drop"]  # the TxDefaultProfile, then the connection is lost
    smart = restarted(env, gw)
    await reconnect(smart, "A")
    assert gw.actions("A") == ["TxDefaultProfile", "GetCompositeSchedule"]
    assert smart.cp_control["A"].known is False
    gw.offline.clear()
    gw.payloads["GetCompositeSchedule"] = composite(15.9)
    await reconnect(smart, "A")
    assert gw.actions("A")[2:] == ["TxDefaultProfile", "GetCompositeSchedule"]
    assert smart.cp_control["A"].known is True
    sc = smart.tx_control[tx]
    assert sc.schedule is not None
    assert sc.floor is None
