"""The central system killed (SIGKILL) in the middle of a replayed day, and started again.

The central system (``python -m csms``) and the simulator (``python -m charge_point_sim run``) run
as child processes on one replay clock (same start, speed and wall-clock anchor). A site of 16
chargers with two connectors each (OCPP 2.0.1 and 1.6 alternating) under a 40 kW cap replays the
busiest part of the ACN-Data day 2019-06-14 at Caltech (07:55 to 12:30) at 300x. At 10:12 the
central system is killed; it is started again (same ports, same database) at 10:40 and is back a
few seconds (real) later. While it is away, two 1.6 sessions it saw start end, new sessions start on
both versions (one on a connector freed during the outage), and every charger queues its
transaction messages (2.0.1: TransactionEvents sent later with ``offline`` and their seqNo).

Checked afterwards, the simulator's report against the database:

- every transaction the simulator ran is stored exactly once, with the start and stop times and
  registers the charger sent, and exactly as many meter samples as the charger sent;
- the metered site power never went above the cap, minute by minute, the outage included (the
  TxDefaultProfile of 0 W keeps new sessions at 0 while nobody plans; running sessions keep their
  last profile, planned under the cap);
- after the restart every charger was reconciled before it got a profile: its TxDefaultProfile
  installed again, GetChargingProfiles on 2.0.1 stations and GetCompositeSchedule on 1.6 chargers
  with a running session; then every session running got a profile of a plan made after the
  restart, which the charger applied (the central system's GetCompositeSchedule check).

The figures of each run are printed (``pytest -s``) and checked loosely: the replay is timed by a
wall clock on a machine other tests share, so no figure that depends on the machine is asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import col, select

from csms.db.engine import create_engine, session_factory
from csms.db.migrate import upgrade_to_head
from csms.db.models import (
    MessageLog,
    MeterValue,
    PlanAudit,
    ProfileAudit,
    Transaction,
    TransactionEventLog,
    as_utc,
)
from csms.domain.clock import SystemClock
from csms.services.notifications import Notifier
from csms.services.sites import SiteService
from csms.services.stations import StationService
from tests.csms.conftest import db_url  # noqa: F401 - a fresh SQLite / PostgreSQL database
from tests.faults.processes import (
    ROOT,
    CsmsProcess,
    acn_replay_args,
    now_utc,
    replay_clock_settings,
    sleep_until_wall,
    start_simulator,
    wall_time_of,
)

TZ = ZoneInfo("America/Los_Angeles")
DAY = (2019, 6, 14)
START = datetime(*DAY, 7, 55, tzinfo=TZ)
KILL_AT = datetime(*DAY, 10, 12, tzinfo=TZ)
RESTART_AT = datetime(*DAY, 10, 40, tzinfo=TZ)
UNTIL = datetime(*DAY, 12, 30, tzinfo=TZ)
SPEED = 300.0  # 4 h 35 min in 55 s
# Meter values every 5 minutes (a common setting): at 300x a minute's interval would make ~150
# messages a second for one central system process, on a machine shared with other tests.
METER_INTERVAL_S = 300
CAP_KW = 40.0
TOLERANCE_KW = 0.05  # the simulator's per-minute means are rounded (as in tests/e2e)
SITE = "S1"
ACN_FILE = ROOT / "examples" / "acn_caltech_2019-06-14.csv.gz"


def site_file(path: Path) -> list[dict[str, Any]]:
    """16 chargers, two connectors each, 2.0.1 (11 kW, three phases) and 1.6 (7.4 kW, one phase)
    alternating, so that the ACN sessions (round-robin) land on both versions."""
    chargers: list[dict[str, Any]] = []
    for i in range(1, 9):
        chargers.append(
            {"id": f"B201-{i}", "version": "2.0.1", "connectors": 2, "max_power_kw": 11}
        )
        chargers.append(
            {"id": f"A16-{i}", "version": "1.6", "connectors": 2, "max_power_kw": 7.4, "phases": 1}
        )
    path.write_text(json.dumps({"name": "faults", "site_cap_kw": CAP_KW, "chargers": chargers}))
    return chargers


async def set_up(url: str, chargers: list[dict[str, Any]]) -> None:
    """The site and its chargers, registered before the central system starts."""
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
        sessions = session_factory(engine)
        await SiteService(sessions, SystemClock(), Notifier()).upsert(
            SITE,
            {
                "timezone": "America/Los_Angeles",
                "capacity_kw": CAP_KW,
                "step_minutes": 5,
                "method": "lp",
                "tx_default_kw": 0.0,  # the safety net: a session nobody planned draws nothing
            },
        )
        stations = StationService(sessions, SystemClock())
        for c in chargers:
            await stations.register_charge_point(
                c["id"],
                site_id=SITE,
                max_power_w=c["max_power_kw"] * 1000,
                phases=c.get("phases", 3),
            )
    finally:
        await engine.dispose()


@dataclass
class Stored:
    """What the central system stored."""

    txs: list[Transaction]
    offline_events: int  # 2.0.1 TransactionEvents that said they happened offline
    samples: dict[int | None, int]  # meter value rows per transaction
    duplicate_samples: int
    profiles: list[ProfileAudit]
    plans: list[PlanAudit]
    frames: list[MessageLog]  # the reconciliation's and the profiles' frames


async def read_db(url: str) -> Stored:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as s:
            txs = list((await s.exec(select(Transaction))).all())
            offline_events = len(
                (
                    await s.exec(
                        select(TransactionEventLog).where(col(TransactionEventLog.offline))
                    )
                ).all()
            )
            per_tx = (
                await s.exec(
                    select(MeterValue.transaction_id, func.count()).group_by(
                        col(MeterValue.transaction_id)
                    )
                )
            ).all()
            key = (
                col(MeterValue.charge_point_id),
                col(MeterValue.evse_id),
                col(MeterValue.timestamp),
                col(MeterValue.measurand),
                col(MeterValue.phase),
                col(MeterValue.context),
                col(MeterValue.location),
            )
            dupes = (
                await s.exec(
                    select(func.count())
                    .select_from(MeterValue)
                    .group_by(*key)
                    .having(func.count() > 1)
                )
            ).all()
            profiles = list(
                (await s.exec(select(ProfileAudit).order_by(col(ProfileAudit.id)))).all()
            )
            plans = list((await s.exec(select(PlanAudit).order_by(col(PlanAudit.id)))).all())
            frames = list(
                (
                    await s.exec(
                        select(MessageLog)
                        .where(
                            col(MessageLog.action).in_(
                                [
                                    "GetChargingProfiles",
                                    "ReportChargingProfiles",
                                    "GetCompositeSchedule",
                                    "SetChargingProfile",
                                ]
                            )
                        )
                        .order_by(col(MessageLog.id))
                    )
                ).all()
            )
    finally:
        await engine.dispose()
    return Stored(txs, offline_events, dict(per_tx), len(dupes), profiles, plans, frames)


def _t(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _utc(value: datetime | None) -> datetime:
    t = as_utc(value)
    assert t is not None
    return t


def _is_tx_profile(frame: MessageLog) -> bool:
    payload = frame.payload if isinstance(frame.payload, dict) else {}
    profile = payload.get("csChargingProfiles") or payload.get("chargingProfile") or {}
    return bool(profile.get("chargingProfilePurpose") == "TxProfile")


def test_csms_killed_mid_day_loses_nothing_and_holds_the_cap(
    db_url: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    site = tmp_path / "site.json"
    chargers = site_file(site)
    versions = {c["id"]: c["version"] for c in chargers}
    asyncio.run(set_up(db_url, chargers))
    anchor = now_utc() + timedelta(seconds=1)
    csms = CsmsProcess(
        tmp_path,
        database_url=db_url,
        settings={
            **replay_clock_settings(START, SPEED, anchor),
            "CSMS_OCPP__ACCEPT_UNKNOWN_ID_TOKENS": "true",
            "CSMS_OCPP__RESPONSE_TIMEOUT_S": "5",
            "CSMS_SMART_CHARGING__COALESCE_S": "0.05",
            "CSMS_SMART_CHARGING__SOLVE_TIME_LIMIT_S": "2",
            "CSMS_SMART_CHARGING__CALL_TIMEOUT_S": "3",
        },
    )
    report_path = tmp_path / "report.json"
    csms.start()
    sim = None
    try:
        csms.wait_ready()
        sim = start_simulator(
            tmp_path,
            url=csms.url,
            report=report_path,
            args=acn_replay_args(
                site,
                ACN_FILE,
                start=START,
                until=UNTIL,
                anchor=anchor,
                speed=SPEED,
                meter_interval_s=METER_INTERVAL_S,
            ),
        )
        sleep_until_wall(wall_time_of(KILL_AT, START, SPEED, anchor))
        assert sim.alive, sim.output()
        killed_at = time.time()
        assert csms.kill() == -9
        sleep_until_wall(wall_time_of(RESTART_AT, START, SPEED, anchor))
        csms.start()
        restart_s = csms.wait_ready()
        back_at = time.time()
        assert sim.wait((UNTIL - START).total_seconds() / SPEED + 120) == 0, sim.output()
    finally:
        if sim is not None and sim.alive:
            sim.kill()
        if csms.alive:
            csms.stop()  # graceful: the message log is flushed
    report = json.loads(report_path.read_text())
    db = asyncio.run(read_db(db_url))

    def replay_time(epoch: float) -> datetime:
        return START + timedelta(seconds=(epoch - anchor.timestamp()) * SPEED)

    down, back = replay_time(killed_at), replay_time(back_at)
    sessions = [s for s in report["sessions"] if s["transaction_id"] is not None]
    by_charger = {c["id"]: c for c in report["chargers"]}

    # --- the run did what the test is about ------------------------------------------------
    for c in report["chargers"]:
        assert c["error"] is None, c
        assert c["connects"] >= 2, c  # the kill dropped every charger; each came back
        assert c["messages_undelivered"] == 0, c
    held = sum(c["messages_held"] for c in report["chargers"])
    assert held == sum(c["messages_held_delivered"] for c in report["chargers"])
    assert min(c["messages_held"] for c in report["chargers"]) > 0  # every charger queued

    def during_outage(when: str | None) -> bool:
        t = _t(when)
        return t is not None and down < t < back

    started_offline = [s for s in sessions if during_outage(s["started_at"])]
    ended_offline = [
        s
        for s in sessions
        if during_outage(s["stopped_at"]) and _t(s["started_at"]) < down  # type: ignore[operator]
    ]
    assert {versions[s["charger"]] for s in started_offline} == {"1.6", "2.0.1"}, started_offline
    assert any(versions[s["charger"]] == "1.6" for s in ended_offline), ended_offline
    assert db.offline_events > 0

    # --- every transaction exactly once, as the charger sent it ---------------------------
    stored = Counter((t.charge_point_id, t.ocpp_id) for t in db.txs)
    assert [k for k, n in stored.items() if n > 1] == []
    assert len(db.txs) == len(sessions)
    tx_of = {(t.charge_point_id, t.ocpp_id): t for t in db.txs}
    wrong: list[object] = []
    for s in sessions:
        tx = tx_of.get((s["charger"], s["transaction_id"]))
        if tx is None:
            wrong.append(("missing", s))
            continue
        got = (
            as_utc(tx.started_at),
            as_utc(tx.stopped_at),
            tx.meter_start_wh,
            tx.meter_stop_wh,
            tx.active,
            db.samples.get(tx.id, 0),
        )
        sent = (
            _t(s["started_at"]),
            _t(s["stopped_at"]),
            s["meter_start_wh"],
            s["meter_stop_wh"],
            False,
            s["samples"],
        )
        if got != sent:
            wrong.append((s["charger"], s["connector"], s["transaction_id"], got, sent))
    assert wrong == []
    assert db.samples.get(None, 0) == 0  # every sample belongs to its transaction
    assert db.duplicate_samples == 0
    samples_sent = sum(s["samples"] for s in sessions)
    assert sum(db.samples.values()) == samples_sent

    # --- the cap held, minute by minute, the outage included --------------------------------
    minutes = report["site_power_kw_per_minute"]
    over = [(i, p) for i, p in enumerate(minutes) if p > CAP_KW + TOLERANCE_KW]
    assert over == []
    first_down = int((down - START).total_seconds() // 60)
    last_down = int((back - START).total_seconds() // 60)
    outage_peak = max(minutes[first_down : last_down + 1])
    assert report["site_peak_kw"] > 0.8 * CAP_KW  # the cap is used, not just respected

    # --- after the restart: reconciled first, then every running session re-planned -------
    after = [f for f in db.frames if _utc(f.created_at) >= back - timedelta(minutes=1)]
    first_tx_profile: dict[str, datetime] = {}
    for f in after:
        if f.direction == "out" and f.action == "SetChargingProfile" and _is_tx_profile(f):
            first_tx_profile.setdefault(f.charge_point_id, _utc(f.created_at))
    asked: dict[str, datetime] = {}
    for f in after:
        if f.direction == "out" and f.action in ("GetChargingProfiles", "GetCompositeSchedule"):
            asked.setdefault(f.charge_point_id, _utc(f.created_at))
    reported = {f.charge_point_id for f in after if f.action == "ReportChargingProfiles"}
    for cp, first in first_tx_profile.items():
        assert cp in asked, (cp, "a profile before its reconciliation")
        assert asked[cp] < first, (cp, "a profile before its reconciliation")
    for cp, version in versions.items():
        kind = "GetChargingProfiles" if version == "2.0.1" else "GetCompositeSchedule"
        assert any(f.charge_point_id == cp and f.action == kind for f in after), (cp, kind)
    # Stations with a TxProfile of ours installed reported it (the others answered NoProfiles).
    assert reported
    assert {versions[cp] for cp in reported} == {"2.0.1"}
    defaults_again = {
        p.charge_point_id
        for p in db.profiles
        if p.purpose == "TxDefaultProfile" and p.status == "Accepted" and _utc(p.created_at) >= back
    }
    assert defaults_again == set(versions)
    # The first plan in which no charger is still offline or being reconciled.
    restart_plans = [p for p in db.plans if _utc(p.created_at) >= back]
    whole = next(
        p
        for p in restart_plans
        if not any(
            r["reason"].startswith(("offline", "reconnected")) for r in p.inputs["reservations"]
        )
    )
    reconciled_at = _utc(whole.created_at)
    planned_after = {p.id for p in restart_plans}
    tx_rows = [
        p
        for p in db.profiles
        if p.purpose == "TxProfile" and p.plan_id in planned_after and p.status != "held"
    ]
    # Every session running once the site was whole again got a profile of a new plan, which its
    # charger accepted and (where the check ran) applied.
    running = [
        s
        for s in sessions
        if _t(s["started_at"]) < reconciled_at < _t(s["stopped_at"]) - timedelta(minutes=15)  # type: ignore[operator]
    ]
    assert len(running) >= 20
    for s in running:
        tx = tx_of[(s["charger"], s["transaction_id"])]
        mine = [p for p in tx_rows if p.transaction_id == tx.id]
        assert any(p.status == "Accepted" for p in mine), (s, mine)
    not_applied = [p for p in tx_rows if (p.verification or "").startswith("not applied")]
    assert not_applied == []
    # Refused only for sessions that were over when their profile got there: ended while the
    # central system was away (their StopTransaction still queued in the charger), ended while
    # the profile was on its way (the end of a stay, or of the run), or on a charger gone at the
    # end. The margin is replayed time for a loaded machine's lag (15 min: 3 s real).
    stopped = {tx_of[(s["charger"], s["transaction_id"])].id: _t(s["stopped_at"]) for s in sessions}
    refused = [p for p in tx_rows if p.status != "Accepted"]
    unexpected = [
        p
        for p in refused
        if not stopped[p.transaction_id] < _utc(p.created_at) + timedelta(minutes=15)  # type: ignore[operator]
    ]
    assert unexpected == []

    print(
        f"\n[csms killed] {db_url.split(':', maxsplit=1)[0]}: restart took {restart_s:.1f} s real; outage "
        f"{down:%H:%M:%S}-{back:%H:%M:%S} ({(back - down).total_seconds() / 60:.0f} min replayed); "
        f"{len(started_offline)} sessions started and {len(ended_offline)} ended meanwhile; "
        f"transaction messages {sum(c['transaction_messages'] for c in report['chargers'])}, "
        f"held while offline {held} (per charger max "
        f"{max(c['messages_max_queued'] for c in report['chargers'])}), all delivered later; "
        f"site peak during the outage {outage_peak:.2f} kW, whole run "
        f"{report['site_peak_kw']:.2f} kW, cap {CAP_KW:g} kW; transactions {len(sessions)}, "
        f"meter samples {samples_sent} (sent = stored); whole site planned again "
        f"{(reconciled_at - back).total_seconds() / 60:.1f} min replayed "
        f"({(reconciled_at - back).total_seconds() / SPEED:.1f} s real) after the restart; "
        f"{len([p for p in tx_rows if p.status == 'Accepted'])} profiles accepted after it, "
        f"{len(refused)} refused; chargers {len(by_charger)}"
    )
