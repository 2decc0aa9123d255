"""The closed-loop benchmark's machinery works end to end at a tiny size (4 chargers, about 10 s:
the central system here, the simulator in its child process, on one clock). Its numbers are not
asserted beyond being there: this is not a test of speed."""

from __future__ import annotations

from pathlib import Path

from benchmarks.closed_loop import (
    LatencyOptions,
    OfflineRow,
    format_acn,
    format_latency,
    run_latency_case,
)


async def test_a_four_charger_site_reports_every_latency(tmp_path: Path) -> None:
    opts = LatencyOptions(
        starts=2, interval_s=0.5, ramp_s=2.5, burst_s=1.0, settle_s=1.0, tail_s=1.5
    )
    lines: list[str] = []
    r = await run_latency_case(4, opts, tmp_path, lines.append)

    assert r.crash is None
    assert r.at_burst == (4, 4, 4)  # connected, booted, TxDefaultProfile accepted
    assert (r.burst.starts, r.burst.served) == (2, 2)
    assert (r.staggered.starts, r.staggered.served) == (2, 2)
    for g in (r.burst, r.staggered):
        assert g.p50_s is not None
        assert g.p95_s is not None
        assert 0 < g.p50_s <= g.p95_s
        assert g.not_all_accepted == 0
    assert r.plans >= 2
    assert r.profiles_per_plan_max >= 1
    assert any("staggered p50" in line for line in lines)
    assert "| 4 | 13.2 | staggered | 2 | 2 |" in format_latency([r], opts)


def test_the_acn_table_compares_with_the_offline_optimum() -> None:
    rows = [
        OfflineRow(50.0, "lp", 5.0, "optimal", 100.0, 96.0, 0.96, 50.0, 0),
        OfflineRow(50.0, "uncontrolled", 5.0, "infeasible", 100.0, 96.0, 0.96, 80.0, 12),
    ]
    text = format_acn([], rows)
    assert "| 50 | offline optimum (LP, day known), 5-min steps | 96.00 |" in text
    assert "| 50 | uncontrolled, 5-min steps | 96.00 | 96.0 | 80.00 (plan) | 12 steps |" in text
