"""The simulator benchmark's machinery works end to end at a tiny size (5 chargers for 1 s; one
ACN replay at a speed far too high to be accurate). Its numbers are not asserted beyond being
there: this is not a test of speed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.sim_load import (
    ACN_FILE,
    acn_accuracy,
    format_results,
    model_energy_kwh,
    run_acn,
    run_load,
)
from charge_point_sim import ChargerSpec, Ev
from charge_point_sim.driver import Arrival, SessionRequest
from charge_point_sim.scenario import ChargerSlot

T0 = datetime(2019, 6, 14, 12, tzinfo=UTC)


def test_the_model_energy_is_what_the_ev_takes_in_its_stay() -> None:
    slots = [ChargerSlot("A", ChargerSpec.uniform(1, 6600.0, phases=1))]
    full = Ev(capacity_kwh=60.0, soc=0.2, target_soc=0.3, max_power_w=6600.0, phases=1)
    short = Ev(capacity_kwh=60.0, soc=0.2, max_power_w=6600.0, phases=1)
    arrivals = {
        "A": [
            Arrival(T0, SessionRequest(1, full, "full", departure=T0 + timedelta(hours=3))),
            # Cut by the end of the run: 30 minutes at 6.6 kW.
            Arrival(
                T0 + timedelta(hours=4),
                SessionRequest(1, short, "cut", departure=T0 + timedelta(hours=9)),
            ),
        ]
    }
    model = model_energy_kwh(arrivals, slots, T0 + timedelta(hours=4, minutes=30))
    assert model == pytest.approx({"full": 6.0, "cut": 3.3})
    report = {"sessions": [{"id_tag": "full", "delivered_kwh": 6.0}]}
    result = acn_accuracy(report, model, 100.0, 0.01)
    assert (result.replayed, result.sessions) == (1, 2)
    assert result.error_pct == pytest.approx(100 * 3.3 / 9.3, abs=0.001)
    assert result.worst_session_kwh == pytest.approx(3.3)
    assert not result.accurate
    both = {"sessions": [*report["sessions"], {"id_tag": "cut", "delivered_kwh": 3.31}]}
    assert acn_accuracy(both, model, 100.0, 0.01).accurate


async def test_a_tiny_fleet_and_one_fast_replay_report_every_number(tmp_path: Path) -> None:
    load = await run_load(5, "mixed", 1, 1.0, ramp_timeout_s=30.0)
    assert load.errors == {}
    assert load.transaction_messages_per_s > 0
    assert load.cpu_pct >= 0
    assert load.peak_rss_mb > 0
    assert load.server_received["BootNotification"] == 5
    if not ACN_FILE.exists():
        pytest.skip(f"{ACN_FILE} not found")
    acn = await run_acn([200000.0], 0.01, ACN_FILE, tmp_path, lambda _: None)
    assert len(acn) == 1
    assert acn[0].sessions == 49
    assert acn[0].model_kwh > 0
    text = format_results(load, acn)
    assert "| 5 | mixed | 1 |" in text
    assert "| 200000 |" in text
