"""``python -m charge_point_sim run``: a site of simulated chargers against an OCPP server."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from charge_point_sim.acn import AcnScenario, acn_scenario_arrivals, day_start, parse_acn_scenario
from charge_point_sim.charger_model import ChargerSpec
from charge_point_sim.clock import ScaledClock
from charge_point_sim.driver import Arrival
from charge_point_sim.errors import SimulatorError
from charge_point_sim.iso15118 import with_iso15118
from charge_point_sim.runner import (
    ChargerConfig,
    ChargerRun,
    progress,
    report,
    run_site,
    tls_context,
)
from charge_point_sim.scenario import ChargerSlot, parse_scenario, random_arrivals
from charge_point_sim.site import Site, load_site
from charge_point_sim.station import Settings, Station


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m charge_point_sim", description="Simulated OCPP chargers and EVs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a site of simulated chargers against a central system")
    run.add_argument(
        "--url", required=True, help="the central system, e.g. ws://127.0.0.1:9000/ocpp"
    )
    run.add_argument("--chargers", type=int, default=10, help="how many chargers (default 10)")
    run.add_argument(
        "--version",
        choices=("1.6", "2.0.1", "mixed"),
        default="1.6",
        help="OCPP version of the chargers; mixed alternates (default 1.6)",
    )
    run.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)"
    )
    run.add_argument(
        "--duration",
        type=float,
        default=3600.0,
        help="how long to run, in simulated seconds (default 3600)",
    )
    run.add_argument("--report", type=Path, help="write the JSON report here")
    run.add_argument(
        "--scenario",
        default="random:1",
        help="random:SEED (default random:1): seeded arrivals; acn:FILE:DATE: replay the ACN-Data "
        "sessions of that local date (start defaults to its local midnight)",
    )
    run.add_argument("--connectors", type=int, default=1, help="connectors per charger (default 1)")
    run.add_argument(
        "--max-power-kw", type=float, default=22.0, help="max power per connector (default 22)"
    )
    run.add_argument(
        "--id-prefix", default="SIM", help="charger ids are PREFIX0001... (default SIM)"
    )
    run.add_argument("--password", help="HTTP Basic auth password for every charger")
    run.add_argument(
        "--start", help="simulated start time, ISO 8601 with offset (default: now, UTC)"
    )
    run.add_argument(
        "--anchor",
        help="the wall-clock instant (ISO 8601 with offset) at which the simulated clock reads "
        "--start (default: when the run starts); give a central system on a replay clock the "
        "same start, speed and anchor so that both read the same time",
    )
    run.add_argument(
        "--site",
        type=Path,
        help="site description file (JSON, see charge_point_sim/README.md); replaces --chargers, "
        "--connectors, --max-power-kw, --id-prefix, --password and --version",
    )
    run.add_argument(
        "--iso15118-share",
        type=float,
        help="share of the EVs that speak ISO 15118, 0 to 1 (default: the site file's, else 0); "
        "on 2.0.1 chargers they send NotifyEVChargingNeeds after the transaction starts",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seeds which EVs speak ISO 15118 and the reconnect jitter (default 1)",
    )
    run.add_argument(
        "--ca-file",
        type=Path,
        help="CA certificate (PEM) that a wss:// central system's certificate is checked "
        "against (default: the site file's, else the system's trust store)",
    )
    run.add_argument(
        "--meter-interval",
        type=int,
        default=60,
        help="simulated seconds between a session's meter values (the MeterValueSampleInterval "
        "/ SampledDataCtrlr.TxUpdatedInterval a central system may change; default 60)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def _problems(args: argparse.Namespace) -> list[str]:
    problems = []
    if args.chargers < 1:
        problems.append("--chargers must be >= 1")
    if not args.speed > 0:
        problems.append("--speed must be > 0")
    if not args.duration > 0:
        problems.append("--duration must be > 0")
    if args.connectors < 1:
        problems.append("--connectors must be >= 1")
    if args.meter_interval < 1:
        problems.append("--meter-interval must be >= 1")
    if not args.max_power_kw > 0:
        problems.append("--max-power-kw must be > 0")
    if not args.url.startswith(("ws://", "wss://")):
        problems.append("--url must start with ws:// or wss://")
    share = args.iso15118_share
    if share is not None and not 0 <= share <= 1:  # also catches NaN
        problems.append("--iso15118-share must be within [0, 1]")
    return problems


def _start(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise SimulatorError(f"--start {text!r} needs a UTC offset, e.g. {text}+00:00")
    return t.astimezone(UTC)


def _anchor(text: str | None) -> datetime | None:
    if text is None:
        return None
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise SimulatorError(f"--anchor {text!r} needs a UTC offset, e.g. {text}+00:00")
    return t


def configs(args: argparse.Namespace) -> list[ChargerConfig]:
    """The chargers the command line describes."""
    spec = ChargerSpec.uniform(args.connectors, args.max_power_kw * 1000.0)
    out = []
    for i in range(args.chargers):
        version = args.version
        if version == "mixed":
            version = "1.6" if i % 2 == 0 else "2.0.1"
        out.append(ChargerConfig(f"{args.id_prefix}{i + 1:04d}", version, spec, args.password))
    return out


class _ProgressLine:
    """The live line on stderr: rewritten in place on a terminal, every 5 s otherwise."""

    def __init__(self, runs: Sequence[ChargerRun], clock: ScaledClock, out: TextIO) -> None:
        self.runs, self.clock, self.out = runs, clock, out
        self.tty = out.isatty()
        self.last = 0.0

    def __call__(self) -> None:
        line = progress(self.runs, self.clock.now()).line()
        if self.tty:
            self.out.write("\r" + line + "\x1b[K")
            self.out.flush()
        elif time.monotonic() - self.last >= 5:
            self.out.write(line + "\n")
            self.last = time.monotonic()

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")


def run(args: argparse.Namespace) -> int:
    problems = _problems(args)
    site: Site | None = None
    acn: AcnScenario | None = None
    seed = 0
    start = datetime.now(UTC)
    tls: ssl.SSLContext | None = None
    anchor: datetime | None = None
    try:
        anchor = _anchor(args.anchor)
        acn = parse_acn_scenario(args.scenario)
        if acn is None:
            seed = parse_scenario(args.scenario)
        if args.start is None and acn is not None:
            start = day_start(acn.day).astimezone(UTC)
        else:
            start = _start(args.start)
        if args.site is not None:
            site = load_site(args.site)
        ca_file: Path | None = args.ca_file
        if ca_file is None and site is not None:
            ca_file = site.ca_file
        tls = tls_context(args.url, None if ca_file is None else str(ca_file))
    except (SimulatorError, ValueError) as e:
        problems.append(str(e))
    share = args.iso15118_share
    if share is None:
        share = 0.0 if site is None or site.iso15118_share is None else site.iso15118_share
    slots = (
        [ChargerSlot(c.charger_id, c.spec) for c in configs(args)]
        if site is None
        else [ChargerSlot(c.config.charger_id, c.config.spec, c.stations) for c in site.chargers]
    )
    arrivals: dict[str, list[Arrival]] = {}
    if not problems:
        try:
            if acn is None:
                arrivals = random_arrivals(seed, slots, start, args.duration)
            else:
                arrivals, count = acn_scenario_arrivals(acn, slots)
                arrivals, gone = _still_there(arrivals, start)
                print(
                    f"ACN {acn.day}: {count} sessions"
                    + (f" ({gone} left before the start, not played)" if gone else ""),
                    file=sys.stderr,
                )
            if share > 0:
                arrivals = with_iso15118(arrivals, share, args.seed)
        except SimulatorError as e:
            problems.append(str(e))
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    clock = ScaledClock(start, args.speed, anchor=anchor)
    until = start + timedelta(seconds=args.duration)
    cfgs = configs(args) if site is None else site.configs
    settings = Settings(meter_interval_s=args.meter_interval)
    runs = [ChargerRun(c, Station(c.spec, start, settings)) for c in cfgs]
    line = None if args.quiet else _ProgressLine(runs, clock, sys.stderr)
    try:
        asyncio.run(
            run_site(runs, args.url, clock, arrivals, until, on_tick=line, seed=args.seed, tls=tls)
        )
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    if line is not None:
        line.done()
    data = report(runs, start, clock.now(), args.speed, args.url)
    data["site_cap_kw"] = None if site is None else site.cap_kw
    data["iso15118_share"] = share
    if args.report is not None:
        args.report.write_text(json.dumps(data, indent=2) + "\n")
    sys.stdout.write(summary(data))
    return 0 if any(r.ever_connected for r in runs) else 1


def _still_there(
    arrivals: Mapping[str, Sequence[Arrival]], start: datetime
) -> tuple[dict[str, list[Arrival]], int]:
    """The arrivals of vehicles still there at ``start`` (a replay that starts mid-day does not
    play sessions that were over by then: they would be transactions of no time), and how many
    were left out."""
    kept: dict[str, list[Arrival]] = {}
    gone = 0
    for charger, items in arrivals.items():
        kept[charger] = []
        for a in items:
            departure = a.request.departure
            if departure is not None and departure <= start:
                gone += 1
            else:
                kept[charger].append(a)
    return kept, gone


def summary(data: Mapping[str, Any]) -> str:
    """The end-of-run table: one line per session (requested, delivered, departure met or not,
    and for an ISO 15118 EV the central system's answer to its charging needs), then the totals
    and the site's metered peak (next to its cap when the site file has one)."""
    sessions: list[dict[str, Any]] = list(data["sessions"])
    versions = {c["id"]: c["version"] for c in data["chargers"]}
    header = (
        f"{'charger':<12} {'conn':>4} {'vehicle':<10} {'arrival (UTC)':<20} {'departure (UTC)':<20} "
        f"{'requested kWh':>13} {'delivered kWh':>13} {'departure met':>13} {'15118 needs':>12}"
    )
    lines = [header, "-" * len(header)]
    for s in sessions:
        lines.append(
            f"{s['charger']:<12} {s['connector']:>4} {s['id_tag']:<10} "
            f"{(s['arrival'] or '')[:19]:<20} {(s['departure'] or '-')[:19]:<20} "
            f"{s['requested_kwh']:>13.3f} {s['delivered_kwh']:>13.3f} "
            f"{'yes' if s['met'] else 'no':>13} "
            f"{_needs(s, versions.get(s['charger'])):>12}"
        )
    met = sum(1 for s in sessions if s["met"])
    lines.append(
        f"sessions {len(sessions)} (departure met {met})  "
        f"requested {data['energy_requested_kwh']} kWh  "
        f"delivered {data['energy_delivered_kwh']} kWh"
    )
    iso = [s for s in sessions if s.get("iso15118")]
    if iso:
        answers = Counter(s["needs_status"] for s in iso if s["needs_status"] is not None)
        lines.append(
            f"ISO 15118 EVs {len(iso)}, charging needs sent {sum(answers.values())}"
            + "".join(f", {k} {v}" for k, v in sorted(answers.items()))
        )
    cap = data.get("site_cap_kw")
    lines.append(
        f"site metered peak {data['site_peak_kw']} kW"
        + (
            ""
            if cap is None
            else f" (cap {cap} kW{', EXCEEDED' if data['site_peak_kw'] > cap else ''})"
        )
    )
    for c in data["chargers"]:
        if c["error"]:
            lines.append(f"  {c['id']}: {c['error']}")
    return "\n".join(lines) + "\n"


def _needs(session: Mapping[str, Any], version: str | None) -> str:
    """The summary's ISO 15118 cell: the central system's answer, or why there is none."""
    if not session.get("iso15118"):
        return "-"
    status = session.get("needs_status")
    if status is None:
        return "none (1.6)" if version == "1.6" else "not sent"
    return str(status)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("ocpp").setLevel(logging.CRITICAL)
    if args.command == "run":
        return run(args)
    return 2
