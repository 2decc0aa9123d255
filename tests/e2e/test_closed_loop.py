"""The closed loop end to end: central system + simulated site on a replay clock (600x), over
real websockets. The cap is checked on what the simulated chargers metered, minute by minute
(the simulator's report), not on what the central system believes."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from charge_point_sim.quirks import Quirks
from csms.db.models import PlanAudit, ProfileAudit
from tests.e2e.harness import E2E, START, SimCharger, run_e2e, vehicle

TOLERANCE_KW = 0.05  # the simulator's per-minute means are rounded


def over_cap(
    report: dict[str, Any], cap_kw: float, *, from_minute: int = 0, to_minute: int | None = None
) -> list[tuple[int, float]]:
    """Minutes in which the site drew more than ``cap_kw`` (metered by the simulator)."""
    minutes = report["site_power_kw_per_minute"][from_minute:to_minute]
    return [(from_minute + i, p) for i, p in enumerate(minutes) if p > cap_kw + TOLERANCE_KW]


async def _audit(e: E2E) -> tuple[list[PlanAudit], list[ProfileAudit]]:
    async with e.rt.sessions() as s:
        plans = list((await s.exec(select(PlanAudit).order_by(col(PlanAudit.id)))).all())
        profiles = list((await s.exec(select(ProfileAudit).order_by(col(ProfileAudit.id)))).all())
    return plans, profiles


async def test_mixed_site_holds_the_cap_uses_it_and_audits_every_profile(db_url: str) -> None:
    chargers = [
        SimCharger("CP1", "1.6"),
        SimCharger("CP2", "2.0.1"),
        SimCharger("CP3", "1.6"),
        SimCharger("CP4", "2.0.1"),
    ]
    arrivals = {
        "CP1": [vehicle(5, 3, 15)],
        "CP2": [vehicle(8, 3, 15, iso15118=True)],
        "CP3": [vehicle(12, 2.5, 12)],
        "CP4": [vehicle(20, 2, 10)],
    }
    seen: dict[str, Any] = {}

    async def check(e: E2E) -> None:
        # The current plan first: the loop may still make another one after it.
        seen["api_plan"] = (await e.http.get("/api/sites/S1/plan")).json()
        seen["plans"], seen["profiles"] = await _audit(e)
        seen["kpis"] = (
            await e.http.get("/api/sites/S1/kpis", params={"since": START.isoformat()})
        ).json()
        seen["csv"] = (
            await e.http.get("/api/audit/profiles", params={"format": "csv", "limit": 1000})
        ).text
        seen["json"] = (await e.http.get("/api/audit/profiles", params={"limit": 1000})).json()

    report = await run_e2e(
        db_url,
        chargers,
        arrivals,
        site={"capacity_kw": 20.0, "step_minutes": 5},
        hours=3.5,
        check=check,
    )
    assert over_cap(report, 20.0) == []
    assert report["site_peak_kw"] > 18.0  # the cap is used, not just respected
    assert report["energy_delivered_kwh"] > 45.0, report["sessions"]
    # The ISO 15118 EV told the central system its needs, which took them.
    [iso] = [s for s in report["sessions"] if s["iso15118"]]
    assert iso["needs_status"] == "Accepted"
    # ... and served it first: its need is known, the others' are the site default.
    assert iso["delivered_kwh"] >= 0.97 * iso["requested_kwh"], report["sessions"]
    profiles: list[ProfileAudit] = seen["profiles"]
    tx_profiles = [p for p in profiles if p.purpose == "TxProfile"]
    assert len(tx_profiles) >= 8
    assert {p.status for p in tx_profiles} == {"Accepted"}
    assert all(p.answer.get("status") == "Accepted" and p.latency_s > 0 for p in tx_profiles)
    assert all(p.plan_id is not None and p.transaction_id is not None for p in tx_profiles)
    defaults = [p for p in profiles if p.purpose == "TxDefaultProfile"]
    assert {p.charge_point_id for p in defaults} == {"CP1", "CP2", "CP3", "CP4"}
    assert {p.status for p in defaults} == {"Accepted"}
    # Verification: the simulated chargers apply what they accept.
    verified = [p.verification for p in tx_profiles if p.verification]
    assert any(v.startswith("applied") for v in verified), verified
    odd = [v for v in verified if not v.startswith(("applied", "unverified: superseded"))]
    assert odd == []
    plans: list[PlanAudit] = seen["plans"]
    assert len(plans) > 10
    assert {"session started", "periodic"} <= {t for p in plans for t in p.trigger.split(", ")}
    assert all(p.inputs.get("cap_kw") for p in plans)
    # The API tells the same story.
    assert seen["api_plan"]["plan_id"] in {p.id for p in plans}
    assert len(seen["json"]) == len(profiles)
    rows = list(csv.DictReader(io.StringIO(seen["csv"])))
    assert len(rows) == len(profiles)
    assert rows[0]["payload"].startswith("{")
    kpis = seen["kpis"]
    assert kpis["sessions"] == 4
    # The central system sees meter readings a minute apart: its peak is an estimate.
    assert kpis["metered_peak_kw"] <= 20.0 * 1.01  # 15-minute mean from energy registers
    assert kpis["profiles"]["accepted"] == len(tx_profiles)
    assert abs(kpis["energy_delivered_kwh"] - report["energy_delivered_kwh"]) < 1.0


async def test_rejecting_and_ignoring_chargers_are_reserved_at_their_max(sqlite_url: str) -> None:
    """CP3 rejects every profile (no smart charging), CP4 accepts and ignores them. Both draw up
    to 11 kW whatever the plan says; the others must make room."""
    chargers = [
        SimCharger("CP1", "1.6"),
        SimCharger("CP2", "2.0.1"),
        SimCharger("CP3", "1.6", supports_profiles=False),
        SimCharger("CP4", "2.0.1", quirks=Quirks(ignores_profiles=True)),
    ]
    arrivals = {
        cp: [vehicle(5 + 5 * i, 3, 25)] for i, cp in enumerate(("CP1", "CP2", "CP3", "CP4"))
    }
    seen: dict[str, Any] = {}

    async def check(e: E2E) -> None:
        seen["plans"], seen["profiles"] = await _audit(e)

    report = await run_e2e(
        sqlite_url,
        chargers,
        arrivals,
        site={"capacity_kw": 30.0, "step_minutes": 5},
        hours=2.5,
        # Not 600x: a tenth of a real second is a replayed minute there, and the 10 minutes
        # allowed below are mostly simulated waits that a loaded machine stretches.
        speed=300.0,
        check=check,
    )
    # CP4's session starts at minute 20 and draws its max at once; it is caught by the meter check
    # (compliance grace 120 s after its last profile + 2 readings 60 s apart; a new profile restarts
    # the grace) and then reserved: allow it 10 minutes.
    assert over_cap(report, 30.0, to_minute=20) == []
    assert over_cap(report, 30.0, from_minute=30) == []
    profiles: list[ProfileAudit] = seen["profiles"]
    cp3 = [p for p in profiles if p.charge_point_id == "CP3"]
    assert cp3
    assert all(p.status != "Accepted" for p in cp3)
    cp4 = [p for p in profiles if p.charge_point_id == "CP4" and p.purpose == "TxProfile"]
    assert any((p.verification or "").startswith("non-compliant") for p in cp4)
    # Once caught, CP4's maximum is reserved in the plans (until its session ends).
    reserved = [
        r["reason"]
        for p in seen["plans"]
        for r in p.inputs["reservations"]
        if r["charge_point_id"] == "CP4"
    ]
    assert any("non-compliant" in reason for reason in reserved)
    # The compliant chargers still charged, in the 8 kW left (who leaves first, first).
    delivered = {s["charger"]: s["delivered_kwh"] for s in report["sessions"]}
    assert delivered["CP1"] + delivered["CP2"] > 12


async def test_cap_lowered_mid_day_lowers_everyone_before_raising_anyone(sqlite_url: str) -> None:
    chargers = [SimCharger(f"CP{i}", "1.6" if i % 2 else "2.0.1") for i in range(1, 5)]
    arrivals = {c.id: [vehicle(3 + i, 4, 30)] for i, c in enumerate(chargers)}
    seen: dict[str, Any] = {}

    async def during(e: E2E) -> None:
        while e.clock.now() < START + timedelta(minutes=60):
            await asyncio.sleep(0.05)
        r = await e.http.put("/api/sites/S1/capacity", json={"capacity_kw": 12.0})
        seen["put"] = r.json()
        seen["lowered_at"] = e.clock.now()
        while e.clock.now() < START + timedelta(minutes=120):
            await asyncio.sleep(0.05)
        await e.http.put("/api/sites/S1/capacity", json={"capacity_kw": 40.0})

    async def check(e: E2E) -> None:
        seen["plans"], seen["profiles"] = await _audit(e)

    report = await run_e2e(
        sqlite_url,
        chargers,
        arrivals,
        site={"capacity_kw": 40.0, "step_minutes": 5},
        hours=3,
        during=during,
        check=check,
    )
    assert seen["put"]["cap_now_kw"] == 12.0
    lowered = int((seen["lowered_at"] - START).total_seconds() // 60)
    assert over_cap(report, 40.0) == []
    # After the cap came down the site stays under 12 kW (the minute of the change is mixed).
    assert over_cap(report, 12.0, from_minute=lowered + 1, to_minute=119) == []
    # Within every plan, no increase was sent before the last decrease was answered.
    by_plan: dict[int, list[ProfileAudit]] = {}
    for p in seen["profiles"]:
        if p.plan_id is not None:
            by_plan.setdefault(p.plan_id, []).append(p)
    mixed = 0
    for rows in by_plan.values():
        phases = [p.phase for p in sorted(rows, key=lambda p: p.id or 0)]
        if "decrease" in phases and "increase" in phases:
            mixed += 1
            assert phases.index("increase") > max(
                i for i, ph in enumerate(phases) if ph == "decrease"
            )
    cap_plans = [p for p in seen["plans"] if "capacity changed" in p.trigger]
    assert cap_plans
    assert mixed >= 1


async def test_offline_charger_is_reserved_and_needs_updates_are_planned(sqlite_url: str) -> None:
    """CP2 drops its connection every 40 minutes (and comes back); the operator tells the
    central system CP1's driver needs 25 kWh and leaves at 09:30 (the site default would have
    planned 20 kWh over 8 h)."""
    chargers = [
        SimCharger("CP1", "2.0.1"),
        SimCharger("CP2", "1.6", quirks=Quirks(drop_every_s=2400)),
        SimCharger("CP3", "2.0.1"),
    ]
    arrivals = {
        "CP1": [vehicle(5, 2.5, 25)],
        "CP2": [vehicle(6, 3, 20)],
        "CP3": [vehicle(7, 3, 20)],
    }
    seen: dict[str, Any] = {}

    async def during(e: E2E) -> None:
        while e.clock.now() < START + timedelta(minutes=20):
            await asyncio.sleep(0.05)
        txs = (await e.http.get("/api/transactions", params={"charge_point_id": "CP1"})).json()
        r = await e.http.put(
            f"/api/transactions/{txs[0]['id']}/needs",
            json={"energy_kwh": 25, "departure": (START + timedelta(hours=2.5)).isoformat()},
        )
        seen["needs"] = r.status_code, r.json()

    async def check(e: E2E) -> None:
        seen["plans"], seen["profiles"] = await _audit(e)

    report = await run_e2e(
        sqlite_url,
        chargers,
        arrivals,
        site={"capacity_kw": 22.0, "step_minutes": 5},
        hours=3,
        during=during,
        check=check,
    )
    assert seen["needs"][0] == 200, seen["needs"]
    assert over_cap(report, 22.0) == []
    triggers = {t for p in seen["plans"] for t in p.trigger.split(", ")}
    assert {"needs updated", "charger offline", "charger online"} <= triggers
    # CP2 came back (within seconds here) and is managed again after its first drop: profiles
    # accepted, and plans that do not reserve its maximum. (Reservation while offline:
    # tests/csms/test_site_plan.py.)
    offline = [p for p in seen["plans"] if "charger offline" in p.trigger]
    assert offline
    after = [
        p
        for p in seen["profiles"]
        if p.charge_point_id == "CP2"
        and p.purpose == "TxProfile"
        and p.plan_id
        and p.plan_id > offline[0].id
    ]
    assert any(p.status == "Accepted" for p in after)
    later = [p for p in seen["plans"] if p.id and p.id > offline[0].id and p.sessions == 3]
    assert any(all(r["charge_point_id"] != "CP2" for r in p.inputs["reservations"]) for p in later)
    # With its needs known, CP1 got (nearly) all of its 25 kWh before its driver left.
    cp1 = next(s for s in report["sessions"] if s["charger"] == "CP1")
    assert cp1["delivered_kwh"] > 24.0, report["sessions"]


async def test_solver_time_out_still_gives_a_safe_plan(sqlite_url: str) -> None:
    chargers = [SimCharger(f"CP{i}", "1.6") for i in range(1, 4)]
    arrivals = {c.id: [vehicle(3 + i, 2, 15)] for i, c in enumerate(chargers)}
    seen: dict[str, Any] = {}

    async def check(e: E2E) -> None:
        seen["plans"], _ = await _audit(e)

    report = await run_e2e(
        sqlite_url,
        chargers,
        arrivals,
        site={"capacity_kw": 15.0, "step_minutes": 5, "method": "milp"},
        hours=1.5,
        smart={"solve_time_limit_s": 1e-4},
        check=check,
    )
    assert over_cap(report, 15.0) == []
    planned = [p for p in seen["plans"] if p.sessions]
    assert planned
    assert all(p.status in ("time_limit", "feasible", "optimal") for p in planned)
    # Whether HiGHS notices a 0.1 ms limit on a problem this small depends on the machine's load
    # (the optimizer's own tests pin the time-limit path); what matters here is that every plan
    # made under it was usable and the site stayed safe.
    assert report["energy_delivered_kwh"] > 10


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_single_version_site_holds_the_cap(sqlite_url: str, version: str) -> None:
    chargers = [SimCharger(f"CP{i}", version) for i in range(1, 4)]
    arrivals = {c.id: [vehicle(4 + 3 * i, 2, 14, iso15118=True)] for i, c in enumerate(chargers)}
    report = await run_e2e(
        sqlite_url, chargers, arrivals, site={"capacity_kw": 16.0, "step_minutes": 5}, hours=2.5
    )
    assert over_cap(report, 16.0) == []
    assert report["site_peak_kw"] > 14.0
    # 42 kWh asked, 16 kW for about 2 h: the plan gets close to what the cap allows.
    assert report["energy_delivered_kwh"] > 28.0, report["sessions"]
