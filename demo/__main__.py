"""``make demo``: the whole system on one machine.

The central system (OCPP endpoint + HTTP API, SQLite) and a simulated site (``examples/
demo_site.json``: 20 chargers, OCPP 1.6 and 2.0.1, a few field quirks) replaying a real day of
ACN-Data sessions, both on one replay clock (60x by default: the day in about 20 minutes). The
simulator talks to the central system over real websockets, as any charger would; the two share
no code, only the clock of this process.

Stop with Ctrl-C at any time: the summary (energy per session, metered peak against the cap) and
the central system's KPIs are printed either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import sys
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import uvicorn

from charge_point_sim.acn import CALTECH_TZ, acn_scenario_arrivals, parse_acn_scenario
from charge_point_sim.cli import summary as sim_summary
from charge_point_sim.errors import SimulatorError
from charge_point_sim.iso15118 import with_iso15118
from charge_point_sim.runner import ChargerRun, progress, report, run_site
from charge_point_sim.scenario import ChargerSlot
from charge_point_sim.site import load_site
from charge_point_sim.station import Station
from csms.domain.clock import ScaledClock
from csms.logs import setup as setup_logging
from csms.runtime import Runtime
from csms.services.site_kpis import site_kpis
from csms.settings import DatabaseSettings, OcppSettings, Settings, WebSettings
from web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2019, 6, 14)
SITE_ID = "demo"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    p.add_argument("--speed", type=float, default=60.0, help="replay speed (default 60)")
    p.add_argument("--from", dest="start", default="05:00", help="local start time (05:00)")
    p.add_argument("--hours", type=float, default=19.0, help="how long to replay (19 h)")
    p.add_argument("--cap-kw", type=float, default=40.0, help="the site's cap (40 kW)")
    p.add_argument("--method", choices=("lp", "milp", "heuristic"), default="milp")
    p.add_argument("--http-port", type=int, default=8000, help="console / API port (8000)")
    p.add_argument("--ocpp-port", type=int, default=9000, help="OCPP websocket port (9000)")
    p.add_argument("--db", type=Path, default=ROOT / "out" / "demo.db", help="SQLite file")
    p.add_argument("--site", type=Path, default=ROOT / "examples" / "demo_site.json")
    p.add_argument(
        "--sessions",
        type=Path,
        default=ROOT / "examples" / "acn_caltech_2019-06-14.csv.gz",
        help="ACN-Data sessions (gzip CSV) to replay, on 2019-06-14",
    )
    p.add_argument("--report", type=Path, default=ROOT / "out" / "demo_report.json")
    return p


def _real_time(seconds: float) -> str:
    """``19 min`` or ``48 s``."""
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _free(port: int) -> int:
    """``port`` if it can be bound on localhost, else any free port (said on stderr)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            s.bind(("127.0.0.1", 0))
            free = int(s.getsockname()[1])
    print(f"port {port} is in use: using {free} instead", file=sys.stderr)
    return free


def _problems(args: argparse.Namespace) -> list[str]:
    out = []
    if not args.speed > 0:
        out.append("--speed must be > 0")
    if not 0 < args.hours <= 48:
        out.append("--hours must be within (0, 48]")
    if not args.cap_kw > 0:
        out.append("--cap-kw must be > 0")
    for name in ("site", "sessions"):
        if not getattr(args, name).is_file():
            out.append(f"--{name} {getattr(args, name)}: no such file")
    try:
        time.fromisoformat(args.start)
    except ValueError:
        out.append(f"--from {args.start!r}: give a local time HH:MM")
    return out


async def _serve(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the HTTP server stopped during start-up")
        await asyncio.sleep(0.05)
    return server, task


async def _setup(rt: Runtime, site: Any, args: argparse.Namespace) -> None:
    await rt.sites.upsert(
        SITE_ID,
        {
            "name": "Demo site (ACN-Data day at Caltech)",
            "timezone": str(CALTECH_TZ),
            "capacity_kw": args.cap_kw,
            "method": args.method,
            "step_minutes": 5,
            "default_dwell_hours": 8,
            "default_energy_kwh": 15,
        },
    )
    for c in site.chargers:
        conn = c.config.spec.connectors[0]
        await rt.stations.register_charge_point(
            c.config.charger_id,
            site_id=SITE_ID,
            max_power_w=conn.max_power_w,
            phases=conn.phases,
            voltage_v=c.config.spec.voltage_v,
        )


def _line(runs: Sequence[ChargerRun], clock: ScaledClock, cap_kw: float) -> str:
    now = clock.now()
    p = progress(runs, now)
    drawing = sum(
        r.station.power_w(c, now)
        for r in runs
        for c in range(1, len(r.station.spec.connectors) + 1)
    )
    local = now.astimezone(CALTECH_TZ).strftime("%H:%M")
    return (
        f"\r{local} Caltech  chargers {p.connected}/{p.chargers}  charging {p.charging:2d}"
        f"  site {drawing / 1000:5.1f}/{cap_kw:g} kW  delivered {p.energy_kwh:7.1f} kWh   "
    )


async def _run(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    scenario = parse_acn_scenario(f"acn:{args.sessions}:{DAY.isoformat()}")
    assert scenario is not None
    slots = [ChargerSlot(c.config.charger_id, c.config.spec, c.stations) for c in site.chargers]
    arrivals, count = acn_scenario_arrivals(scenario, slots)
    share = site.iso15118_share or 0.0
    if share > 0:
        arrivals = with_iso15118(arrivals, share, 1)
    start = datetime.combine(DAY, time.fromisoformat(args.start), tzinfo=CALTECH_TZ)
    until = start + timedelta(hours=args.hours)
    args.db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{args.db}{suffix}").unlink(missing_ok=True)  # every demo starts afresh
    http_port, ocpp_port = _free(args.http_port), _free(args.ocpp_port)
    clock = ScaledClock(start, args.speed)
    settings = Settings(
        ocpp=OcppSettings(host="127.0.0.1", port=ocpp_port, accept_unknown_id_tokens=True),
        database=DatabaseSettings(url=f"sqlite:///{args.db}"),
        # plain HTTP on loopback: the browser would not send a Secure-only cookie back
        web=WebSettings(
            host="127.0.0.1", port=http_port, cookie_secure=False, initial_password_file=None
        ),
    )
    setup_logging(settings.log_level, settings.log_format)
    logging.getLogger("csms").setLevel(logging.WARNING)
    logging.getLogger("ocpp").setLevel(logging.CRITICAL)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("charge_point_sim").setLevel(logging.ERROR)
    logging.getLogger("web").setLevel(logging.ERROR)  # the first-run credential is printed below
    app = create_app(settings, clock)
    server, serving = await _serve(app, http_port)
    rt: Runtime = app.state.runtime
    await _setup(rt, site, args)
    base = f"http://127.0.0.1:{http_port}"
    admin = app.state.first_run_admin
    login = (
        f"  sign in as          {admin[0]} / {admin[1]}  (created for this run)\n"
        if admin is not None
        else ""
    )
    print(
        f"\nDemo: {len(site.chargers)} simulated chargers, {count} real sessions of "
        f"{DAY.isoformat()} at Caltech, cap {args.cap_kw:g} kW, {args.speed:g}x "
        f"({args.hours:g} h in {_real_time(args.hours * 3600 / args.speed)})\n"
        f"  console             {base}/console/\n"
        f"{login}"
        f"  API docs            {base}/docs (API calls: the console's sign-in or a token)\n"
        f"  current plan        {base}/api/sites/{SITE_ID}/plan\n"
        f"  KPIs                {base}/api/sites/{SITE_ID}/kpis\n"
        f"  audit (CSV)         {base}/api/audit/profiles?format=csv\n"
        f"  OCPP endpoint       ws://127.0.0.1:{ocpp_port}/ocpp/<charger id>\n"
        "Ctrl-C stops the replay.\n",
        flush=True,
    )
    runs = [ChargerRun(c, Station(c.spec, start)) for c in site.configs]
    tty = sys.stderr.isatty()

    def tick() -> None:
        if tty:
            sys.stderr.write(_line(runs, clock, args.cap_kw))
            sys.stderr.flush()

    url = f"ws://127.0.0.1:{ocpp_port}/ocpp"
    try:
        await run_site(runs, url, clock, arrivals, until, on_tick=tick, tick_s=1.0, seed=1)
    except asyncio.CancelledError:
        print("\ninterrupted", file=sys.stderr)
    finally:
        if tty:
            sys.stderr.write("\n")
        data = report(runs, start, clock.now(), args.speed, url)
        data["site_cap_kw"] = args.cap_kw
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(data, indent=2) + "\n")
        sys.stdout.write(sim_summary(data))
        kpis = await site_kpis(rt.sessions, SITE_ID, start, clock.now())
        if kpis is not None:
            print(
                "central system: "
                + json.dumps({k: kpis[k] for k in ("served_ratio", "metered_peak_kw", "profiles")}),
            )
        print(f"report: {args.report}  database: {args.db}")
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = _problems(args)
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 130
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
