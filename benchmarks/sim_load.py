"""Simulator benchmark: ``python -m benchmarks.sim_load``.

Two measurements of ``charge_point_sim`` (a benchmark, not a test: nothing is asserted):

``load``
    One simulator process drives N chargers (default 1000, OCPP 1.6 and 2.0.1 alternating), each
    with an EV charging from the start and sending meter values every ``--meter-interval`` s
    (default 10, real time), against a minimal central system in another process. Once every
    charger is connected and charging, the simulator's CPU (% of one core, from /proc/<pid>/stat)
    is measured over ``--window`` s; its peak RSS is its VmHWM at the end of the window.

``acn``
    The ACN-Data day (default 2019-06-14 at Caltech) replayed by ``python -m charge_point_sim run``
    on the 52 Caltech stations (one 6.6 kW single-phase charger per station, versions
    alternating) from 05:00 to midnight local time, at each ``--speeds`` value from the fastest
    down, until one is accurate: the metered energy of the report within ``--tolerance`` (1 %)
    of what the EV model takes over the same sessions when nothing delays it (each EV from its
    arrival to its departure or the end of the run, at the charger's maximum).

The central system (``serve``, run as a child process) is built on the ``ocpp`` package: it
answers every message of both versions Accepted (with JSON-schema validation) and stores
nothing. ``fleet`` is the simulator process of ``load``. Every child is stopped at the end and
every wait is bounded; only loopback traffic.
"""

# The ocpp package ships no types: its @on decorator is untyped.
# mypy: allow-untyped-decorators

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as r16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as r201
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from benchmarks.ocpp_load import (
    child_env,
    cpu_seconds,
    free_port,
    machine_description,
    memory_mb,
    raise_open_file_limit,
)
from benchmarks.ocpp_raw_server import HEARTBEAT_INTERVAL_S, serve_until_stopped
from charge_point_sim.acn import (
    CALTECH_TZ,
    acn_scenario_arrivals,
    parse_acn_scenario,
    read_sessions,
)
from charge_point_sim.charger_model import ChargerSpec
from charge_point_sim.clock import ScaledClock
from charge_point_sim.driver import Arrival, SessionRequest
from charge_point_sim.ev_model import Ev, step
from charge_point_sim.runner import ChargerConfig, ChargerRun, run_site
from charge_point_sim.scenario import ChargerSlot
from charge_point_sim.site import load_site
from charge_point_sim.station import Settings, Station

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
ACN_FILE = ROOT.parent / "shared" / "data" / "acn" / "caltech_2019-05_2019-08.csv.gz"
ACN_DAY = date(2019, 6, 14)
ACN_FIRST_HOUR = 5  # the day's first arrival is 05:50; the replay starts at 05:00 local
DEFAULT_SPEEDS = (7680.0, 3840.0, 1920.0, 960.0, 480.0, 240.0)
_COMMANDS = ("all", "load", "acn", "serve", "fleet", "-h", "--help")
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0

# --- the minimal central system (child process: ``serve``) -------------------------------------

_counts: Counter[str] = Counter()
_transaction_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Accept16(ChargePoint16):  # type: ignore[misc]
    """Answers every message a simulated 1.6 charger sends, Accepted."""

    @on("BootNotification")
    def boot(self, **_: Any) -> Any:
        _counts["BootNotification"] += 1
        return r16.BootNotification(
            current_time=_now(), interval=HEARTBEAT_INTERVAL_S, status="Accepted"
        )

    @on("Heartbeat")
    def heartbeat(self, **_: Any) -> Any:
        _counts["Heartbeat"] += 1
        return r16.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def status(self, **_: Any) -> Any:
        _counts["StatusNotification"] += 1
        return r16.StatusNotification()

    @on("Authorize")
    def authorize(self, **_: Any) -> Any:
        _counts["Authorize"] += 1
        return r16.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    def start_transaction(self, **_: Any) -> Any:
        _counts["StartTransaction"] += 1
        return r16.StartTransaction(
            transaction_id=next(_transaction_ids), id_tag_info={"status": "Accepted"}
        )

    @on("MeterValues")
    def meter_values(self, **_: Any) -> Any:
        _counts["MeterValues"] += 1
        return r16.MeterValues()

    @on("StopTransaction")
    def stop_transaction(self, **_: Any) -> Any:
        _counts["StopTransaction"] += 1
        return r16.StopTransaction()


class Accept201(ChargePoint201):  # type: ignore[misc]
    """Answers every message a simulated 2.0.1 station sends, Accepted."""

    @on("BootNotification")
    def boot(self, **_: Any) -> Any:
        _counts["BootNotification"] += 1
        return r201.BootNotification(
            current_time=_now(), interval=HEARTBEAT_INTERVAL_S, status="Accepted"
        )

    @on("Heartbeat")
    def heartbeat(self, **_: Any) -> Any:
        _counts["Heartbeat"] += 1
        return r201.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def status(self, **_: Any) -> Any:
        _counts["StatusNotification"] += 1
        return r201.StatusNotification()

    @on("Authorize")
    def authorize(self, **_: Any) -> Any:
        _counts["Authorize"] += 1
        return r201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def transaction_event(self, event_type: str, **_: Any) -> Any:
        _counts[f"TransactionEvent.{event_type}"] += 1
        return r201.TransactionEvent()

    @on("MeterValues")
    def meter_values(self, **_: Any) -> Any:
        _counts["MeterValues"] += 1
        return r201.MeterValues()

    @on("NotifyEVChargingNeeds")
    def needs(self, **_: Any) -> Any:
        _counts["NotifyEVChargingNeeds"] += 1
        return r201.NotifyEVChargingNeeds(status="Accepted")

    @on("ReportChargingProfiles")
    def report_profiles(self, **_: Any) -> Any:
        _counts["ReportChargingProfiles"] += 1
        return r201.ReportChargingProfiles()


async def _accept(ws: ServerConnection) -> None:
    """One ChargePoint for the connection, by subprotocol."""
    path = ws.request.path if ws.request is not None else "/"
    cp_id = path.rstrip("/").rsplit("/", 1)[-1]
    cp: Any = Accept16(cp_id, ws) if ws.subprotocol == "ocpp1.6" else Accept201(cp_id, ws)
    with contextlib.suppress(ConnectionClosed):
        await cp.start()


def serve(host: str, port: int) -> None:
    """Serve until SIGTERM, then print what was received (one JSON line)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_stopped(_accept, host, port))
    print(json.dumps({"received": dict(_counts)}), flush=True)


# --- the simulated fleet (child process: ``fleet``) --------------------------------------------


def _fleet_runs(
    n: int, version: str, meter_interval_s: int, start: datetime, end: datetime
) -> tuple[list[ChargerRun], dict[str, list[Arrival]]]:
    """N one-connector 22 kW chargers, each with an EV plugged in within the first meter
    interval (evenly spread, as real chargers are not in phase) that stays past ``end``."""
    spec = ChargerSpec.uniform(1, 22080.0)
    settings = Settings(meter_interval_s=meter_interval_s)
    runs: list[ChargerRun] = []
    arrivals: dict[str, list[Arrival]] = {}
    for i in range(n):
        v = version if version != "mixed" else ("1.6" if i % 2 == 0 else "2.0.1")
        cid = f"SIM{i + 1:04d}"
        runs.append(ChargerRun(ChargerConfig(cid, v, spec), Station(spec, start, settings)))
        at = start + timedelta(seconds=meter_interval_s * i / n)
        ev = Ev(capacity_kwh=77.0, soc=0.2, max_power_w=11000.0, departure=end)
        arrivals[cid] = [Arrival(at, SessionRequest(1, ev, f"TAG{i + 1:05d}", departure=end))]
    return runs, arrivals


def _sent(runs: Sequence[ChargerRun]) -> int:
    """Transaction messages the chargers made so far (meter values, starts, stops)."""
    total = 0
    for r in runs:
        box = getattr(r.driver.side, "outbox", None) if r.driver is not None else None
        total += 0 if box is None else int(box.total)
    return total


async def fleet(url: str, n: int, version: str, meter_interval_s: int, max_s: float) -> None:
    """Run the fleet at real time until SIGTERM (or ``max_s``); print JSON events:
    ``ready`` once every charger is connected and charging, ``done`` at the end."""
    clock = ScaledClock(datetime.now(UTC), 1.0)
    start = clock.now()
    end = start + timedelta(seconds=max_s)
    runs, arrivals = _fleet_runs(n, version, meter_interval_s, start, end)
    ready = False

    def tick() -> None:
        nonlocal ready
        charging = sum(len(r.station.state.transactions) for r in runs)
        if not ready and charging == n and all(r.connected for r in runs):
            ready = True
            print(json.dumps({"event": "ready", "sent": _sent(runs)}), flush=True)

    task = asyncio.ensure_future(
        run_site(runs, url, clock, arrivals, end, on_tick=tick, tick_s=0.2)
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    errors = Counter(r.error for r in runs if r.error)
    print(json.dumps({"event": "done", "sent": _sent(runs), "errors": dict(errors)}), flush=True)


# --- child processes ---------------------------------------------------------------------------


@dataclass
class Child:
    """A child process whose stdout lines we read."""

    proc: asyncio.subprocess.Process
    name: str

    async def line(self, timeout_s: float) -> str:
        """The next line of its output ('' at its end)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout_s):
            return (await self.proc.stdout.readline()).decode().strip()

    async def json_line(self, timeout_s: float) -> dict[str, Any]:
        """The next line that is a JSON object (other output is skipped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            text = await self.line(max(0.1, deadline - time.monotonic()))
            if not text:
                assert self.proc.stdout is not None
                if self.proc.stdout.at_eof():
                    async with asyncio.timeout(STOP_TIMEOUT_S):
                        code = await self.proc.wait()
                    raise RuntimeError(f"{self.name} ended (code {code}) without the line")
            if text.startswith("{"):
                parsed: dict[str, Any] = json.loads(text)
                return parsed

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end in time."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


async def _spawn(name: str, *args: str) -> Child:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.sim_load",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
        env=child_env(),
    )
    return Child(proc, name)


@contextlib.asynccontextmanager
async def central_system() -> AsyncIterator[tuple[Child, str]]:
    """The minimal central system on a free port: (its child, its URL)."""
    port = free_port()
    server = await _spawn("server", "serve", "--port", str(port))
    try:
        first = await server.line(STARTUP_TIMEOUT_S)
        if not first.startswith("listening"):
            raise RuntimeError(f"the server did not start: {first!r}")
        yield server, f"ws://{HOST}:{port}/ocpp"
    finally:
        await server.stop()


# --- load: N chargers, meter values every few seconds ------------------------------------------


@dataclass
class LoadResult:
    """What the load case measured."""

    chargers: int
    version: str
    meter_interval_s: int
    window_s: float
    ramp_s: float
    transaction_messages_per_s: float
    cpu_pct: float
    peak_rss_mb: float
    server_cpu_pct: float
    server_received: dict[str, int]
    errors: dict[str, int]


async def run_load(
    n: int, version: str, meter_interval_s: int, window_s: float, ramp_timeout_s: float = 300.0
) -> LoadResult:
    """Start the server and the fleet; measure the fleet over ``window_s`` once it is ready."""
    async with central_system() as (server, url):
        t0 = time.monotonic()
        sim = await _spawn(
            "simulator",
            "fleet",
            "--url",
            url,
            "--chargers",
            str(n),
            "--version",
            version,
            "--meter-interval",
            str(meter_interval_s),
            "--max-s",
            str(ramp_timeout_s + window_s + 60),
        )
        try:
            ready = await sim.json_line(ramp_timeout_s)
            ramp_s = time.monotonic() - t0
            cpu0, wall0 = cpu_seconds(sim.proc.pid), time.monotonic()
            server0 = cpu_seconds(server.proc.pid)
            await asyncio.sleep(window_s)
            cpu1, wall1 = cpu_seconds(sim.proc.pid), time.monotonic()
            server1 = cpu_seconds(server.proc.pid)
            _, peak = memory_mb(sim.proc.pid)
            sim.proc.send_signal(signal.SIGTERM)
            done = await sim.json_line(STOP_TIMEOUT_S)
        finally:
            await sim.stop()
        await server.stop()
        received = await server.json_line(STOP_TIMEOUT_S)
    wall = wall1 - wall0
    return LoadResult(
        chargers=n,
        version=version,
        meter_interval_s=meter_interval_s,
        window_s=round(wall, 1),
        ramp_s=round(ramp_s, 1),
        transaction_messages_per_s=round((done["sent"] - ready["sent"]) / wall, 1),
        cpu_pct=round(100 * (cpu1 - cpu0) / wall, 1),
        peak_rss_mb=round(peak, 1),
        server_cpu_pct=round(100 * (server1 - server0) / wall, 1),
        server_received=received["received"],
        errors=done["errors"],
    )


# --- acn: the fastest accurate replay speed ----------------------------------------------------


def acn_site_file(path: Path, data: Path) -> Path:
    """A site file of every station in the ACN file: one 6.6 kW single-phase charger each
    (Caltech's EVSEs are 208 V, 32 A), named by its station id, 1.6 and 2.0.1 alternating."""
    stations = sorted({s.station_id for s in read_sessions(data)})
    chargers = [
        {
            "id": sid,
            "version": "1.6" if i % 2 == 0 else "2.0.1",
            "max_power_kw": 6.6,
            "phases": 1,
            "voltage": 208,
        }
        for i, sid in enumerate(stations)
    ]
    path.write_text(json.dumps({"name": "caltech", "chargers": chargers}, indent=1))
    return path


def model_energy_kwh(
    arrivals: Mapping[str, Sequence[Arrival]], slots: Sequence[ChargerSlot], end: datetime
) -> dict[str, float]:
    """What each session's EV takes by the EV model alone, per vehicle tag: from its arrival to
    its departure (or ``end``), at its connector's maximum, with no delay of any kind."""
    specs = {s.charger_id: s.spec for s in slots}
    out: dict[str, float] = {}
    for charger_id, items in arrivals.items():
        for a in items:
            r = a.request
            stop = end if r.departure is None else min(r.departure, end)
            seconds = max(0.0, (stop - a.at).total_seconds())
            limit = specs[charger_id].connector(r.connector_id).max_power_w
            _, wh = step(r.ev, limit, seconds)
            out[r.id_tag] = wh / 1000.0
    return out


@dataclass
class AcnResult:
    """One replay speed."""

    speed: float
    wall_s: float
    cpu_pct: float
    server_cpu_pct: float
    sessions: int
    replayed: int
    metered_kwh: float
    model_kwh: float
    error_pct: float
    worst_session_kwh: float
    accurate: bool


def acn_command(url: str, site: Path, data: Path, speed: float, report: Path) -> list[str]:
    """The simulator's command line of one replay."""
    start = datetime(ACN_DAY.year, ACN_DAY.month, ACN_DAY.day, ACN_FIRST_HOUR, tzinfo=CALTECH_TZ)
    return [
        sys.executable,
        "-m",
        "charge_point_sim",
        "run",
        "--url",
        url,
        "--site",
        str(site),
        "--scenario",
        f"acn:{data}:{ACN_DAY.isoformat()}",
        "--start",
        start.isoformat(),
        "--duration",
        str(int((24 - ACN_FIRST_HOUR) * 3600)),
        "--speed",
        f"{speed:g}",
        "--quiet",
        "--report",
        str(report),
    ]


def acn_accuracy(
    report: Mapping[str, Any], model: Mapping[str, float], speed: float, tolerance: float
) -> AcnResult:
    """Compare a replay's report with the EV model (wall time and CPU filled in by the caller)."""
    metered = {s["id_tag"]: float(s["delivered_kwh"]) for s in report["sessions"]}
    total_model = sum(model.values())
    total_metered = sum(metered.values())
    error = abs(total_metered - total_model) / total_model if total_model > 0 else 0.0
    worst = max((abs(metered.get(tag, 0.0) - kwh) for tag, kwh in model.items()), default=0.0)
    return AcnResult(
        speed=speed,
        wall_s=0.0,
        cpu_pct=0.0,
        server_cpu_pct=0.0,
        sessions=len(model),
        replayed=len(metered),
        metered_kwh=round(total_metered, 3),
        model_kwh=round(total_model, 3),
        error_pct=round(100 * error, 3),
        worst_session_kwh=round(worst, 3),
        accurate=error <= tolerance and len(metered) == len(model),
    )


async def run_acn(
    speeds: Sequence[float],
    tolerance: float,
    data: Path,
    workdir: Path,
    log: Callable[[str], None] = print,
) -> list[AcnResult]:
    """Replay the day at each speed, fastest first, until one is accurate."""
    site = acn_site_file(workdir / "caltech_site.json", data)
    slots = [
        ChargerSlot(c.config.charger_id, c.config.spec, c.stations)
        for c in load_site(site).chargers
    ]
    scenario = parse_acn_scenario(f"acn:{data}:{ACN_DAY.isoformat()}")
    assert scenario is not None
    arrivals, _ = acn_scenario_arrivals(scenario, slots)
    end = datetime(ACN_DAY.year, ACN_DAY.month, ACN_DAY.day, tzinfo=CALTECH_TZ) + timedelta(days=1)
    model = model_energy_kwh(arrivals, slots, end)
    results: list[AcnResult] = []
    async with central_system() as (server, url):
        for speed in sorted(speeds, reverse=True):
            report = workdir / f"report_{speed:g}.json"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            server0 = cpu_seconds(server.proc.pid)
            t0 = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *acn_command(url, site, data, speed, report),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                cwd=ROOT,
                env=child_env(),
            )
            await proc.wait()
            wall = time.monotonic() - t0
            server_cpu = cpu_seconds(server.proc.pid) - server0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            if proc.returncode != 0:
                raise RuntimeError(f"the replay at speed {speed:g} exited {proc.returncode}")
            result = acn_accuracy(json.loads(report.read_text()), model, speed, tolerance)
            result.wall_s, result.cpu_pct = round(wall, 1), round(100 * cpu / wall, 1)
            result.server_cpu_pct = round(100 * server_cpu / wall, 1)
            results.append(result)
            log(
                f"speed {speed:g}: {result.replayed}/{result.sessions} sessions, metered "
                f"{result.metered_kwh} kWh vs model {result.model_kwh} kWh "
                f"({result.error_pct} %), {result.wall_s} s, CPU simulator {result.cpu_pct} % "
                f"server {result.server_cpu_pct} %"
            )
            if result.accurate:
                break
    return results


# --- output and command line -------------------------------------------------------------------


def format_results(load: LoadResult | None, acn: Sequence[AcnResult]) -> str:
    """The results as Markdown, with the machine."""
    lines = [f"Machine: {machine_description()}. Measured {datetime.now(UTC):%Y-%m-%d}.", ""]
    if load is not None:
        lines += [
            "| chargers | versions | meter interval s | ramp s | window s | transaction "
            "msgs/s | simulator CPU % | simulator peak RSS MB | server CPU % |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| {load.chargers} | {load.version} | {load.meter_interval_s} | {load.ramp_s} | "
            f"{load.window_s} | {load.transaction_messages_per_s} | {load.cpu_pct} | "
            f"{load.peak_rss_mb} | {load.server_cpu_pct} |",
            "",
        ]
        if load.errors:
            lines += [f"Charger errors: {load.errors}", ""]
    if acn:
        lines += [
            "| speed | wall s | simulator CPU % | server CPU % | sessions replayed | metered kWh "
            "| EV model kWh | error % | worst session kWh | within 1 % |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        lines += [
            f"| {r.speed:g} | {r.wall_s} | {r.cpu_pct} | {r.server_cpu_pct} | "
            f"{r.replayed}/{r.sessions} | "
            f"{r.metered_kwh} | {r.model_kwh} | {r.error_pct} | {r.worst_session_kwh} | "
            f"{'yes' if r.accurate else 'no'} |"
            for r in acn
        ]
    return "\n".join(lines) + "\n"


def _speeds(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a comma-separated list: {text!r}") from e
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"speeds must be > 0: {text!r}")
    return values


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.sim_load", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("all", "load", "acn"):
        run = sub.add_parser(name, help=f"measure: {name}")
        run.add_argument("--chargers", type=int, default=1000, help="load: chargers (1000)")
        run.add_argument(
            "--version", choices=("1.6", "2.0.1", "mixed"), default="mixed", help="load: versions"
        )
        run.add_argument(
            "--meter-interval", type=int, default=10, help="load: s between meter values (10)"
        )
        run.add_argument("--window", type=float, default=60.0, help="load: measured s (60)")
        run.add_argument(
            "--speeds",
            type=_speeds,
            default=list(DEFAULT_SPEEDS),
            help="acn: replay speeds to try, fastest first (7680,...,240)",
        )
        run.add_argument("--tolerance", type=float, default=0.01, help="acn: accuracy (0.01)")
        run.add_argument("--acn-file", type=Path, default=ACN_FILE, help="acn: the ACN gzip CSV")
        run.add_argument("--markdown", type=Path, help="also write the results here")
        run.add_argument("--json", type=Path, help="write every number as JSON here")
    srv = sub.add_parser("serve", help="(internal) the minimal central system")
    srv.add_argument("--host", default=HOST)
    srv.add_argument("--port", type=int, required=True)
    fl = sub.add_parser("fleet", help="(internal) the simulator process of the load case")
    fl.add_argument("--url", required=True)
    fl.add_argument("--chargers", type=int, required=True)
    fl.add_argument("--version", default="mixed")
    fl.add_argument("--meter-interval", type=int, required=True)
    fl.add_argument("--max-s", type=float, required=True)
    return p


async def measure(args: argparse.Namespace) -> tuple[LoadResult | None, list[AcnResult]]:
    """Run what ``args.command`` asks for."""
    load = None
    acn: list[AcnResult] = []
    if args.command in ("all", "load"):
        print(f"load: {args.chargers} chargers, meter values every {args.meter_interval} s ...")
        load = await run_load(args.chargers, args.version, args.meter_interval, args.window)
        print(
            f"load: ready after {load.ramp_s} s; over {load.window_s} s: "
            f"{load.transaction_messages_per_s} transaction msgs/s, simulator CPU "
            f"{load.cpu_pct} %, peak RSS {load.peak_rss_mb} MB (server CPU "
            f"{load.server_cpu_pct} %)",
            flush=True,
        )
    if args.command in ("all", "acn"):
        with tempfile.TemporaryDirectory(prefix="sim_load_") as tmp:
            acn = await run_acn(
                args.speeds,
                args.tolerance,
                args.acn_file,
                Path(tmp),
                lambda m: print(f"acn: {m}", flush=True),
            )
    return load, acn


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    given = list(sys.argv[1:] if argv is None else argv)
    if not given or given[0] not in _COMMANDS:
        given = ["all", *given]  # no command: measure everything
    args = _parser().parse_args(given)
    if args.command == "serve":
        serve(args.host, args.port)
        return 0
    if args.command == "fleet":
        asyncio.run(fleet(args.url, args.chargers, args.version, args.meter_interval, args.max_s))
        return 0
    raise_open_file_limit()
    print(f"machine: {machine_description()}", flush=True)
    with contextlib.suppress(OSError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        print("\n".join(lscpu.splitlines()[:10]), flush=True)
    try:
        load, acn = asyncio.run(measure(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    text = format_results(load, acn)
    print("\n" + text)
    if args.markdown is not None:
        args.markdown.write_text(text)
    if args.json is not None:
        data = {"load": None if load is None else asdict(load), "acn": [asdict(r) for r in acn]}
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
