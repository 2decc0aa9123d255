"""Redis lost for a while by a cluster worker (through a proxy the test cuts, so the Redis other tests
use is left alone), with simulated chargers charging on its site.

While Redis is away the worker cannot renew its lease: it stops leading the site within the
lease's TTL and then plans and sends nothing (a profile sent then could contradict a new leader's);
the chargers stay connected and keep charging on their last profiles, under the cap; commands
that need no lease still reach the chargers it holds; and every message the chargers send is
stored, since the database does not depend on Redis. When Redis is back the worker takes the
lease again with a new fencing token, reconciles the site's chargers and plans again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from charge_point_sim.driver import Arrival
from charge_point_sim.runner import report, run_site
from csms.cluster.settings import ClusterSettings
from csms.db.models import PlanAudit, ProfileAudit, as_utc
from csms.domain.clock import ScaledClock
from csms.domain.commands import RawCall
from csms.runtime import run
from tests.cluster.conftest import REDIS_URL, eventually
from tests.cluster.tcp_proxy import CuttableProxy
from tests.cluster.test_cluster_runtime import _runs, _settings
from tests.e2e.harness import START, SimCharger, vehicle
from tests.e2e.test_closed_loop import over_cap
from tests.faults.test_csms_killed import read_db

SPEED = 300.0
CAP_KW = 18.0
HOURS = 2.5
CUT_AT_H = 0.75
OUTAGE_S = 5.0  # real seconds, longer than the lease's TTL (3 s)
CHARGERS = (
    SimCharger("R-1", "1.6"),
    SimCharger("R-2", "2.0.1"),
    SimCharger("R-3", "2.0.1", max_kw=7.4, phases=1),
)


async def test_a_worker_without_redis_stops_dispatching_and_takes_the_site_back_after(
    tmp_path: Path, make_settings: Callable[..., ClusterSettings]
) -> None:
    host, port = REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
    proxy = CuttableProxy(host, int(port))
    await proxy.start()
    db_url = f"sqlite:///{tmp_path / 'csms.db'}"
    cluster = make_settings(
        "w1",
        redis_url=f"redis://127.0.0.1:{proxy.port}/0",
        presence_ttl_s=3.0,
        lease_ttl_s=3.0,
        fence_margin_s=0.2,
        command_timeout_s=5.0,
    )
    clock = ScaledClock(START, SPEED)
    seen: dict[str, Any] = {}
    try:
        async with run(_settings(db_url, cluster), clock) as w:
            assert w.cluster is not None
            await w.sites.upsert(
                "S1", {"timezone": "UTC", "capacity_kw": CAP_KW, "method": "lp", "tx_default_kw": 0}
            )
            for c in CHARGERS:
                await w.stations.register_charge_point(
                    c.id, site_id="S1", max_power_w=c.max_kw * 1000, phases=c.phases
                )
            await eventually(
                lambda: w.cluster is not None and w.cluster.leases.is_leader("S1"), "leading S1"
            )
            first_token = w.cluster.leases.token("S1")
            runs = _runs(CHARGERS)
            plays = {
                c.id: [Arrival(*vehicle(2 + i, 6.0, 30.0, max_kw=c.max_kw, phases=c.phases))]
                for i, c in enumerate(CHARGERS)
            }

            async def outage() -> None:
                assert w.cluster is not None
                leases = w.cluster.leases
                await clock.sleep((START + timedelta(hours=CUT_AT_H) - clock.now()).total_seconds())
                proxy.cut()
                seen["lapse_s"] = await eventually(
                    lambda: not leases.is_leader("S1"), "leadership lapsed"
                )
                seen["lapsed_at"] = clock.now()
                # A command that needs no lease still reaches a charger held here.
                seen["command"] = await w.gateway.send(
                    "R-1", RawCall("TriggerMessage", {"requestedMessage": "Heartbeat"})
                )
                await asyncio.sleep(OUTAGE_S)
                seen["connected_during"] = sorted(w.ocpp.connections)
                seen["restored_at"] = clock.now()
                proxy.restore()
                seen["back_s"] = await eventually(
                    lambda: leases.is_leader("S1"), "leading S1 again"
                )
                seen["token"] = leases.token("S1")

            async with asyncio.TaskGroup() as tg:
                tg.create_task(outage())
                await run_site(
                    runs,
                    f"ws://127.0.0.1:{w.ocpp.port}/ocpp",
                    clock,
                    plays,
                    START + timedelta(hours=HOURS),
                )
            data = report(runs, START, clock.now(), SPEED, "redis outage")
            async with w.sessions() as s:
                plans = list((await s.exec(select(PlanAudit).order_by(col(PlanAudit.id)))).all())
                profiles = list((await s.exec(select(ProfileAudit))).all())
    finally:
        await proxy.close()
    db = await read_db(db_url)
    print(f"\nredis outage: {seen}")  # shown with pytest -s

    assert seen["command"].ok
    assert seen["command"].status == "Accepted"
    assert seen["connected_during"] == sorted(c.id for c in CHARGERS)
    # Nothing planned or sent between the lapse and Redis's return ...
    lapsed, restored = seen["lapsed_at"], seen["restored_at"]

    def during(t: datetime | None) -> bool:
        u = as_utc(t)
        return u is not None and lapsed < u < restored

    assert [p.id for p in plans if during(p.created_at)] == []
    assert [p.id for p in profiles if during(p.created_at) and p.status == "Accepted"] == []
    # ... then the lease taken again with a newer token, the chargers reconciled, the site planned.
    assert first_token is not None
    assert seen["token"] > first_token
    regained = [p for p in plans if (as_utc(p.created_at) or lapsed) >= restored]
    assert any("leadership gained" in p.trigger for p in regained), [p.trigger for p in regained]
    # The cap held and every message was stored.
    assert over_cap(data, CAP_KW) == []
    sessions = [s for s in data["sessions"] if s["transaction_id"] is not None]
    assert len(db.txs) == len(sessions) == len(CHARGERS)
    samples = {t.ocpp_id: db.samples.get(t.id, 0) for t in db.txs}
    assert {s["transaction_id"]: s["samples"] for s in sessions} == samples
    assert db.duplicate_samples == 0
