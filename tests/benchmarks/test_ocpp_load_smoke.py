"""The OCPP load benchmark's machinery works end to end at a tiny size (N=5 for ~3 s, raw server
only). Its numbers are not asserted beyond being there: this is not a test of speed."""

from __future__ import annotations

from benchmarks.ocpp_load import (
    Case,
    LoadOptions,
    format_markdown,
    format_table,
    percentile,
    run_case,
)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


async def test_raw_server_at_n5_reports_every_number() -> None:
    opts = LoadOptions(period_s=0.25, duration_s=3.0, call_timeout_s=3.0, progress_every_s=1.0)
    lines: list[str] = []
    result = await run_case(Case("raw", 5), opts, lines.append)

    assert result.notes == []
    assert result.held == 5
    assert result.connect_failures == 0
    assert result.offered_per_s == 20.0
    assert result.answered > 0
    assert result.answered_per_s > 0
    assert result.p50_ms is not None
    assert result.p99_ms is not None
    assert 0 < result.p50_ms <= result.p99_ms
    assert result.boot_p50_ms is not None
    assert result.boot_p50_ms > 0
    assert result.server_peak_rss_mb is not None
    assert result.server_peak_rss_mb > 0
    # A few ms of CPU in 3 s may round to 0 clock ticks: present, not necessarily positive.
    assert result.server_cpu_pct is not None
    assert result.server_cpu_pct >= 0
    assert result.client_cpu_pct is not None
    assert result.client_cpu_pct > 0
    assert result.call_errors == result.timeouts == 0
    assert any("left" in line for line in lines)  # progress was printed

    assert "raw" in format_table([result])
    assert "| raw | 5 |" in format_markdown([result], opts, rates=False)
