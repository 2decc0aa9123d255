"""Command line: ``python -m optimizer plan|compare|scenario|bench``.

Exit codes: 0 done, 1 no usable plan, 2 bad input (the message names the field and the fix).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from optimizer.errors import OptimizerError
from optimizer.formulation import Weights
from optimizer.planner import ENGINES, solve
from optimizer.problem import Problem
from optimizer.result import Kpis, Method, SolveResult
from optimizer.scenario_io import plan_to_dict, problem_from_json, problem_to_dict

EXIT_OK = 0
EXIT_NO_PLAN = 1
EXIT_BAD_INPUT = 2

COMPARE_METHODS = (
    Method.LP,
    Method.MILP,
    Method.HEURISTIC,
    Method.EARLIEST_DEADLINE,
    Method.EQUAL_SHARE,
    Method.UNCONTROLLED,
)


class CliError(Exception):
    """A user error found by the CLI itself (bad path, bad flag value)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except (OptimizerError, CliError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m optimizer",
        description="Plan EV charging on a site under a power cap (LP/MILP with HiGHS).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = sub.add_parser("plan", help="plan a scenario and print the KPIs")
    plan.add_argument("scenario", help="scenario JSON file (see README), or - for stdin")
    _solver_flags(plan)
    plan.add_argument("--out", metavar="PLAN.json", help="write the plan as JSON to this file")
    plan.add_argument(
        "--sessions", type=int, default=10, metavar="N", help="sessions to list (default 10)"
    )
    plan.set_defaults(handler=_cmd_plan)

    cmp_ = sub.add_parser("compare", help="KPIs of LP, MILP, heuristic and baselines side by side")
    cmp_.add_argument("scenario", help="scenario JSON file, or - for stdin")
    _solver_flags(cmp_, with_method=False)
    cmp_.set_defaults(handler=_cmd_compare)

    sc = sub.add_parser("scenario", help="build a scenario from real session data (ACN-Data)")
    sc.add_argument("--from-acn", required=True, metavar="FILE.csv.gz", help="ACN-Data CSV file")
    sc.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="site-local day to take")
    sc.add_argument("--capacity-kw", required=True, type=float, help="site cap in kW")
    sc.add_argument("--max-power-kw", type=float, default=6.6, help="per session (default 6.6)")
    sc.add_argument("--min-power-kw", type=float, default=0.0, help="per session (default 0)")
    sc.add_argument("--step-minutes", type=float, default=15.0, help="step length (default 15)")
    sc.add_argument("--horizon-steps", type=int, help="steps (default: to the next local midnight)")
    sc.add_argument(
        "--energy",
        choices=("delivered", "requested"),
        default="delivered",
        help="energy need: metered (default) or what the driver asked for",
    )
    sc.add_argument(
        "--departure",
        choices=("actual", "estimated"),
        default="actual",
        help="departure: real (default) or the driver's estimate",
    )
    sc.add_argument(
        "--timezone",
        default="America/Los_Angeles",
        help="site time zone for --date and the day's start (default America/Los_Angeles)",
    )
    sc.add_argument("--out", metavar="SCENARIO.json", help="write here instead of stdout")
    sc.set_defaults(handler=_cmd_scenario)

    bench = sub.add_parser("bench", help="benchmark the planner (not a test; see BENCHMARKS.md)")
    from optimizer.bench import add_bench_arguments

    add_bench_arguments(bench)
    return p


def _solver_flags(p: argparse.ArgumentParser, *, with_method: bool = True) -> None:
    if with_method:
        p.add_argument(
            "--method",
            default="lp",
            help="lp (default), milp, heuristic, or a baseline: uncontrolled, equal_share, "
            "earliest_deadline",
        )
    p.add_argument(
        "--engine", default="highs", choices=ENGINES, help="highs (default) or pyomo (reference)"
    )
    p.add_argument("--time-limit", type=float, metavar="S", help="solver time limit in seconds")
    p.add_argument("--gap", type=float, default=0.01, help="MILP relative gap (default 0.01)")
    p.add_argument("--peak-weight", type=float, default=0.0, help="secondary peak term (default 0)")
    p.add_argument("--price-weight", type=float, default=0.1, help="secondary cost term (0.1)")
    p.add_argument("--early-weight", type=float, default=0.01, help="charge-early term (0.01)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _load(path: str) -> Problem:
    if path == "-":
        return problem_from_json(sys.stdin.read())
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read it: {exc}") from None
    try:
        return problem_from_json(text)
    except OptimizerError as exc:
        raise CliError(f"{path}: {exc}") from None


class _Progress:
    """Progress lines on stderr; on a terminal, a live elapsed-time line while the solver runs."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.last = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.live = enabled and stream.isatty()

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        self.last = message
        line = f"[{time.perf_counter() - self.t0:6.2f} s] {message}"
        if self.live:
            self.stream.write("\r\033[K" + line + "\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self) -> _Progress:
        if self.live:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            elapsed = time.perf_counter() - self.t0
            self.stream.write(f"\r\033[K  working… {elapsed:5.1f} s  ({self.last})")
            self.stream.flush()


def _weights(args: argparse.Namespace) -> Weights:
    return Weights(price=args.price_weight, early=args.early_weight, peak=args.peak_weight)


def _solve(problem: Problem, method: str, args: argparse.Namespace) -> SolveResult:
    with _Progress(sys.stderr, enabled=not args.quiet) as progress:
        return solve(
            problem,
            method,
            weights=_weights(args),
            time_limit_s=args.time_limit,
            mip_gap=args.gap,
            engine=args.engine,
            progress=progress,
        )


def _cmd_plan(args: argparse.Namespace) -> int:
    problem = _load(args.scenario)
    result = _solve(problem, args.method, args)
    out = sys.stdout
    _print_header(out, problem)
    _print_result(out, result)
    _print_kpis(out, [(result.method.value, result.kpis)])
    _print_sessions(out, result, args.sessions)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.out:
        path = Path(args.out)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(plan_to_dict(result), indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            raise CliError(f"--out {args.out}: cannot write: {exc}") from None
        print(f"\nPlan written to {path}", file=out)
    return EXIT_OK if result.status.has_plan else EXIT_NO_PLAN


def _cmd_compare(args: argparse.Namespace) -> int:
    problem = _load(args.scenario)
    results = [_solve(problem, m.value, args) for m in COMPARE_METHODS]
    _print_header(sys.stdout, problem)
    _print_kpis(
        sys.stdout,
        [
            (r.method.value if r.method == m else f"{m.value}*", r.kpis)
            for m, r in zip(COMPARE_METHODS, results, strict=True)
        ],
    )
    print(
        "\nuncontrolled ignores the cap (KPIs only); * = fell back to the heuristic.",
        file=sys.stdout,
    )
    return EXIT_OK


def _cmd_scenario(args: argparse.Namespace) -> int:
    from optimizer.acn import ATTRIBUTION, read_acn, scenario_from_acn

    try:
        day = date.fromisoformat(args.date)
    except ValueError:
        raise CliError(f"--date {args.date!r}: write the day as YYYY-MM-DD") from None
    rows = read_acn(args.from_acn)
    problem = scenario_from_acn(
        rows,
        day,
        capacity_kw=args.capacity_kw,
        max_power_kw=args.max_power_kw,
        min_power_kw=args.min_power_kw,
        step_minutes=args.step_minutes,
        horizon_steps=args.horizon_steps,
        energy=args.energy,
        departure=args.departure,
        timezone=args.timezone,
    )
    data: dict[str, Any] = {
        "source": f"{Path(args.from_acn).name}, {day}: {ATTRIBUTION}",
        **problem_to_dict(problem),
    }
    text = json.dumps(data, indent=1) + "\n"
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"--out {args.out}: cannot write: {exc}") from None
        print(f"{len(problem.sessions)} sessions on {day} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _print_header(out: TextIO, problem: Problem) -> None:
    site = problem.site
    caps = site.capacity_kw
    cap = f"{caps[0]:g} kW" if len(set(caps)) == 1 else f"{min(caps):g}–{max(caps):g} kW"
    print(
        f"Site {site.id}: {len(problem.sessions)} sessions, {site.horizon_steps} steps of "
        f"{site.step_minutes:g} min from {site.start.isoformat()}, cap {cap}",
        file=out,
    )


def _print_result(out: TextIO, r: SolveResult) -> None:
    info = r.solver
    objective = "" if info.objective is None else f", objective {info.objective:.4f}"
    gap = "" if info.mip_gap is None else f", gap {info.mip_gap:.3%}"
    print(
        f"Method {r.method.value} ({info.engine} {info.algorithm}): {r.status.value}"
        f"{objective}{gap}; {r.timings.total_s:.3f} s (build {r.timings.build_s:.3f} s, "
        f"solve {r.timings.solve_s:.3f} s)",
        file=out,
    )
    if info.fallback_reason:
        print(f"Fell back to the heuristic: {info.fallback_reason}", file=out)


KPI_ROWS: tuple[tuple[str, str, str], ...] = (
    ("energy_requested_kwh", "energy requested", "{:.2f} kWh"),
    ("energy_delivered_kwh", "energy delivered", "{:.2f} kWh"),
    ("served_ratio", "served ratio", "{:.2%}"),
    ("unmet_kwh", "unmet energy", "{:.2f} kWh"),
    ("sessions_fully_served_pct", "sessions fully served", "{:.1f} %"),
    ("peak_kw", "peak power", "{:.2f} kW"),
    ("load_factor", "load factor", "{:.3f}"),
    ("cap_violation_kwh", "cap violation", "{:.2f} kWh"),
    ("cap_violation_steps", "cap violation steps", "{:d}"),
    ("energy_cost", "energy cost", "{:.2f}"),
    ("jain_fairness", "Jain fairness", "{:.3f}"),
    ("solve_time_s", "solve time", "{:.3f} s"),
)


def _print_kpis(out: TextIO, columns: list[tuple[str, Kpis]]) -> None:
    width = max(14, *(len(name) + 2 for name, _ in columns))
    print("", file=out)
    print(f"{'KPI':<24}" + "".join(f"{name:>{width}}" for name, _ in columns), file=out)
    for key, label, fmt in KPI_ROWS:
        cells = []
        for _, k in columns:
            value = getattr(k, key)
            cells.append("—" if value is None else fmt.format(value))
        print(f"{label:<24}" + "".join(f"{c:>{width}}" for c in cells), file=out)


def _print_sessions(out: TextIO, r: SolveResult, limit: int) -> None:
    if limit <= 0 or not r.session_ids:
        return
    sessions = r.problem.sessions
    order = sorted(range(len(sessions)), key=lambda i: (-r.unmet_kwh[i], sessions[i].id))
    shown = order[:limit]
    print(f"\nSessions, least served first ({len(shown)} of {len(sessions)}):", file=out)
    print(
        f"{'id':<22}{'arrival':>8}{'departure':>11}{'needed':>10}{'delivered':>11}{'unmet':>9}",
        file=out,
    )
    for i in shown:
        s = sessions[i]
        print(
            f"{s.id[:21]:<22}{s.arrival.strftime('%H:%M'):>8}{s.departure.strftime('%H:%M'):>11}"
            f"{s.energy_kwh:>10.2f}{r.delivered_kwh[i]:>11.2f}{r.unmet_kwh[i]:>9.2f}",
            file=out,
        )
