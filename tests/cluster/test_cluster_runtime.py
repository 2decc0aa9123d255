"""Two central-system workers in one process, wired as in production (csms.runtime with cluster
settings): one PostgreSQL database, one Redis, chargers split between the workers, simulated
chargers over real websockets on a shared replay clock.

The leader of the site (the worker that started first) plans it and dispatches every profile
through the worker holding each charger's socket; commands sent through either worker reach
chargers on the other; when the leader stops, the other worker takes the site over at once
(reconciling what it cannot know), keeps it under its cap, and marks the chargers that nobody
serves any more disconnected."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from charge_point_sim.driver import Arrival
from charge_point_sim.runner import ChargerConfig, ChargerRun, report, run_site
from charge_point_sim.station import Station
from csms.cluster.settings import ClusterSettings
from csms.db.models import ChargePoint, PlanAudit, ProfileAudit
from csms.domain.clock import ScaledClock
from csms.domain.commands import RawCall
from csms.runtime import Runtime, run
from csms.settings import DatabaseSettings, OcppSettings, Settings, SmartChargingSettings
from tests.cluster.conftest import eventually
from tests.e2e.harness import START, SimCharger, vehicle
from tests.e2e.test_closed_loop import over_cap
from tests.faults.storm_helpers import fresh_pg_database, pg_problem
from web.console.chargers import _installed_from_audit

SPEED = 300.0  # an hour in 12 s
CAP_KW = 22.0
HOURS = 3.0
LEADER_STOPS_AT_H = 1.5
ON_LEADER = (SimCharger("CP-L1", "1.6"),)
ON_FOLLOWER = (
    SimCharger("CP-F1", "1.6"),
    SimCharger("CP-F2", "2.0.1"),
    SimCharger("CP-F3", "2.0.1", max_kw=7.4, phases=1),
)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (the cluster's shared state)."""
    if (problem := await pg_problem()) is not None:
        pytest.skip(problem)
    async with fresh_pg_database() as url:
        yield url


def _settings(db_url: str, cluster: ClusterSettings) -> Settings:
    return Settings(
        ocpp=OcppSettings(
            host="127.0.0.1", port=0, response_timeout_s=5, accept_unknown_id_tokens=True
        ),
        database=DatabaseSettings(url=db_url),
        smart_charging=SmartChargingSettings(
            coalesce_s=0.05, solve_time_limit_s=2.0, call_timeout_s=3.0
        ),
        cluster=cluster,
    )


async def _plan_with(rt: Runtime, trigger: str, timeout_s: float = 15.0) -> PlanAudit:
    """Wait for a plan whose trigger mentions ``trigger``."""
    t0 = time.monotonic()
    while True:
        async with rt.sessions() as s:
            found = (
                await s.exec(select(PlanAudit).where(col(PlanAudit.trigger).contains(trigger)))
            ).first()
        if found is not None:
            return found
        assert time.monotonic() - t0 < timeout_s, f"no plan for {trigger!r}"
        await asyncio.sleep(0.1)


def _runs(chargers: tuple[SimCharger, ...]) -> list[ChargerRun]:
    return [
        ChargerRun(ChargerConfig(c.id, c.version, c.spec, quirks=c.quirks), Station(c.spec, START))
        for c in chargers
    ]


def _plays(chargers: tuple[SimCharger, ...], first: int) -> dict[str, list[Arrival]]:
    return {
        c.id: [Arrival(*vehicle(2 + 3 * (first + i), 6.0, 30.0, max_kw=c.max_kw, phases=c.phases))]
        for i, c in enumerate(chargers)
    }


async def test_the_leader_dispatches_through_the_holder_and_hands_over_when_it_stops(
    pg_url: str, make_settings: Callable[..., ClusterSettings]
) -> None:
    clock = ScaledClock(START, SPEED)
    cluster = {"presence_ttl_s": 3.0, "lease_ttl_s": 3.0, "fence_margin_s": 0.2}
    leader_stack = contextlib.AsyncExitStack()
    w1: Runtime = await leader_stack.enter_async_context(
        run(_settings(pg_url, make_settings("w1", **cluster)), clock)
    )
    try:
        await w1.sites.upsert(
            "S1", {"timezone": "UTC", "capacity_kw": CAP_KW, "method": "lp", "tx_default_kw": 4.0}
        )
        for c in (*ON_LEADER, *ON_FOLLOWER):
            await w1.stations.register_charge_point(
                c.id, site_id="S1", max_power_w=c.max_kw * 1000, phases=c.phases
            )
        assert w1.cluster is not None
        await eventually(
            lambda: w1.cluster is not None and w1.cluster.leases.is_leader("S1"), "w1 leads S1"
        )
        async with run(_settings(pg_url, make_settings("w2", **cluster)), clock) as w2:
            assert w2.cluster is not None
            assert not w2.cluster.leases.is_leader("S1")
            on_leader, on_follower = _runs(ON_LEADER), _runs(ON_FOLLOWER)
            until = START + timedelta(hours=HOURS)
            handover: dict[str, Any] = {}

            async def leader_stops() -> None:
                # Commands through either worker reach chargers held by the other.
                await eventually(
                    lambda: all(
                        w.gateway.is_connected(c.id)
                        for w in (w1, w2)
                        for c in (*ON_LEADER, *ON_FOLLOWER)
                    ),
                    "every charger connected in the cluster",
                )
                trigger = RawCall("TriggerMessage", {"requestedMessage": "Heartbeat"})
                handover["w1_to_w2"] = await w1.gateway.send("CP-F1", trigger)
                handover["w2_to_w1"] = await w2.gateway.send("CP-L1", trigger)
                # A re-plan asked of the worker that does not lead the site is made by the leader.
                assert await w2.smart.replan("S1", "asked of w2") is None
                handover["asked_of_w2"] = await _plan_with(w1, "asked of w2")
                await clock.sleep(
                    (START + timedelta(hours=LEADER_STOPS_AT_H) - clock.now()).total_seconds()
                )
                # The console of the worker that does not plan the site shows what the leader
                # installed, from the audit log.
                handover["console_w2"] = await _installed_from_audit(w2, "CP-F1")
                handover["at"] = clock.now()
                await leader_stack.aclose()  # a clean stop: its lease is released at once
                assert w2.cluster is not None
                handover["took_s"] = await eventually(
                    lambda: w2.cluster is not None and w2.cluster.leases.is_leader("S1"),
                    "w2 leads S1",
                )

            async with asyncio.TaskGroup() as tg:
                tg.create_task(leader_stops())
                tg.create_task(
                    run_site(
                        on_leader,
                        f"ws://127.0.0.1:{w1.ocpp.port}/ocpp",
                        clock,
                        _plays(ON_LEADER, 0),
                        until,
                    )
                )
                await run_site(
                    on_follower,
                    f"ws://127.0.0.1:{w2.ocpp.port}/ocpp",
                    clock,
                    _plays(ON_FOLLOWER, len(ON_LEADER)),
                    until,
                )
            data = report([*on_leader, *on_follower], START, clock.now(), SPEED, "two workers")

            for way in ("w1_to_w2", "w2_to_w1"):
                assert handover[way].ok, handover[way]
                assert handover[way].status == "Accepted", handover[way]
            assert not w2.gateway.is_connected("CP-L1")
            async with w2.sessions() as s:
                plans = list((await s.exec(select(PlanAudit).order_by(col(PlanAudit.id)))).all())
                profiles = list(
                    (await s.exec(select(ProfileAudit).order_by(col(ProfileAudit.id)))).all()
                )
            # The charger whose worker stopped (its simulator keeps dialling the dead port) is
            # recorded disconnected by the survivor's sweeper.
            t0 = time.monotonic()
            while True:
                async with w2.sessions() as s:
                    l1 = await s.get(ChargePoint, "CP-L1")
                assert l1 is not None
                if not l1.connected:
                    break
                assert time.monotonic() - t0 < 15.0, "CP-L1 still recorded as connected"
                await asyncio.sleep(0.2)

    finally:
        await leader_stack.aclose()

    default_w, installed = handover["console_w2"]
    assert default_w is not None  # its TxDefaultProfile was accepted
    assert len(installed) == 1
    assert installed[0]["limit"] is not None
    assert over_cap(data, CAP_KW) == []
    assert data["site_peak_kw"] > CAP_KW * 0.8  # the cap is used, not just respected
    before = [p for p in plans if p.created_at < handover["at"]]
    after = [p for p in plans if p.created_at >= handover["at"]]
    assert before
    assert after
    assert any("leadership gained" in p.trigger for p in after)
    # Every TxProfile of the follower's chargers went out through w2's sockets and was accepted.
    tx = [p for p in profiles if p.purpose == "TxProfile" and p.charge_point_id != "CP-L1"]
    assert tx
    # ... but those the stopping leader had under way, refused by their fence, never sent.
    fenced = ("not sent", "stale fencing token")
    failed = [
        (p.status, p.error)
        for p in tx
        if p.status not in ("Accepted", "held") and not (p.error or "").startswith(fenced)
    ]
    assert failed == []
    assert {p.charge_point_id for p in tx} == {c.id for c in ON_FOLLOWER}
    # No profile sent twice for the same plan (a plan may lower a connector first, then raise
    # it: one profile per phase).
    per_plan = Counter(
        (p.plan_id, p.charge_point_id, p.evse_id, p.phase) for p in tx if p.plan_id is not None
    )
    assert max(per_plan.values()) == 1
    # The new leader keeps the site charging: the cap is used after the handover too (the
    # stopped worker's charger is reserved while offline, then let go once marked disconnected).
    minute = round((handover["at"] - START).total_seconds() / 60)
    later = data["site_power_kw_per_minute"][minute + 10 :]
    assert later
    assert max(later) > CAP_KW * 0.8, later
