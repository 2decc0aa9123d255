"""The smart-charging loop against a real SQLite database and a fake gateway (no sockets):
decreases before increases, held increases, unmanaged sessions and their reservations, no
resend of an identical profile, the plan audit row, planner failure, TxDefaultProfile at boot, and
meter compliance / deviation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import csms.services.smart_charging as smart_module
from csms.db.engine import create_engine, session_factory
from csms.db.migrate import upgrade_to_head
from csms.db.models import ProfileAudit
from csms.domain.clock import ManualClock
from csms.domain.commands import Command, CommandResult, RawCall
from csms.domain.events import TransactionEnded, TransactionStarted
from csms.domain.leadership import Fence
from csms.ports import ChargerGateway
from csms.services.audit import AuditFilter
from csms.services.notifications import Notice, Notifier
from csms.services.sites import SiteService
from csms.services.smart_charging import SessionControl, SmartCharging
from csms.services.stations import StationService
from csms.settings import SmartChargingSettings

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
CAP_KW = 22.0
AMPS_TO_W = 3 * 230.0


# --- a scripted gateway ---------------------------------------------------------------------------


class FakeGateway:
    """Answers per charger as scripted (default Accepted) and logs every send and answer in order.

    Script entries: "Accepted", "Rejected", "silent" (never answers), "drop" (the connection is
    lost: an error, and the charger is offline from then on), or any other text: an error.
    """

    def __init__(self) -> None:
        self.log: list[tuple[str, str, str, dict[str, Any]]] = []
        self.script: dict[str, list[str]] = {}
        self.delay: dict[str, float] = {}
        self.offline: set[str] = set()

    def is_connected(self, charge_point_id: str) -> bool:
        return charge_point_id not in self.offline

    async def send(
        self, charge_point_id: str, command: Command, *, fence: Fence | None = None
    ) -> CommandResult:
        assert isinstance(command, RawCall)
        entry = (charge_point_id, command.action, command.payload)
        self.log.append(("send", *entry))
        queue = self.script.get(charge_point_id)
        answer = queue.pop(0) if queue else "Accepted"
        try:
            await asyncio.sleep(self.delay.get(charge_point_id, 0.0))
            if answer == "silent":
                await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.log.append(("cancelled", *entry))
            raise
        self.log.append(("answer", *entry))
        if answer in ("Accepted", "Rejected"):
            return CommandResult(ok=True, status=answer, payload={"status": answer}, latency_s=0.01)
        if answer == "drop":
            self.offline.add(charge_point_id)
            return CommandResult(ok=False, error="connection lost before the answer")
        return CommandResult(ok=False, error=answer)

    def profiles(self, event: str = "send") -> list[tuple[str, dict[str, Any]]]:
        """(charger, payload) of every SetChargingProfile with this event, in order."""
        return [
            (cp, p)
            for ev, cp, action, p in self.log
            if ev == event and action == "SetChargingProfile"
        ]


def _schedule(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["csChargingProfiles"]["chargingSchedule"]  # type: ignore[no-any-return]


def purpose(payload: dict[str, Any]) -> str:
    return payload["csChargingProfiles"]["chargingProfilePurpose"]  # type: ignore[no-any-return]


def limit_now(payload: dict[str, Any]) -> float:
    """The limit of the profile's first period (amps per phase here: no capabilities stored)."""
    return float(_schedule(payload)["chargingSchedulePeriod"][0]["limit"])


def limits(payload: dict[str, Any]) -> list[float]:
    return [float(p["limit"]) for p in _schedule(payload)["chargingSchedulePeriod"]]


# --- the system under test ------------------------------------------------------------------------


@dataclass
class Env:
    smart: SmartCharging
    stations: StationService
    sites: SiteService
    clock: ManualClock
    gw: FakeGateway
    tx: dict[str, int] = field(default_factory=dict)

    async def charger(self, cp: str, max_w: float = 22_000.0) -> None:
        await self.stations.register_charge_point(cp, site_id="S1", max_power_w=max_w, phases=3)

    async def start(self, cp: str, meter_wh: float = 0.0) -> int:
        started = TransactionStarted(1, 1, None, self.clock.now(), meter_wh)
        result = await self.stations.start_transaction(cp, "ocpp1.6", started)
        self.tx[cp] = result.transaction_id
        return result.transaction_id

    async def needs(
        self, cp: str, energy_wh: float, max_w: float | None = None, hours: float = 8.0
    ) -> None:
        await self.sites.set_needs(
            self.tx[cp],
            departure=self.clock.now() + timedelta(hours=hours),
            energy_wh=energy_wh,
            max_power_w=max_w,
        )

    async def drain(self) -> None:
        """Hand every queued notice to the loop, as ``run()`` would."""
        while not self.smart._notices.empty():
            await self.smart._handle(self.smart._notices.get_nowait())

    async def replan(self) -> int:
        await self.drain()
        plan_id = await self.smart.replan("S1", "test")
        assert plan_id is not None
        return plan_id

    async def rows(self, plan_id: int | None = None, **f: Any) -> dict[str, ProfileAudit]:
        """The profile audit rows (of one plan), by charger."""
        rows = await self.smart.audit.profiles(AuditFilter(**f), plan_id=plan_id)
        return {r.charge_point_id: r for r in rows}

    def reasons(self) -> set[str]:
        return set(self.smart._loops["S1"].reasons)


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture
async def make_env(tmp_path: Path) -> AsyncIterator[MakeEnv]:
    engines: list[AsyncEngine] = []

    async def make(**settings: Any) -> Env:
        engine = create_engine(f"sqlite:///{tmp_path / f'csms{len(engines)}.db'}")
        engines.append(engine)
        await upgrade_to_head(engine)
        sessions = session_factory(engine)
        clock = ManualClock(T0)
        notifier = Notifier()
        gw = FakeGateway()
        base: dict[str, Any] = {
            "coalesce_s": 0,
            "call_timeout_s": 0.2,
            "retries": 0,
            "retry_backoff_s": 0,
            "verify_composite": False,
            "compliance_grace_s": 60,
            "compliance_readings": 2,
            "deviation_window_s": 600,
            "deviation_hold_s": 1800,
        }
        gateway: ChargerGateway = gw
        smart = SmartCharging(
            sessions, clock, gateway, notifier, SmartChargingSettings(**{**base, **settings})
        )
        stations = StationService(sessions, clock, notifier=notifier)
        sites = SiteService(sessions, clock, notifier)
        await sites.upsert(
            "S1",
            {"capacity_kw": CAP_KW, "method": "lp", "horizon_hours": 8.0, "tx_default_kw": 0.0},
        )
        return Env(smart, stations, sites, clock, gw)

    try:
        yield make
    finally:
        for engine in engines:
            await engine.dispose()


@pytest.fixture
async def env(make_env: MakeEnv) -> Env:
    return await make_env()


async def three_chargers(env: Env) -> int:
    """A and C charge at 11 kW each (the whole cap), B needs nothing: plan 1. Returns its id."""
    for cp in "ABC":
        await env.charger(cp)
        await env.start(cp)
    await env.needs("A", 20_000.0, 11_000.0)
    await env.needs("B", 0.0)
    await env.needs("C", 20_000.0, 11_000.0)
    plan_id = await env.replan()
    sent = dict(env.gw.profiles("answer"))
    assert {cp: limit_now(p) for cp, p in sent.items()} == {"A": 15.9, "B": 0.0, "C": 15.9}
    return plan_id


async def swap_needs(env: Env) -> None:
    """Now A and C need nothing and B wants the whole cap."""
    await env.needs("A", 0.0)
    await env.needs("C", 0.0)
    await env.needs("B", 20_000.0)


# --- (a) decreases first --------------------------------------------------------------------------


async def test_first_plan_sends_every_profile_as_a_decrease(env: Env) -> None:
    plan_id = await three_chargers(env)
    rows = await env.rows(plan_id)
    expected = ("decrease", "Accepted", "TxProfile")
    assert {cp: (r.phase, r.status, r.purpose) for cp, r in rows.items()} == dict.fromkeys(
        "ABC", expected
    )
    assert rows["A"].limit_w == pytest.approx(15.9 * AMPS_TO_W)
    assert rows["B"].limit_w == 0.0
    assert rows["A"].transaction_id == env.tx["A"]
    assert rows["A"].ocpp_transaction_id == str(env.tx["A"])
    assert rows["A"].payload["csChargingProfiles"]["transactionId"] == env.tx["A"]


async def test_every_decrease_is_answered_before_any_increase_is_sent(env: Env) -> None:
    await three_chargers(env)
    await swap_needs(env)
    env.gw.log.clear()
    env.gw.delay.update({"A": 0.05, "C": 0.02})  # slow answers: an increase must still wait
    plan_id = await env.replan()
    events = [(ev, cp) for ev, cp, action, _ in env.gw.log if action == "SetChargingProfile"]
    first_increase = events.index(("send", "B"))
    assert {("answer", "A"), ("answer", "C")} <= set(events[:first_increase])
    # decreases go out together, not one after the other
    assert events.index(("send", "C")) < events.index(("answer", "A"))
    sent = dict(env.gw.profiles("answer"))
    assert {cp: limit_now(p) for cp, p in sent.items()} == {"A": 0.0, "B": 31.8, "C": 0.0}
    rows = await env.rows(plan_id)
    assert {cp: (r.phase, r.status) for cp, r in rows.items()} == {
        "A": ("decrease", "Accepted"),
        "C": ("decrease", "Accepted"),
        "B": ("increase", "Accepted"),
    }
    assert rows["B"].limit_w == pytest.approx(31.8 * AMPS_TO_W)
    assert sum(r.limit_w or 0.0 for r in rows.values()) <= CAP_KW * 1000.0
    assert rows["A"].created_at is not None


# --- (b) an unconfirmed decrease holds back every increase ----------------------------------------


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("Rejected", "TxProfile not accepted (Rejected)"),
        ("silent", "TxProfile not accepted (no answer within 0.2 s)"),
        (
            "NotSupported: no SmartCharging",
            "TxProfile not accepted (NotSupported: no SmartCharging)",
        ),
    ],
)
async def test_an_unconfirmed_decrease_holds_back_increases_and_reserves_that_charger(
    env: Env, answer: str, reason: str
) -> None:
    await three_chargers(env)
    await swap_needs(env)
    env.gw.log.clear()
    env.gw.script["A"] = [answer, answer]  # a rejection is tried twice
    plan_id = await env.replan()
    sent = [cp for cp, _ in env.gw.profiles("send")]
    assert sorted(set(sent)) == ["A", "C"]  # B never sent
    rows = await env.rows(plan_id)
    assert rows["A"].phase == "decrease"
    assert rows["A"].status == ("Rejected" if answer == "Rejected" else "error")
    assert (rows["C"].phase, rows["C"].status) == ("decrease", "Accepted")
    held = rows["B"]
    assert (held.phase, held.status, held.purpose) == ("increase", "held", "TxProfile")
    assert held.error == "held back: a decrease was not confirmed"
    assert held.attempts == 0
    assert limit_now(held.payload) == 31.8  # what would have been sent
    assert "decrease not confirmed" in env.reasons()
    assert env.smart.tx_control[env.tx["A"]].unmanaged_reason == reason

    next_id = await env.replan()
    plan = await env.smart.audit.plan(next_id)
    assert plan is not None
    assert plan.inputs["reservations"] == [
        {"charge_point_id": "A", "evse_id": 1, "watts": 22_000.0, "reason": reason}
    ]
    assert plan.reserved_kw == 22.0
    assert set(plan.plan["sessions"]) == {"B/1", "C/1"}
    # the whole cap is reserved for A: nobody else may be raised
    assert all(not any(s["power_kw"]) for s in plan.plan["sessions"].values())
    assert ("send", "B") not in [(ev, cp) for ev, cp, *_ in env.gw.log]


async def test_an_unconfirmed_increase_requests_a_replan(env: Env) -> None:
    await three_chargers(env)
    await swap_needs(env)
    env.gw.script["B"] = ["Rejected", "Rejected"]  # a retry too
    plan_id = await env.replan()
    rows = await env.rows(plan_id)
    assert (rows["B"].phase, rows["B"].status) == ("increase", "Rejected")
    assert "increase not confirmed" in env.reasons()
    assert env.smart.tx_control[env.tx["B"]].unmanaged_reason == "TxProfile not accepted (Rejected)"


# --- (c) rejected and unanswered profiles ---------------------------------------------------------


async def test_a_rejected_profile_makes_the_session_unmanaged_until_it_ends(env: Env) -> None:
    await env.charger("A")
    await env.start("A")
    env.gw.script["A"] = ["Rejected", "Rejected"]  # a retry too
    await env.replan()
    sc = env.smart.tx_control[env.tx["A"]]
    assert sc.unmanaged_reason == "TxProfile not accepted (Rejected)"
    assert sc.unmanaged_until_reconnect is False
    assert sc.installed is None
    sends = len(env.gw.log)
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["reservations"] == [
        {
            "charge_point_id": "A",
            "evse_id": 1,
            "watts": 22_000.0,
            "reason": "TxProfile not accepted (Rejected)",
        }
    ]
    assert plan.status == "no_sessions"
    assert len(env.gw.log) == sends  # a reserved session gets no profile
    # a reconnect does not forgive a rejection
    await env.smart._handle(Notice("connected", "A"))
    assert sc.unmanaged_reason is not None
    # the session ends: the next one on that charger is managed again
    await env.stations.stop_transaction(
        "A", TransactionEnded(str(env.tx["A"]), env.clock.now(), 100.0, "EVDisconnected")
    )
    env.clock.advance(60)
    await env.start("A")
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["reservations"] == []
    assert env.gw.profiles("answer")[-1][0] == "A"


async def test_no_answer_is_forgiven_when_the_charger_reconnects(env: Env) -> None:
    await env.charger("A")
    await env.charger("B")
    await env.start("A")
    await env.start("B")
    env.gw.script["A"] = ["no answer within 30 s"]  # the real gateway's timeout
    await env.replan()
    sc = env.smart.tx_control[env.tx["A"]]
    assert (sc.unmanaged_reason, sc.unmanaged_until_reconnect) == (
        "TxProfile not accepted (no answer within 30 s)",
        True,
    )
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert [r["charge_point_id"] for r in plan.inputs["reservations"]] == ["A"]
    await env.smart._handle(Notice("connected", "B"))  # another charger: nothing changes
    assert unmanaged(sc) is not None
    await env.smart._handle(Notice("connected", "A"))
    assert (unmanaged(sc), sc.unmanaged_until_reconnect) == (None, False)
    assert "charger online" in env.reasons()
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["reservations"] == []
    assert set(plan.plan["sessions"]) == {"A/1", "B/1"}
    assert [cp for cp, _ in env.gw.profiles("send")].count("A") == 2  # tried again


async def test_timeouts_are_resent_while_connected_but_not_after_the_connection_dropped(
    make_env: MakeEnv,
) -> None:
    env = await make_env(retries=2)
    await env.charger("A")
    await env.charger("B")
    await env.start("A")
    await env.start("B")
    env.gw.script["A"] = ["silent", "Accepted"]
    env.gw.script["B"] = ["drop", "Accepted"]
    plan_id = await env.replan()
    rows = await env.rows(plan_id)
    assert (rows["A"].status, rows["A"].attempts) == ("Accepted", 2)
    assert (rows["B"].status, rows["B"].attempts) == ("error", 1)
    assert rows["B"].error == "connection lost before the answer"
    assert env.smart.tx_control[env.tx["B"]].unmanaged_until_reconnect is True
    assert [cp for cp, _ in env.gw.profiles("send")].count("A") == 2


# --- (d) no resend of the same profile ------------------------------------------------------------


async def test_an_identical_replan_sends_nothing(env: Env) -> None:
    await three_chargers(env)
    sends = len(env.gw.log)
    plan_id = await env.replan()
    assert len(env.gw.log) == sends
    assert await env.rows(plan_id) == {}
    await env.needs("A", 5_000.0, 11_000.0)  # something changed for A only
    plan_id = await env.replan()
    assert [cp for cp, _ in env.gw.profiles("send")[3:]] == ["A"]
    assert set(await env.rows(plan_id)) == {"A"}


async def test_a_replan_later_in_the_same_step_resends_only_changed_limits(env: Env) -> None:
    await three_chargers(env)
    env.clock.advance(60)  # same step of the site's grid: A and C lose a minute of charging
    await env.replan()
    # their last step moves from 3 kW to 3.7 kW: both under 6 A, sent as 0 either way
    assert env.gw.profiles("send")[3:] == []
    await env.needs("A", 21_500.0, 11_000.0)  # A's last step is now above the minimum
    await env.replan()
    sent = len(env.gw.profiles("send"))
    env.clock.advance(60)
    plan_id = await env.replan()
    # A's and C's last steps grow by a minute of 11 kW (C's now reaches 6 A); B's zeros stay
    assert sorted(cp for cp, _ in env.gw.profiles("send")[sent:]) == ["A", "C"]
    assert set(await env.rows(plan_id)) == {"A", "C"}


# --- (e) the plan audit row -----------------------------------------------------------------------


async def test_the_plan_row_records_inputs_plan_status_and_trigger(env: Env) -> None:
    await env.charger("A")
    await env.charger("B")  # idle, no TxDefaultProfile confirmed: reserves its maximum
    await env.start("A")
    await env.needs("A", 10_000.0, 7_000.0, hours=2.0)
    await env.sites.upsert("S1", {"capacity_kw": 40.0, "safety_margin_kw": 2.0})
    await env.drain()
    plan_id = await env.smart.replan("S1", "session started, needs updated")
    assert plan_id is not None
    plan = await env.smart.audit.plan(plan_id)
    assert plan is not None
    assert plan.site_id == "S1"
    assert plan.trigger == "session started, needs updated"
    assert (plan.method, plan.status) == ("lp", "optimal")
    assert plan.fallback_reason is None
    assert plan.sessions == 1
    assert (plan.capacity_kw, plan.reserved_kw) == (38.0, 22.0)
    assert plan.created_at is not None
    assert plan.inputs["cap_kw"] == [38.0] * 8
    assert plan.inputs["reservations"] == [
        {
            "charge_point_id": "B",
            "evse_id": 1,
            "watts": 22_000.0,
            "reason": "idle: no confirmed TxDefaultProfile",
        }
    ]
    problem = plan.inputs["problem"]
    assert problem["site"]["capacity_kw"] == pytest.approx(16.0)
    assert problem["site"]["horizon_steps"] == 8
    (session,) = problem["sessions"]
    assert session["id"] == "A/1"
    assert (session["energy_kwh"], session["max_power_kw"]) == (10.0, 7.0)
    assert plan.plan["start"] == T0.isoformat()
    assert plan.plan["step_s"] == 900
    out = plan.plan["sessions"]["A/1"]
    assert (out["charge_point_id"], out["evse_id"], out["transaction_id"]) == ("A", 1, env.tx["A"])
    assert len(out["power_kw"]) == 8
    assert sum(out["power_kw"]) * 0.25 == pytest.approx(10.0)
    assert max(out["power_kw"]) <= 7.0
    assert plan.kpis
    assert "plan_s" in plan.timings
    latest = await env.smart.audit.latest_plan("S1")
    assert latest is not None
    assert latest.id == plan_id


async def test_no_sessions_is_a_plan_too(env: Env) -> None:
    await env.charger("A")
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert (plan.status, plan.sessions, plan.plan["sessions"]) == ("no_sessions", 0, {})
    assert plan.inputs["problem"] is None
    assert env.gw.log == []


async def test_unknown_or_unmanaged_sites_are_not_planned(env: Env) -> None:
    await env.charger("A")
    await env.start("A")
    assert await env.smart.replan("nowhere", "test") is None
    await env.sites.upsert("S1", {"smart_charging": False})
    assert await env.smart.replan("S1", "test") is None
    assert env.gw.log == []
    assert await env.smart.audit.latest_plan("S1") is None


# --- (f) planner failure --------------------------------------------------------------------------


async def test_when_every_planner_fails_every_session_gets_zero(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(smart_module, "solve", broken)
    for cp in "AB":
        await env.charger(cp)
        await env.start(cp)
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.status == "failed"
    assert plan.fallback_reason == "RuntimeError: solver exploded"
    assert plan.method == "lp"
    assert plan.kpis == {}
    for s in plan.plan["sessions"].values():
        assert set(s["power_kw"]) == {0.0}
    sent = env.gw.profiles("answer")
    assert sorted(cp for cp, _ in sent) == ["A", "B"]
    for _, payload in sent:
        assert purpose(payload) == "TxProfile"
        assert set(limits(payload)) == {0.0}


# --- TxDefaultProfile at boot and reservations of idle / offline / unmanageable chargers ----------


async def test_an_accepted_tx_default_lets_idle_connectors_reserve_nothing(env: Env) -> None:
    await env.charger("A")
    await env.smart._install_default("S1", "A")
    ((cp, payload),) = env.gw.profiles("answer")
    assert cp == "A"
    assert payload["connectorId"] == 0
    assert purpose(payload) == "TxDefaultProfile"
    assert limits(payload) == [0.0]
    rows = await env.rows()
    assert (rows["A"].purpose, rows["A"].phase, rows["A"].status) == (
        "TxDefaultProfile",
        "default",
        "Accepted",
    )
    assert rows["A"].limit_w == 0.0
    assert rows["A"].plan_id is None
    assert env.smart.cp_control["A"].default_limit_w == 0.0
    assert "charger ready" in env.reasons()
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["reservations"] == []


async def test_a_rejected_tx_default_reserves_the_idle_maximum(env: Env) -> None:
    await env.charger("A", max_w=11_000.0)
    env.gw.script["A"] = ["Rejected", "Rejected"]  # a retry too
    await env.smart._install_default("S1", "A")
    assert env.smart.cp_control["A"].default_limit_w is None
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["reservations"] == [
        {
            "charge_point_id": "A",
            "evse_id": 1,
            "watts": 11_000.0,
            "reason": "idle: no confirmed TxDefaultProfile",
        }
    ]


async def test_a_charger_without_smart_charging_is_reserved_and_never_sent_a_tx_profile(
    env: Env,
) -> None:
    await env.charger("A", max_w=11_000.0)
    await env.charger("B")
    env.gw.script["A"] = ["NotSupported: SmartCharging"]
    await env.smart._install_default("S1", "A")
    assert env.smart.cp_control["A"].controllable is False
    await env.start("A")
    await env.start("B")
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["reservations"] == [
        {"charge_point_id": "A", "evse_id": 1, "watts": 11_000.0, "reason": "no smart charging"}
    ]
    assert plan.inputs["problem"]["site"]["capacity_kw"] == pytest.approx(11.0)
    tx_profiles = [cp for cp, p in env.gw.profiles("send") if purpose(p) == "TxProfile"]
    assert tx_profiles == ["B"]


async def test_an_offline_charger_with_a_session_is_reserved_at_its_maximum(env: Env) -> None:
    await env.charger("A", max_w=7_000.0)
    await env.charger("B")
    await env.start("A")
    await env.start("B")
    env.gw.offline.add("A")
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["reservations"] == [
        {"charge_point_id": "A", "evse_id": 1, "watts": 7_000.0, "reason": "offline with a session"}
    ]
    assert [cp for cp, _ in env.gw.profiles("send")] == ["B"]
    ((_, payload),) = env.gw.profiles("answer")
    assert limit_now(payload) * AMPS_TO_W <= 15_000.0


async def test_after_a_tx_default_a_new_sessions_first_profile_is_an_increase(env: Env) -> None:
    for cp in "AB":
        await env.charger(cp)
        await env.smart._install_default("S1", cp)
    await env.start("A")
    await env.needs("A", 20_000.0, 11_000.0)
    plan_id = await env.replan()
    rows = await env.rows(plan_id)
    assert (rows["A"].phase, rows["A"].status) == ("increase", "Accepted")  # from the 0 W default
    # with a second session, A's decrease failing holds back B's first profile: B stays at 0 W
    await env.start("B")
    await env.needs("A", 0.0)
    await env.needs("B", 20_000.0)
    env.gw.script["A"] = ["Rejected", "Rejected"]  # a retry too
    plan_id = await env.replan()
    rows = await env.rows(plan_id)
    assert (rows["A"].phase, rows["A"].status) == ("decrease", "Rejected")
    assert (rows["B"].phase, rows["B"].status) == ("increase", "held")


async def test_a_reboot_forgets_the_confirmed_tx_default_until_it_is_installed_again(
    env: Env,
) -> None:
    await env.charger("A")
    await env.smart._install_default("S1", "A")
    await env.smart._handle(Notice("booted", "A"))
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert [r["watts"] for r in plan.inputs["reservations"]] == [22_000.0]


async def test_a_reboot_forgets_the_chargers_sessions(env: Env) -> None:
    await env.charger("A")
    await env.start("A")
    env.gw.script["A"] = ["Rejected", "Rejected"]  # a retry too
    await env.replan()
    assert env.tx["A"] in env.smart.tx_control
    await env.smart._handle(Notice("booted", "A"))
    assert env.tx["A"] not in env.smart.tx_control
    assert "charger booted" in env.reasons()


# --- (g) meters: compliance and deviation ---------------------------------------------------------


async def one_session_at_11_kw(env: Env) -> datetime:
    await env.charger("A")
    await env.start("A")
    await env.needs("A", 20_000.0, 11_000.0)
    await env.replan()
    sc = env.smart.tx_control[env.tx["A"]]
    assert sc.accepted_at is not None
    assert sc.schedule is not None
    assert sc.schedule.watts_at(env.clock.now()) == pytest.approx(11_000.0)
    return sc.accepted_at


def unmanaged(sc: SessionControl) -> str | None:
    return sc.unmanaged_reason  # read through a call: the loop changes it behind mypy's back


def low_since(sc: SessionControl) -> datetime | None:
    return sc.low_since


def meter(env: Env, at: datetime, watts: float) -> None:
    env.smart._on_meter(Notice("meter", "A", 1, env.tx["A"], power_w=watts, at=at))


async def test_drawing_over_the_limit_after_the_grace_period_makes_the_session_non_compliant(
    env: Env,
) -> None:
    t0 = await one_session_at_11_kw(env)
    sc = env.smart.tx_control[env.tx["A"]]
    s = timedelta(seconds=1)
    meter(env, t0 + 30 * s, 20_000.0)  # in the grace period: not judged
    assert sc.over_count == 0
    meter(env, t0 + 61 * s, 20_000.0)
    assert (sc.over_count, sc.unmanaged_reason) == (1, None)
    meter(env, t0 + 62 * s, 12_000.0)  # within 10 % + 500 W of 11 kW: fine, the count restarts
    assert sc.over_count == 0
    meter(env, t0 + 63 * s, 20_000.0)
    assert unmanaged(sc) is None
    async with asyncio.TaskGroup() as tg:  # lets the loop record the finding in the audit log
        env.smart._tg = tg
        meter(env, t0 + 64 * s, 20_000.0)
    env.smart._tg = None
    assert sc.unmanaged_reason == "non-compliant: draws 20000 W over its limit of 11000 W"
    assert "charger non-compliant" in env.reasons()
    rows = await env.rows()
    assert rows["A"].verification == sc.unmanaged_reason
    env.clock.set(t0 + 64 * s)
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["reservations"] == [
        {"charge_point_id": "A", "evse_id": 1, "watts": 22_000.0, "reason": sc.unmanaged_reason}
    ]


async def test_meter_readings_without_power_or_session_are_ignored(env: Env) -> None:
    t0 = await one_session_at_11_kw(env)
    sc = env.smart.tx_control[env.tx["A"]]
    env.smart._on_meter(
        Notice("meter", "A", 1, env.tx["A"], power_w=None, at=t0 + timedelta(hours=1))
    )
    env.smart._on_meter(
        Notice("meter", "A", 1, 9_999, power_w=50_000.0, at=t0 + timedelta(hours=1))
    )
    assert (sc.over_count, sc.power_w) == (0, None)


async def test_an_ev_drawing_well_below_its_limit_is_planned_at_its_real_draw(env: Env) -> None:
    t0 = await one_session_at_11_kw(env)
    sc = env.smart.tx_control[env.tx["A"]]
    s = timedelta(seconds=1)
    meter(env, t0 + 61 * s, 5_000.0)
    assert sc.low_since == t0 + 61 * s
    meter(env, t0 + 300 * s, 10_500.0)  # back near its limit: the window restarts
    assert low_since(sc) is None
    meter(env, t0 + 301 * s, 5_000.0)
    meter(env, t0 + 900 * s, 5_000.0)
    assert sc.ev_limit_w is None  # 599 s: not yet
    meter(env, t0 + 901 * s, 5_000.0)
    assert sc.ev_limit_w == pytest.approx(5_500.0)
    assert sc.ev_limit_until == t0 + 901 * s + timedelta(seconds=1800)
    assert "meter deviation" in env.reasons()
    env.clock.set(t0 + 901 * s)
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["problem"]["sessions"][0]["max_power_kw"] == pytest.approx(5.5)
    assert plan.inputs["reservations"] == []
    # after the hold, the EV is probed at its full limit again
    env.clock.set(t0 + 901 * s + timedelta(seconds=1800))
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["problem"]["sessions"][0]["max_power_kw"] == pytest.approx(11.0)
    assert sc.ev_limit_w is None


async def test_a_slow_ev_is_planned_at_no_less_than_the_charger_minimum(env: Env) -> None:
    t0 = await one_session_at_11_kw(env)
    for k in range(2):
        meter(env, t0 + timedelta(seconds=61 + 600 * k), 1_000.0)
    sc = env.smart.tx_control[env.tx["A"]]
    assert sc.ev_limit_w == 1_100.0
    env.clock.set(t0 + timedelta(seconds=661))
    plan = await env.smart.audit.plan(await env.replan())
    assert plan is not None
    assert plan.inputs["problem"]["sessions"][0]["max_power_kw"] == pytest.approx(6 * 3 * 0.23)


async def test_a_single_rejection_is_tried_again_before_the_session_is_unmanaged(env: Env) -> None:
    """A TxProfile can cross the transaction's start on the wire: one rejection, then Accepted."""
    await three_chargers(env)
    await swap_needs(env)
    env.gw.script["A"] = ["Rejected"]
    plan_id = await env.replan()
    rows = await env.rows(plan_id)
    assert rows["A"].status == "Accepted"
    assert rows["A"].attempts == 2
    assert env.smart.tx_control[env.tx["A"]].unmanaged_reason is None


async def test_a_failing_background_task_is_logged_and_the_loop_goes_on(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the 1000-charger benchmark: a database timeout in one charger's TxDefault install
    used to end the loop's task group, and with it the central system."""
    running = asyncio.create_task(env.smart.run())
    await asyncio.sleep(0.05)

    async def boom() -> None:
        raise RuntimeError("pool timeout")

    env.smart._spawn(boom(), "test work")
    await asyncio.sleep(0.05)
    assert not running.done()
    assert "test work failed" in caplog.text
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running


async def test_work_asked_for_before_the_loop_runs_is_done_once_it_runs(env: Env) -> None:
    """A cluster worker can gain a site's lease before its loop has started: the take-over it
    asks for then must not be dropped."""
    done = asyncio.Event()

    async def work() -> None:
        done.set()

    env.smart._spawn(work(), "early work")
    await asyncio.sleep(0.05)
    assert not done.is_set()
    running = asyncio.create_task(env.smart.run())
    await asyncio.wait_for(done.wait(), 5.0)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
