"""The benchmark machinery works (its numbers are not asserted: it is not a test of speed)."""

from __future__ import annotations

import argparse

from optimizer.bench import Case, add_bench_arguments, cases_from_args, run_one


def test_cases_follow_the_flags() -> None:
    p = argparse.ArgumentParser()
    add_bench_arguments(p)
    args = p.parse_args(
        ["--sizes", "40", "--long", "", "--milp", "200", "--pyomo", "", "--objectives", "100"]
    )
    labels = [c.label for c in cases_from_args(args)]
    assert labels[:2] == ["LP N=40", "MILP N=200"]
    assert len(labels) == 6


def test_one_case_reports_timings_and_the_highs_reference() -> None:
    row = run_one(Case("t", 20))
    assert row["status"] == "optimal"
    assert row["variables"] > 0
    assert row["total_s"] >= row["solve_s"] > 0
    assert row["peak_mb"] > 0
    assert run_one(Case("t", 20, reference=True))["highs_only_s"] > 0
