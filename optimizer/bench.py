"""``python -m optimizer bench``: time and memory of the planner on seeded congested instances.

Not a test: it prints a table (and can write it as Markdown for BENCHMARKS.md). Every case runs in
a fresh process so that peak memory and cold-start costs are its own. For each LP case the same
arrays are also handed to a fresh HiGHS instance and only ``run()`` is timed: the ratio of our total
to that is the overhead of everything that is not the solver.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Case:
    """One benchmark case."""

    label: str
    n: int
    steps: int = 96
    method: str = "lp"
    engine: str = "highs"
    prices: bool = False
    weights: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    # Only hand the arrays to a fresh HiGHS and time run(): the solver's own time, measured in a
    # process of its own so that neither measurement warms the other's caches.
    reference: bool = False


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of the bench command."""
    p.add_argument("--sizes", default="40,400,2000,10000", help="LP sizes at 96 steps")
    p.add_argument("--long", default="2000", help="LP sizes at 288 steps (5-minute steps)")
    p.add_argument("--milp", default="40,200,1000", help="MILP sizes (min power), 96 steps")
    p.add_argument("--pyomo", default="40,400,2000", help="sizes for the Pyomo reference engine")
    p.add_argument(
        "--objectives",
        default="2000,10000",
        help="sizes at which to measure the cost of each objective term",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per case; the median is shown")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.set_defaults(handler=run_bench)


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def cases_from_args(args: argparse.Namespace) -> list[Case]:
    """The cases to run, in order."""
    seed = args.seed
    out = [Case(f"LP N={n}", n, seed=seed) for n in _sizes(args.sizes)]
    out += [Case(f"LP N={n} × 288", n, steps=288, seed=seed) for n in _sizes(args.long)]
    out += [Case(f"MILP N={n}", n, method="milp", seed=seed) for n in _sizes(args.milp)]
    out += [Case(f"Pyomo LP N={n}", n, engine="pyomo", seed=seed) for n in _sizes(args.pyomo)]
    for n in _sizes(args.objectives):
        out += [
            Case(f"energy only N={n}", n, weights={"early": 0.0, "price": 0.0}, seed=seed),
            Case(f"+ early N={n}", n, seed=seed),
            Case(f"+ early + price N={n}", n, prices=True, seed=seed),
            Case(f"+ early + peak N={n}", n, weights={"peak": 0.1}, seed=seed),
        ]
    return out


def run_one(case: Case) -> dict[str, Any]:
    """Run one case in this process and measure it."""
    from optimizer.formulation import Weights, build_lp
    from optimizer.grid import build_grid
    from optimizer.highs_backend import HighsModel, HighsOptions
    from optimizer.planner import solve
    from optimizer.synthetic import congested_day

    problem = congested_day(
        case.n, seed=case.seed, horizon_steps=case.steps, with_prices=case.prices
    )
    weights = Weights(**case.weights)
    if case.reference:
        model = HighsModel(build_lp(build_grid(problem), weights), HighsOptions())
        return {"highs_only_s": model.run().solve_s}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = solve(problem, case.method, weights=weights, engine=case.engine, time_limit_s=60)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row: dict[str, Any] = {
        "status": result.status.value,
        "method": result.method.value,
        "variables": result.solver.n_variables,
        "build_s": result.timings.build_s,
        "solve_s": result.timings.solve_s,
        "total_s": result.timings.total_s,
        "peak_mb": peak_mb,
        "baseline_mb": rss_before,
        "served": result.kpis.served_ratio,
        "gap": result.solver.mip_gap,
        "algorithm": result.solver.algorithm,
    }
    return row


def run_bench(args: argparse.Namespace) -> int:
    """Run every case in a fresh process, print the table as it goes."""
    if args.one:
        case = Case(**json.loads(args.one))
        print(json.dumps(run_one(case)))
        return 0
    cases = cases_from_args(args)
    print(_machine())
    header = (
        f"{'case':<26}{'vars':>9}{'build s':>9}{'solve s':>9}{'total s':>9}{'HiGHS s':>9}"
        f"{'ratio':>7}{'peak MB':>9}{'served':>8}  status"
    )
    print(header)
    rows: list[tuple[Case, dict[str, Any]]] = []
    for case in cases:
        runs = []
        with_reference = case.method == "lp" and case.engine == "highs"
        for _ in range(max(args.repeat, 1)):
            row = _in_fresh_process(case)
            if row is None:
                break
            if with_reference:
                ref = _in_fresh_process(replace(case, reference=True))
                row["highs_only_s"] = None if ref is None else ref["highs_only_s"]
            runs.append(row)
        if not runs:
            continue
        row = _median(runs)
        rows.append((case, row))
        print(_format(case, row), flush=True)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(_markdown(rows))
        print(f"\nMarkdown table written to {args.markdown}")
    return 0


def _in_fresh_process(case: Case) -> dict[str, Any] | None:
    proc = subprocess.run(
        [sys.executable, "-m", "optimizer", "bench", "--one", json.dumps(asdict(case))],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"{case.label:<26} failed: {proc.stderr.strip().splitlines()[-1:]}")
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(runs[0])
    for key in ("build_s", "solve_s", "total_s", "peak_mb", "highs_only_s"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    out["runs"] = len(runs)
    return out


def _cells(row: dict[str, Any]) -> tuple[str, str]:
    highs = row.get("highs_only_s")
    ratio = f"{row['total_s'] / highs:.2f}" if highs else "—"
    return (f"{highs:.3f}" if highs else "—"), ratio


def _format(case: Case, row: dict[str, Any]) -> str:
    highs, ratio = _cells(row)
    status = row["status"] + (f" gap {row['gap']:.3%}" if row.get("gap") is not None else "")
    return (
        f"{case.label:<26}{row['variables']:>9,}{row['build_s']:>9.3f}{row['solve_s']:>9.3f}"
        f"{row['total_s']:>9.3f}{highs:>9}{ratio:>7}{row['peak_mb']:>9.0f}"
        f"{row['served']:>8.2%}  {status} ({row['algorithm']})"
    )


def _markdown(rows: list[tuple[Case, dict[str, Any]]]) -> str:
    lines = [
        _machine(),
        "",
        "| case | variables | build s | solve s | total s | HiGHS-only s | ratio | peak MB | "
        "served | status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for case, row in rows:
        highs, ratio = _cells(row)
        status = row["status"] + (f", gap {row['gap']:.3%}" if row.get("gap") is not None else "")
        lines.append(
            f"| {case.label} | {row['variables']:,} | {row['build_s']:.3f} | {row['solve_s']:.3f} | "
            f"{row['total_s']:.3f} | {highs} | {ratio} | {row['peak_mb']:.0f} | "
            f"{row['served']:.2%} | {status} ({row['algorithm']}) |"
        )
    return "\n".join(lines) + "\n"


def _machine() -> str:
    from importlib.metadata import version

    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"Machine: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB; Python "
        f"{platform.python_version()}, highspy {version('highspy')}, pyomo {version('pyomo')}"
    )
