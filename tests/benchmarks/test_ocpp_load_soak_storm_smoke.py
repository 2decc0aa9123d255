"""The soak and storm modes of the OCPP load benchmark work end to end at a tiny size (5 chargers,
a few seconds, csms on SQLite). Their numbers are not asserted beyond being there and consistent:
this is not a test of speed."""

from __future__ import annotations

from benchmarks.ocpp_load import (
    SoakOptions,
    StormOptions,
    format_soak_markdown,
    format_soak_summary,
    format_storm_markdown,
    main,
    run_soak,
    run_storm,
)


async def test_soak_at_n5_reports_every_interval() -> None:
    opts = SoakOptions(n=5, period_s=0.5, duration_s=3.0, interval_s=1.0, call_timeout_s=3.0)
    lines: list[str] = []
    result = await run_soak(opts, lines.append)

    assert result.notes == []
    assert result.booted == 5
    assert len(result.intervals) == 3
    for row in result.intervals:
        assert row.connected == 5
        assert row.answered > 0
        assert row.p50_ms is not None
        assert row.p99_ms is not None
        assert 0 < row.p50_ms <= row.p99_ms
        assert row.errors == row.timeouts == row.closed == 0
        assert row.rss_mb is not None
        assert row.rss_mb > 0
        assert row.db_mb is not None
        assert row.db_mb > 0
    assert result.answered == sum(r.answered for r in result.intervals)
    assert result.rss_first_mb is not None
    assert result.rss_growth_mb_per_h is not None
    assert result.reconnects == 0
    assert sum("[soak]" in line and "msg/s" in line for line in lines) == 3

    assert "growth" in format_soak_summary(result)
    assert format_soak_markdown(result).count("\n| ") == 4  # header and three intervals


async def test_storm_at_n5_brings_every_charger_back_three_times() -> None:
    opts = StormOptions(n=5, register_concurrency=5, phase_timeout_s=120.0)
    phases = await run_storm(opts, lambda _line: None)

    assert [p.n for p in phases] == [5, 5, 5]
    assert [p.back for p in phases] == [5, 5, 5]
    for p in phases:
        assert p.p50_s is not None
        assert p.max_s is not None
        assert 0 <= p.p50_s <= p.max_s
        assert p.server_errors == 0
    assert phases[1].server_start_s is not None
    assert phases[1].server_start_s > 0
    assert "| network blip" in format_storm_markdown(phases, opts)


def test_subcommands_reject_bad_arguments() -> None:
    assert main(["soak", "--n", "0"]) == 2
    assert main(["storm", "--n", "0"]) == 2
