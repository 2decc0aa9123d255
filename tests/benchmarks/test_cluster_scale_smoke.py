"""The cluster scale-out benchmark's machinery works end to end at a tiny size: clusters of 1 and
2 workers behind nginx under 10 chargers for 3 s, then a worker of 2 killed under 10 chargers,
and the Redis probe on a few hundred synthetic chargers. Its numbers are not asserted beyond being
there and sane: this is not a test of speed (no time limit is asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cluster_scale import (
    ScaleOptions,
    format_failover,
    format_markdown,
    format_scaling,
    main,
    prerequisite_problems,
    run_failover,
    run_redis_probe,
    run_scaling,
    to_json,
)
from tests.cluster.conftest import REDIS_URL
from tests.faults.storm_helpers import PG_ADMIN

pytestmark = pytest.mark.slow

N = 10


def _options() -> ScaleOptions:
    return ScaleOptions(
        workers=(1, 2),
        n=N,
        period_s=0.5,
        duration_s=3.0,
        database_url=PG_ADMIN,
        redis_url=REDIS_URL,
        call_timeout_s=5.0,
        ramp_timeout_s=60.0,
        sites=2,
        lease_ttl_s=3.0,
        presence_ttl_s=3.0,
        failover_workers=2,
        failover_period_s=1.0,
        failover_warmup_s=2.0,
        failover_timeout_s=60.0,
        csms_log_level="WARNING",
        progress_every_s=1.0,
    )


@pytest.fixture
def opts() -> ScaleOptions:
    options = _options()
    problems = prerequisite_problems(options)
    if problems:
        pytest.skip("cluster benchmark needs PostgreSQL, Redis and nginx: " + "; ".join(problems))
    return options


async def test_tiny_clusters_and_a_failover_report_every_number(
    opts: ScaleOptions, tmp_path: Path
) -> None:
    lines: list[str] = []
    runs = await run_scaling(opts, lines.append)

    assert [r.workers for r in runs] == [1, 2]
    for r in runs:
        b = r.base
        assert r.notes == []
        assert b.notes == []
        assert b.held == N
        assert b.connect_failures == 0
        assert b.offered_per_s == 20.0
        assert b.answered > 0
        assert b.answered_per_s > 0
        assert b.p50_ms is not None
        assert b.p95_ms is not None
        assert b.p99_ms is not None
        assert 0 < b.p50_ms <= b.p95_ms <= b.p99_ms
        assert b.call_errors == b.timeouts == 0
        assert sorted(b.worker_cpu_s) == [f"worker-{k + 1}" for k in range(r.workers)]
        assert all(v >= 0 for v in b.worker_cpu_s.values())
        assert sum(b.chargers_per_worker.values()) == N
        assert len(b.chargers_per_worker) == r.workers  # nginx spread them (least_conn)
        for value in (b.nginx_cpu_s, b.postgres_cpu_s, b.redis_cpu_s, b.client_cpu_s):
            assert value is not None
            assert value >= 0
        assert b.redis_commands_per_s is not None
        assert b.redis_commands_per_s > 0
        assert b.pg_commits_per_s is not None
        assert b.pg_commits_per_s > 0
        assert r.scaling is not None
        assert r.scaling > 0
        assert r.worker_log_errors == 0
    assert runs[0].scaling == 1.0
    assert any("s left" in line for line in lines)  # progress was printed

    failover = await run_failover(opts, lines.append)

    assert failover.notes == []
    assert failover.held_before == N
    assert failover.victim in failover.leases_before
    assert failover.victim_leases >= 1
    assert failover.dropped == failover.victim_chargers > 0
    for seconds in (
        failover.chargers_back_s,
        failover.presence_moved_s,
        failover.leadership_moved_s,
    ):
        assert seconds is not None
        assert seconds > 0
    assert failover.calls_sent > 0
    assert failover.calls_answered > 0
    assert failover.calls_lost >= 0
    assert failover.calls_errors == 0
    assert (
        set(failover.leases_after)
        == set(failover.chargers_after)
        == {w for w in failover.leases_before if w != failover.victim}
    )
    assert sum(failover.chargers_after.values()) == N

    probe = await run_redis_probe(REDIS_URL, 1200, 2, lines.append)
    assert probe.notes == []
    assert probe.refresh_calls >= 4  # 600 claims per worker, 500 per script call (+ others')
    assert probe.sync_calls > 0
    assert probe.sync_server_ms is not None
    assert probe.refresh_wall_s > 0
    assert probe.sync_out_bytes > 0

    assert "summary:" in format_scaling(runs)
    assert "chargers back" in format_failover(failover)
    text = format_markdown(opts, runs, failover, probe, "python -m benchmarks.cluster_scale")
    assert "| 2 | 10 | 20.0 | 10 |" in text
    assert "| leadership moved" in text
    assert '"failover"' in to_json(opts, runs, failover, probe)


def test_bad_options_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--workers", "1,x"],
        ["--workers", "0"],
        ["--n", "0"],
        ["--lease-ttl", "1"],
        ["--failover-workers", "1"],
        ["--max-step", "1"],
        ["--database-url", "sqlite:///x.db"],
        ["--no-scaling", "--no-failover"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: "), (argv, err)
        assert err.count("\n") == 1, (argv, err)
