"""OCPP load benchmark (issue 3): ``python -m benchmarks.ocpp_load``.

Starts each server in turn as a subprocess on 127.0.0.1 — ``csms`` (our central system, with a
fresh SQLite file, or PostgreSQL with ``--database-url``), ``bare`` (a server on the ``ocpp``
package that stores nothing, benchmarks.ocpp_bare_server) and ``raw`` (a websockets server that
answers every call at once, benchmarks.ocpp_raw_server) — and, for each N, runs the load client
(benchmarks.ocpp_load_client, in its own process(es)): N OCPP 1.6 connections boot, then each sends
MeterValues every ``--period`` seconds (or ``--rate`` calls/s in total) for ``--duration`` seconds.

Prints, per server and N: connections held, calls answered per second, p50/p99 round trip, the
server's CPU (over the measurement window) and peak RSS, read from /proc/<pid>. A benchmark, not a
test: nothing is asserted. Every server and client is stopped at the end of its case; every wait is
bounded; only loopback traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from benchmarks.ocpp_load_client import (
    CALL,
    CALLERROR,
    CALLRESULT,
    Charger,
    ClientConfig,
    ClientResult,
    _close,
    _open,
    _Timestamp,
)
from charge_point_sim.link import Backoff

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
SERVERS = ("csms", "bare", "raw")
DEFAULT_N = (100, 1000, 2000)
CLK_TCK = os.sysconf("SC_CLK_TCK")
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
SAMPLE_EVERY_S = 0.5
CLIENT_EXIT_SLACK_S = 30.0
CLIENT_BUSY_PCT = 90.0  # a client process this busy may be the bottleneck

Log = Callable[[str], None]


# --- /proc -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime (14), stime (15)


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc/<pid>/status (0 if absent)."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0]) / 1024.0  # kB
    return values["VmRSS"], values["VmHWM"]


def raise_open_file_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (children inherit it); (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard or hard == resource.RLIM_INFINITY:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    """A free TCP port on loopback (free now; the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --- options and results -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadOptions:
    """How every case is run."""

    period_s: float = 2.0
    duration_s: float = 30.0
    database_url: str | None = None  # None: a fresh SQLite file per case
    client_procs: int = 1
    call_timeout_s: float = 10.0
    ramp_timeout_s: float = 180.0
    connect_concurrency: int = 50
    compression: bool = True
    seed: int = 1
    csms_log_level: str = "INFO"
    progress_every_s: float = 5.0
    log_dir: Path | None = None  # keep each case's server and client output here


@dataclass(frozen=True)
class Case:
    """One measurement: a server under N connections (at a total rate, or each every period)."""

    server: str
    n: int
    rate: float | None = None  # total MeterValues/s offered; None: every period_s per connection

    def period_s(self, opts: LoadOptions) -> float:
        """Seconds between two MeterValues of one connection."""
        return self.n / self.rate if self.rate else opts.period_s

    def label(self) -> str:
        """For progress lines."""
        rate = f" rate={self.rate:g}/s" if self.rate else ""
        return f"{self.server} N={self.n}{rate}"


@dataclass
class CaseResult:
    """What one case measured (None: could not be measured)."""

    server: str
    n: int
    period_s: float
    offered_per_s: float
    held: int = 0
    connect_failures: int = 0
    ramp_s: float = 0.0
    sent: int = 0
    answered: int = 0
    answered_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    boot_p50_ms: float | None = None
    call_errors: int = 0
    timeouts: int = 0
    skipped: int = 0
    server_cpu_pct: float | None = None
    server_peak_rss_mb: float | None = None
    server_rss_end_mb: float | None = None
    client_cpu_pct: float | None = None
    notes: list[str] = field(default_factory=list)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of sorted values; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(len * q / 100)
    return float(sorted_values[min(len(sorted_values), int(rank)) - 1])


# --- servers -----------------------------------------------------------------------------------


@dataclass
class RunningServer:
    """A server subprocess."""

    kind: str
    proc: asyncio.subprocess.Process
    port: int
    log_file: Path
    database_url: str = ""  # what the server was given (a fresh database per case)

    @property
    def pid(self) -> int:
        """Process id (the Python process itself: no shell in between)."""
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's output, for error messages."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def child_env() -> dict[str, str]:
    """The environment for children: this checkout importable, no proxy for loopback."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def server_command(kind: str, port: int, database_url: str, opts: LoadOptions) -> list[str]:
    """argv of a server."""
    if kind == "csms":
        return [
            sys.executable,
            "-m",
            "csms",
            "--host",
            HOST,
            "--ocpp-port",
            str(port),
            "--http-port",
            str(free_port()),
            "--database-url",
            database_url,
            "--allow-unknown-chargers",
            "--accept-unknown-id-tokens",
            "--log-level",
            opts.csms_log_level,
        ]
    module = {"bare": "benchmarks.ocpp_bare_server", "raw": "benchmarks.ocpp_raw_server"}[kind]
    return [sys.executable, "-m", module, "--host", HOST, "--port", str(port)]


@contextlib.asynccontextmanager
async def fresh_database(url: str | None, workdir: Path) -> AsyncIterator[str]:
    """The database URL for one case: a new SQLite file, or a new PostgreSQL database (dropped
    afterwards) on the server of a postgresql:// URL; any other URL is used as it is."""
    if url is None:
        yield f"sqlite:///{workdir / 'csms.db'}"
        return
    if not url.startswith("postgresql"):
        yield url
        return
    import asyncpg  # type: ignore[import-untyped]

    admin_url = "postgresql://" + url.split("://", 1)[1]  # plain URL for asyncpg
    name = f"csms_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{url.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(admin_url, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _wait_listening(server: RunningServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.returncode is not None:
            raise RuntimeError(
                f"{server.kind} exited with code {server.proc.returncode}:\n{server.log_tail()}"
            )
        try:
            async with asyncio.timeout(1.0):
                _, writer = await asyncio.open_connection(HOST, server.port)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise RuntimeError(f"{server.kind} not listening after {timeout_s:.0f} s:\n{server.log_tail()}")


async def _stop(proc: asyncio.subprocess.Process, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL if it does not exit in time."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def running_server(
    kind: str, workdir: Path, opts: LoadOptions
) -> AsyncIterator[RunningServer]:
    """Start a server, wait until it listens, stop it afterwards."""
    async with fresh_database(opts.database_url, workdir) as db_url:
        port = free_port()
        log_file = workdir / f"{kind}.log"
        with log_file.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *server_command(kind, port, db_url, opts),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=workdir,
                env=child_env(),
            )
        server = RunningServer(kind, proc, port, log_file, db_url)
        try:
            await _wait_listening(server, STARTUP_TIMEOUT_S)
            yield server
        finally:
            await _stop(proc)


# --- clients -----------------------------------------------------------------------------------


@dataclass
class ClientProcess:
    """One load-client subprocess and what it last reported."""

    proc: asyncio.subprocess.Process
    out_file: Path
    connected: int = 0
    booted: int = 0
    ready: bool = False
    answered: int = 0
    done: bool = False


async def _spawn_client(
    server: RunningServer,
    first_index: int,
    n: int,
    period_s: float,
    opts: LoadOptions,
    workdir: Path,
    number: int,
) -> ClientProcess:
    out_file = workdir / f"client{number}.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.ocpp_load_client",
        "--url",
        f"ws://{HOST}:{server.port}/ocpp",
        "--n",
        str(n),
        "--first-index",
        str(first_index),
        "--period",
        repr(period_s),
        "--duration",
        repr(opts.duration_s),
        "--ramp-timeout",
        repr(opts.ramp_timeout_s),
        "--call-timeout",
        repr(opts.call_timeout_s),
        "--connect-concurrency",
        str(opts.connect_concurrency),
        "--seed",
        str(opts.seed),
        "--wait-go",
        "--out",
        str(out_file),
    ]
    if not opts.compression:
        cmd.append("--no-compression")
    with (workdir / f"client{number}.err").open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            env=child_env(),
        )
    return ClientProcess(proc, out_file)


async def _read_events(client: ClientProcess) -> None:
    assert client.proc.stdout is not None
    async for line in client.proc.stdout:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("event")
        if kind in ("ramp", "ready"):
            client.connected = int(event.get("connected", 0))
            client.booted = int(event.get("booted", 0))
            client.ready = client.ready or kind == "ready"
        elif kind == "progress":
            client.answered = int(event.get("answered", 0))
        elif kind == "done":
            client.done = True


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """(first index, count) of each part of n connections."""
    parts = max(1, min(parts, n))
    out, first = [], 0
    for i in range(parts):
        count = n // parts + (1 if i < n % parts else 0)
        out.append((first, count))
        first += count
    return out


def _cpu_or_none(pids: Sequence[int]) -> float | None:
    try:
        return sum(cpu_seconds(p) for p in pids)
    except (OSError, ValueError, IndexError):
        return None


# --- one case ----------------------------------------------------------------------------------


async def run_case(case: Case, opts: LoadOptions, log: Log = print) -> CaseResult:
    """Start the server, ramp up N connections, measure for the duration, stop everything."""
    period_s = case.period_s(opts)
    result = CaseResult(case.server, case.n, period_s, case.n / period_s)
    with tempfile.TemporaryDirectory(prefix=f"ocpp_load_{case.server}_") as tmp:
        workdir = Path(tmp)
        log(f"[{case.label()}] starting server")
        async with running_server(case.server, workdir, opts) as server:
            clients = [
                await _spawn_client(server, first, count, period_s, opts, workdir, i)
                for i, (first, count) in enumerate(_split(case.n, opts.client_procs))
            ]
            readers = [asyncio.create_task(_read_events(c)) for c in clients]
            try:
                await _measure(case, opts, server, clients, result, log)
            finally:
                for c in clients:
                    await _stop(c.proc, 5.0)
                await asyncio.gather(*readers, return_exceptions=True)
            if server.proc.returncode is not None:
                result.notes.append(f"server exited with code {server.proc.returncode}")
        _merge_client_results(clients, result, opts, workdir)
        if opts.log_dir is not None:
            _keep_logs(workdir, opts.log_dir / case.label().replace(" ", "_").replace("/", ""))
    return result


def _keep_logs(workdir: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in workdir.iterdir():
        if path.suffix in (".log", ".err"):
            shutil.copy2(path, target / path.name)


async def _measure(
    case: Case,
    opts: LoadOptions,
    server: RunningServer,
    clients: list[ClientProcess],
    result: CaseResult,
    log: Log,
) -> None:
    label = case.label()
    # Ramp-up: every client connects and boots its share, then reports ready.
    ramp_deadline = time.monotonic() + opts.ramp_timeout_s + 15.0
    next_print = time.monotonic() + 1.0
    while time.monotonic() < ramp_deadline:
        if all(c.ready or c.proc.returncode is not None for c in clients):
            break
        if time.monotonic() >= next_print:
            booted = sum(c.booted for c in clients)
            log(f"[{label}] ramp-up: {booted}/{case.n} connected and booted")
            next_print += opts.progress_every_s
        await asyncio.sleep(0.2)
    booted = sum(c.booted for c in clients)
    log(f"[{label}] ramp-up done: {booted}/{case.n} booted; measuring {opts.duration_s:g} s")

    # Measurement window: CPU from its start to its end; RSS sampled all along.
    cpu0 = _cpu_or_none([server.pid])
    start = time.monotonic()
    for c in clients:
        if c.proc.stdin is not None and c.proc.returncode is None:
            with contextlib.suppress(ConnectionError):
                c.proc.stdin.write(b"go\n")
                await c.proc.stdin.drain()
    peak_rss = 0.0
    next_print = start + opts.progress_every_s
    while (elapsed := time.monotonic() - start) < opts.duration_s:
        await asyncio.sleep(min(SAMPLE_EVERY_S, opts.duration_s - elapsed))
        with contextlib.suppress(OSError, ValueError, IndexError):
            peak_rss = max(peak_rss, memory_mb(server.pid)[0])
        left = opts.duration_s - (time.monotonic() - start)
        if time.monotonic() >= next_print and left >= 1.0:
            answered = sum(c.answered for c in clients)
            log(f"[{label}] {left:.0f} s left, {answered} calls answered so far")
            next_print += opts.progress_every_s
    window = time.monotonic() - start
    cpu1 = _cpu_or_none([server.pid])
    if cpu0 is not None and cpu1 is not None:
        result.server_cpu_pct = 100.0 * (cpu1 - cpu0) / window
    try:
        rss, hwm = memory_mb(server.pid)
        result.server_rss_end_mb = rss
        result.server_peak_rss_mb = max(hwm, peak_rss)
    except (OSError, ValueError, IndexError):
        result.server_peak_rss_mb = peak_rss or None

    # Calls in flight get call_timeout_s to come back; then the clients close and report.
    log(f"[{label}] window over; waiting for the clients to finish")
    client_deadline = opts.call_timeout_s + CLIENT_EXIT_SLACK_S
    try:
        async with asyncio.timeout(client_deadline):
            await asyncio.gather(*(c.proc.wait() for c in clients))
    except TimeoutError:
        result.notes.append(f"a client did not finish within {client_deadline:.0f} s: killed")


def _merge_client_results(
    clients: list[ClientProcess], result: CaseResult, opts: LoadOptions, workdir: Path
) -> None:
    latencies: list[float] = []
    boots: list[float] = []
    client_cpu_s: list[float] = []
    for i, c in enumerate(clients):
        try:
            data: dict[str, Any] = json.loads(c.out_file.read_text())
        except (OSError, ValueError):
            err = (workdir / f"client{i}.err").read_text(errors="replace").strip()
            result.notes.append(f"client {i} gave no result: {err[-300:] or 'no output'}")
            continue
        result.held += int(data["held_at_end"])
        result.connect_failures += int(data["connect_failures"])
        result.ramp_s = max(result.ramp_s, float(data["ramp_s"]))
        result.sent += int(data["sent"])
        result.answered += int(data["answered_in_window"])
        result.call_errors += int(data["call_errors"])
        result.timeouts += int(data["timeouts"])
        result.skipped += int(data["skipped_ticks"])
        client_cpu_s.append(float(data["cpu_window_s"]))
        latencies.extend(data["latencies_ms"])
        boots.extend(data["boot_latencies_ms"])
        if data.get("first_connect_error"):
            result.notes.append(f"connect: {data['first_connect_error']}")
    latencies.sort()
    boots.sort()
    result.answered_per_s = result.answered / opts.duration_s
    result.p50_ms = percentile(latencies, 50)
    result.p99_ms = percentile(latencies, 99)
    result.max_ms = latencies[-1] if latencies else None
    result.boot_p50_ms = percentile(boots, 50)
    if client_cpu_s:
        result.client_cpu_pct = 100.0 * sum(client_cpu_s) / opts.duration_s
        if 100.0 * max(client_cpu_s) / opts.duration_s > CLIENT_BUSY_PCT:
            result.notes.append("a load client was near 100% CPU: try --client-procs 2")


# --- reporting ---------------------------------------------------------------------------------

COLUMNS = (
    ("server", "server"),
    ("N", "n"),
    ("offered/s", "offered_per_s"),
    ("held", "held"),
    ("ramp s", "ramp_s"),
    ("answered/s", "answered_per_s"),
    ("p50 ms", "p50_ms"),
    ("p99 ms", "p99_ms"),
    ("max ms", "max_ms"),
    ("err/timeout/skip", "failures"),
    ("server CPU %", "server_cpu_pct"),
    ("peak RSS MB", "server_peak_rss_mb"),
    ("client CPU %", "client_cpu_pct"),
)


def _cell(r: CaseResult, key: str) -> str:
    if key == "failures":
        return f"{r.call_errors}/{r.timeouts}/{r.skipped}"
    value = getattr(r, key)
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return str(value)


def format_table(results: Sequence[CaseResult]) -> str:
    """A plain-text table."""
    rows = [[h for h, _ in COLUMNS]] + [[_cell(r, k) for _, k in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.server} N={r.n}: {note}" for r in results for note in r.notes]
    return "\n".join(lines + (["notes:", *notes] if notes else []))


def machine_description() -> str:
    """CPU model, cores, memory, Python and package versions."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    versions = []
    for pkg in ("websockets", "ocpp"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{pkg} {metadata.version(pkg)}")
    return (
        f"{model}, {os.cpu_count()} cores{mem}, {platform.system()}; "
        f"Python {platform.python_version()}, {', '.join(versions)}"
    )


def format_markdown(results: Sequence[CaseResult], opts: LoadOptions, rates: bool) -> str:
    """The table in Markdown, with the machine and parameters."""
    load = (
        "a fixed total rate per row (offered/s)"
        if rates
        else f"one MeterValues per connection every {opts.period_s:g} s"
    )
    db = "a fresh SQLite file per case"
    if opts.database_url and opts.database_url.startswith("postgresql"):
        db = f"a fresh PostgreSQL database per case (server of {opts.database_url})"
    elif opts.database_url:
        db = opts.database_url
    head = [
        f"Machine: {machine_description()}. Measured {datetime.now(UTC):%Y-%m-%d}.",
        "",
        f"Load: OCPP 1.6, each connection boots then sends {load}, jittered start; "
        f"window {opts.duration_s:g} s; permessage-deflate {'on' if opts.compression else 'off'}; "
        f"{opts.client_procs} client process(es) on the same machine; csms on {db}. "
        "*answered/s*: MeterValues answered within the window; latency: round trip of every "
        "MeterValues sent in the window; *err/timeout/skip*: CALLERRORs / calls unanswered after "
        f"{opts.call_timeout_s:g} s / ticks skipped because the previous call was still in "
        "flight; *server CPU %*: over the window (100 = one core); *peak RSS*: VmHWM.",
        "",
        "| " + " | ".join(h for h, _ in COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    rows = ["| " + " | ".join(_cell(r, k) for _, k in COLUMNS) + " |" for r in results]
    notes = [f"- {r.server} N={r.n}: {note}" for r in results for note in r.notes]
    return "\n".join(head + rows + (["", *notes] if notes else [])) + "\n"


# --- soak --------------------------------------------------------------------------------------
#
# ``python -m benchmarks.ocpp_load soak``: N chargers against csms for a long time (default 1000
# for 30 min, MeterValues every 10 s), reporting every interval the server's RSS and CPU, the
# round trip of CALL -> CALLRESULT (p50/p99) and messages/s, to show whether memory or latency
# drift. The load runs in this process (at 100 calls/s it costs a few % of a core): it needs the
# time of every answer to put it in its interval, which the separate load client does not report.


@dataclass(frozen=True)
class SoakOptions:
    """One soak run."""

    n: int = 1000
    period_s: float = 10.0
    duration_s: float = 1800.0
    interval_s: float = 60.0
    database_url: str | None = None  # None: a fresh SQLite file; postgresql://: a fresh database
    call_timeout_s: float = 10.0
    ramp_timeout_s: float = 300.0
    connect_concurrency: int = 50
    compression: bool = True
    seed: int = 1
    csms_log_level: str = "INFO"
    log_dir: Path | None = None


@dataclass
class SoakInterval:
    """What one reporting interval measured (latencies of calls answered within it)."""

    end_s: float  # since the window began
    connected: int
    answered: int
    per_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: int
    timeouts: int
    closed: int
    rss_mb: float | None
    cpu_pct: float | None  # the server's, 100 = one core
    machine_cpu_pct: float | None  # every process on the machine, 100 = one core
    db_mb: float | None


@dataclass
class SoakResult:
    """A whole soak: every interval, and the drift from the first to the last."""

    n: int
    period_s: float
    duration_s: float
    interval_s: float
    database: str
    ramp_s: float = 0.0
    booted: int = 0
    intervals: list[SoakInterval] = field(default_factory=list)
    answered: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    errors: int = 0
    timeouts: int = 0
    closed: int = 0
    reconnects: int = 0
    rss_first_mb: float | None = None
    rss_last_mb: float | None = None
    rss_growth_mb_per_h: float | None = None
    peak_rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _SoakStats:
    """Counters of the interval in progress (swapped out at each interval's end)."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    timeouts: int = 0
    closed: int = 0


def machine_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK


async def database_mb(url: str) -> float | None:
    """Size of the database on disk in MB (SQLite: the file and its WAL), None if unknown."""
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        sizes = [p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()]
        return sum(sizes) / 1e6 if sizes else None
    if not url.startswith("postgresql"):
        return None
    import asyncpg

    try:
        conn = await asyncpg.connect("postgresql://" + url.split("://", 1)[1], timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return float(await conn.fetchval("SELECT pg_database_size(current_database())")) / 1e6
    finally:
        await conn.close()


class _SoakFleet:
    """N chargers of the load client in this process; each reconnects (and boots again) if its
    connection closes, so that a drop shows in the counts instead of ending the soak."""

    def __init__(self, url: str, opts: SoakOptions) -> None:
        self.cfg = ClientConfig(
            url=url,
            n=opts.n,
            period_s=opts.period_s,
            duration_s=opts.duration_s,
            ramp_timeout_s=opts.ramp_timeout_s,
            call_timeout_s=opts.call_timeout_s,
            connect_concurrency=opts.connect_concurrency,
            compression=opts.compression,
            seed=opts.seed,
        )
        self.counts = ClientResult(n=opts.n)
        self.gate = asyncio.Semaphore(max(1, opts.connect_concurrency))
        self.chargers: dict[int, Charger] = {}
        self.stats = _SoakStats()
        self.reconnects = 0

    def connected(self) -> int:
        """Connections open now."""
        return sum(1 for c in self.chargers.values() if not c.closed)

    async def ramp(self, timeout_s: float) -> None:
        """Connect and boot every charger (bounded concurrency and time)."""
        tasks = [
            asyncio.create_task(_open(self.cfg, i, self.counts, self.gate))
            for i in range(self.cfg.n)
        ]
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for i, task in enumerate(tasks):
            if task in done and task.exception() is None and (c := task.result()) is not None:
                self.chargers[i] = c

    async def drive(self, index: int, start: float, end: float) -> None:
        """MeterValues every period from ``start`` (monotonic) until ``end``."""
        stamp = _Timestamp()
        tick = 0
        while (due := start + tick * self.cfg.period_s) < end:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            charger = self.chargers.get(index)
            if charger is None or charger.closed:
                if charger is not None:
                    await _close(charger)
                self.reconnects += 1
                reopened = await _open(self.cfg, index, self.counts, self.gate)
                if reopened is None:
                    self.chargers.pop(index, None)
                    tick += 1
                    continue
                self.chargers[index] = charger = reopened
            stats = self.stats  # the interval the call began in counts its errors
            try:
                answer = await charger.call(
                    "MeterValues", charger.meter_values(stamp.now()), self.cfg.call_timeout_s
                )
            except ConnectionError:
                self.stats.closed += 1
                continue
            if answer is None:
                stats.timeouts += 1
            elif answer[0] == CALLRESULT:
                self.stats.latencies_ms.append(answer[1])  # counted when answered
            else:
                stats.errors += 1
            tick = max(tick + 1, int((time.monotonic() - start) / self.cfg.period_s) + 1)

    async def close(self) -> None:
        """Close every connection."""
        await asyncio.gather(*(_close(c) for c in self.chargers.values()))


async def run_soak(
    opts: SoakOptions, log: Log = print, on_interval: Log | None = None
) -> SoakResult:
    """Start csms, connect N chargers, load them for the duration, report every interval.

    ``on_interval`` gets the progress line of every interval (e.g. to rewrite a results file).
    """
    db_label = "SQLite" if opts.database_url is None else opts.database_url.split("://")[0]
    result = SoakResult(opts.n, opts.period_s, opts.duration_s, opts.interval_s, db_label)
    load_opts = LoadOptions(
        database_url=opts.database_url, csms_log_level=opts.csms_log_level, seed=opts.seed
    )
    with tempfile.TemporaryDirectory(prefix="ocpp_soak_") as tmp:
        workdir = Path(tmp)
        log(f"[soak] starting csms on {db_label}")
        async with running_server("csms", workdir, load_opts) as server:
            fleet = _SoakFleet(f"ws://{HOST}:{server.port}/ocpp", opts)
            t0 = time.monotonic()
            await fleet.ramp(opts.ramp_timeout_s)
            result.ramp_s = time.monotonic() - t0
            result.booted = len(fleet.chargers)
            log(f"[soak] {result.booted}/{opts.n} booted in {result.ramp_s:.1f} s")
            try:
                await _soak_window(opts, server, fleet, result, log, on_interval)
            finally:
                await fleet.close()
            if server.proc.returncode is not None:
                result.notes.append(f"server exited with code {server.proc.returncode}")
        if opts.log_dir is not None:
            _keep_logs(workdir, opts.log_dir)
    return result


async def _soak_window(
    opts: SoakOptions,
    server: RunningServer,
    fleet: _SoakFleet,
    result: SoakResult,
    log: Log,
    on_interval: Log | None,
) -> None:
    rng = random.Random(opts.seed)
    start = time.monotonic()
    end = start + opts.duration_s
    drivers = [
        asyncio.create_task(fleet.drive(i, start + rng.uniform(0.0, opts.period_s), end))
        for i in range(opts.n)
    ]
    every: list[float] = []
    cpu_prev, busy_prev, t_prev = _cpu_or_none([server.pid]), machine_busy_seconds(), start
    k = 0
    try:
        while (t_next := start + (k + 1) * opts.interval_s) <= end + 1e-6:
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))
            k += 1
            stats, fleet.stats = fleet.stats, _SoakStats()
            now = time.monotonic()
            cpu, busy = _cpu_or_none([server.pid]), machine_busy_seconds()
            rss: float | None = None
            with contextlib.suppress(OSError, ValueError, IndexError):
                rss, hwm = memory_mb(server.pid)
                result.peak_rss_mb = max(result.peak_rss_mb or 0.0, hwm)
            span = now - t_prev
            lat = sorted(stats.latencies_ms)
            every.extend(lat)
            row = SoakInterval(
                end_s=now - start,
                connected=fleet.connected(),
                answered=len(lat),
                per_s=len(lat) / span,
                p50_ms=percentile(lat, 50),
                p99_ms=percentile(lat, 99),
                max_ms=lat[-1] if lat else None,
                errors=stats.errors,
                timeouts=stats.timeouts,
                closed=stats.closed,
                rss_mb=rss,
                cpu_pct=None if cpu is None or cpu_prev is None else 100 * (cpu - cpu_prev) / span,
                machine_cpu_pct=100.0 * (busy - busy_prev) / span,
                db_mb=await database_mb(server.database_url),
            )
            cpu_prev, busy_prev, t_prev = cpu, busy, now
            result.intervals.append(row)
            line = format_soak_interval(row)
            log(line)
            if on_interval is not None:
                on_interval(line)
            if server.proc.returncode is not None:
                result.notes.append(f"server exited with code {server.proc.returncode}")
                break
    finally:
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
    _summarise_soak(result, sorted(every), fleet)


def _summarise_soak(result: SoakResult, latencies: list[float], fleet: _SoakFleet) -> None:
    rows = result.intervals
    result.answered = len(latencies)
    result.p50_ms = percentile(latencies, 50)
    result.p99_ms = percentile(latencies, 99)
    result.max_ms = latencies[-1] if latencies else None
    result.errors = sum(r.errors for r in rows)
    result.timeouts = sum(r.timeouts for r in rows)
    result.closed = sum(r.closed for r in rows)
    result.reconnects = fleet.reconnects
    with_rss = [r for r in rows if r.rss_mb is not None]
    if with_rss:
        first, last = with_rss[0], with_rss[-1]
        assert first.rss_mb is not None
        assert last.rss_mb is not None
        result.rss_first_mb, result.rss_last_mb = first.rss_mb, last.rss_mb
        hours = (last.end_s - first.end_s) / 3600.0
        if hours > 0:
            result.rss_growth_mb_per_h = (last.rss_mb - first.rss_mb) / hours


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def format_soak_interval(r: SoakInterval) -> str:
    """One progress line."""
    return (
        f"[soak] {r.end_s / 60:6.1f} min  connected {r.connected}  {r.per_s:.1f} msg/s  "
        f"p50 {_num(r.p50_ms)} ms  p99 {_num(r.p99_ms)} ms  max {_num(r.max_ms)} ms  "
        f"err/timeout/closed {r.errors}/{r.timeouts}/{r.closed}  RSS {_num(r.rss_mb)} MB  "
        f"csms CPU {_num(r.cpu_pct)} %  machine CPU {_num(r.machine_cpu_pct)} %  "
        f"db {_num(r.db_mb)} MB"
    )


def format_soak_summary(r: SoakResult) -> str:
    """The end of a soak in a few lines."""
    p99s = [x.p99_ms for x in r.intervals if x.p99_ms is not None]
    return "\n".join(
        [
            f"soak: {r.n} chargers, MeterValues every {r.period_s:g} s, {r.duration_s:g} s, "
            f"{r.database}; {r.booted} booted in {r.ramp_s:.1f} s",
            f"answered {r.answered}; p50 {_num(r.p50_ms)} ms, p99 {_num(r.p99_ms)} ms, "
            f"max {_num(r.max_ms)} ms; errors {r.errors}, timeouts {r.timeouts}, "
            f"closed {r.closed}, reconnects {r.reconnects}",
            f"RSS first interval {_num(r.rss_first_mb)} MB, last {_num(r.rss_last_mb)} MB, "
            f"growth {_num(r.rss_growth_mb_per_h)} MB/h; peak {_num(r.peak_rss_mb)} MB",
            "p99 per interval (ms): " + ", ".join(f"{v:.0f}" for v in p99s),
            *(f"note: {n}" for n in r.notes),
        ]
    )


def format_soak_markdown(r: SoakResult) -> str:
    """Every interval as a Markdown table, then the summary."""
    head = [
        f"Machine: {machine_description()}. Measured {datetime.now(UTC):%Y-%m-%d}.",
        "",
        "| min | connected | msg/s | p50 ms | p99 ms | max ms | err/timeout/closed | RSS MB "
        "| csms CPU % | machine CPU % | db MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [
        f"| {x.end_s / 60:.1f} | {x.connected} | {x.per_s:.1f} | {_num(x.p50_ms)} "
        f"| {_num(x.p99_ms)} | {_num(x.max_ms, 0)} | {x.errors}/{x.timeouts}/{x.closed} "
        f"| {_num(x.rss_mb)} | {_num(x.cpu_pct)} | {_num(x.machine_cpu_pct)} | {_num(x.db_mb)} |"
        for x in r.intervals
    ]
    return "\n".join([*head, *rows, "", "```", format_soak_summary(r), "```"]) + "\n"


def _soak_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ocpp_load soak",
        description="Soak: N chargers against csms for a long time; RSS, latency and messages/s "
        "per interval.",
    )
    p.add_argument("--n", type=int, default=1000, help="chargers (1000)")
    p.add_argument("--period", type=float, default=10.0, help="s between MeterValues (10)")
    p.add_argument("--duration", type=float, default=1800.0, help="s of load (1800)")
    p.add_argument("--interval", type=float, default=60.0, help="s per reported interval (60)")
    p.add_argument(
        "--database-url",
        help="postgresql://user@host/db (a fresh database on that server, dropped after) or "
        "sqlite:///path; default a fresh SQLite file",
    )
    p.add_argument("--call-timeout", type=float, default=10.0, help="s before a call times out")
    p.add_argument("--ramp-timeout", type=float, default=300.0, help="s allowed for ramp-up")
    p.add_argument("--connect-concurrency", type=int, default=50, help="handshakes in flight (50)")
    p.add_argument("--no-compression", action="store_true", help="offer no permessage-deflate")
    p.add_argument("--seed", type=int, default=1, help="seed of the start offsets")
    p.add_argument(
        "--csms-log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    p.add_argument("--markdown", type=Path, help="write the table here (rewritten every interval)")
    p.add_argument("--json", type=Path, help="write the result here (JSON)")
    p.add_argument("--log-dir", type=Path, help="keep the server's output here")
    return p


def soak_main(argv: Sequence[str]) -> int:
    """``soak`` subcommand."""
    args = _soak_parser().parse_args(argv)
    if min(args.n, args.period, args.duration, args.interval) <= 0:
        print("error: --n, --period, --duration and --interval must be positive", file=sys.stderr)
        return 2
    opts = SoakOptions(
        n=args.n,
        period_s=args.period,
        duration_s=args.duration,
        interval_s=args.interval,
        database_url=args.database_url,
        call_timeout_s=args.call_timeout,
        ramp_timeout_s=args.ramp_timeout,
        connect_concurrency=args.connect_concurrency,
        compression=not args.no_compression,
        seed=args.seed,
        csms_log_level=args.csms_log_level,
        log_dir=args.log_dir,
    )
    soft, _hard = raise_open_file_limit()
    if soft < opts.n + 200:
        print(f"warning: open-file limit {soft} is below N={opts.n} + margin", file=sys.stderr)
    print(f"machine: {machine_description()}; open-file limit {soft}", flush=True)
    lines: list[str] = []

    def progress(line: str) -> None:  # a partial table survives an interrupted soak
        lines.append(line)
        if args.markdown is not None:
            args.markdown.write_text("\n".join(["partial (running):", *lines]) + "\n")

    try:
        result = asyncio.run(run_soak(opts, lambda m: print(m, flush=True), progress))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print("\n" + format_soak_summary(result), flush=True)
    if args.markdown is not None:
        args.markdown.write_text(format_soak_markdown(result))
        print(f"wrote {args.markdown}")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(result), indent=1))
        print(f"wrote {args.json}")
    return 0


# --- storm -------------------------------------------------------------------------------------
#
# ``python -m benchmarks.ocpp_load storm``: N chargers (default 1000) with passwords (security
# profile 1) come back all at once, twice: after the central system is killed and started again
# (each charger reconnects with the simulator's backoff: 5 s doubling to 300 s, each wait
# shortened by up to 50 %), and after a network blip (every connection dropped; every charger
# reconnects at once, no backoff). Each time: how long until each charger is back (connected,
# BootNotification and StatusNotification answered), p50/p95/max, and what it cost the server.
# The chargers run in this process (raw frames, like the load client); csms in a child process.

STORM_PASSWORD = "storm-password-0123"  # every charger's (self-registered on first connect)
STORM_CONNECTORS = 1


@dataclass
class StormCharger:
    """One charger of the storm fleet and what happened to it."""

    index: int
    cp_id: str
    ws: ClientConnection | None = None
    reader: asyncio.Task[None] | None = None
    waiting: dict[str, asyncio.Future[list[Any]]] = field(default_factory=dict)
    seq: int = 0
    back_at: float | None = None  # monotonic time of its last completed (re)connect
    dropped_at: float | None = None
    connects: int = 0
    failures: int = 0


class StormFleet:
    """N OCPP 1.6 chargers that reconnect by themselves when the server drops them."""

    def __init__(
        self,
        url: str,
        n: int,
        *,
        password: str | None = STORM_PASSWORD,
        backoff: Backoff | None = None,
        open_timeout_s: float = 30.0,
        call_timeout_s: float = 30.0,
        seed: int = 1,
        prefix: str = "storm",
    ) -> None:
        self.url = url.rstrip("/")
        self.password = password
        self.backoff = backoff or Backoff()
        self.open_timeout_s = open_timeout_s
        self.call_timeout_s = call_timeout_s
        self.rng = random.Random(seed)
        self.chargers = [StormCharger(i, f"{prefix}{i:05d}") for i in range(n)]
        self.reconnect_automatically = True
        self.first_error = ""
        self._tasks: set[asyncio.Task[None]] = set()

    def back_since(self, t: float) -> list[StormCharger]:
        """Chargers whose last (re)connect completed after ``t``."""
        return [c for c in self.chargers if c.back_at is not None and c.back_at > t]

    def connected(self) -> int:
        """Connections open now."""
        return sum(1 for c in self.chargers if c.ws is not None)

    def failures(self) -> int:
        """Failed connection attempts so far (refused, timed out, boot not answered)."""
        return sum(c.failures for c in self.chargers)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def connect_all(self, concurrency: int | None = None) -> None:
        """Every charger connects now (``concurrency`` at a time, or all at once) and retries
        with backoff until it is in."""
        gate = asyncio.Semaphore(concurrency or len(self.chargers))

        async def one(c: StormCharger) -> None:
            async with gate:
                await self._until_back(c, wait_first=False)

        await asyncio.gather(*(one(c) for c in self.chargers))

    async def drop_all(self) -> None:
        """Close every connection from our side (as a network blip would) without reconnecting."""
        self.reconnect_automatically = False
        await asyncio.gather(*(self._close(c) for c in self.chargers))
        self.reconnect_automatically = True

    async def close(self) -> None:
        """Stop reconnecting and close everything."""
        self.reconnect_automatically = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(self._close(c) for c in self.chargers))

    async def _close(self, c: StormCharger) -> None:
        ws, c.ws = c.ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await ws.close()
        if c.reader is not None:
            c.reader.cancel()
            await asyncio.gather(c.reader, return_exceptions=True)
            c.reader = None

    async def _until_back(self, c: StormCharger, wait_first: bool) -> None:
        attempt = 0
        if wait_first:
            await asyncio.sleep(self.backoff.delay(0, self.rng.random()))
            attempt = 1
        while not await self._bring_up(c):
            await asyncio.sleep(self.backoff.delay(attempt, self.rng.random()))
            attempt += 1

    async def _bring_up(self, c: StormCharger) -> bool:
        """Connect, boot, report the connector's status; False (and closed) on any failure."""
        headers = {}
        if self.password is not None:
            token = base64.b64encode(f"{c.cp_id}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            ws = await connect(
                f"{self.url}/{c.cp_id}",
                subprotocols=[Subprotocol("ocpp1.6")],
                additional_headers=headers,
                proxy=None,
                compression=None,
                open_timeout=self.open_timeout_s,
                ping_interval=None,
                close_timeout=5.0,
            )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            c.failures += 1
            self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"[:200]
            return False
        c.ws = ws
        c.reader = asyncio.get_running_loop().create_task(self._read(c, ws))
        try:
            boot = await self._call(c, "BootNotification", STORM_BOOT)
            status = await self._call(c, "StatusNotification", STORM_STATUS)
        except (ConnectionError, TimeoutError) as exc:
            boot = status = [CALLERROR, "", type(exc).__name__]
        if boot[0] != CALLRESULT or status[0] != CALLRESULT:
            c.failures += 1
            self.first_error = self.first_error or f"boot/status answered {boot[:3]}"[:200]
            await self._close(c)
            return False
        c.back_at = time.monotonic()
        c.connects += 1
        return True

    async def _call(self, c: StormCharger, action: str, payload: str) -> list[Any]:
        ws = c.ws
        if ws is None:
            raise ConnectionError("closed")
        c.seq += 1
        uid = f"{c.index}-{c.seq}"
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        c.waiting[uid] = future
        try:
            await ws.send(f'[2,"{uid}","{action}",{payload}]')
            async with asyncio.timeout(self.call_timeout_s):
                return await future
        except ConnectionClosed as exc:
            raise ConnectionError("closed") from exc
        finally:
            c.waiting.pop(uid, None)

    async def _read(self, c: StormCharger, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                if msg[0] == CALL:
                    answer = _storm_answer(msg[2], msg[3])
                    await ws.send(json.dumps([CALLRESULT, msg[1], answer]))
                elif (future := c.waiting.get(msg[1])) is not None and not future.done():
                    future.set_result(msg)
        except ConnectionClosed:
            pass
        for future in c.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("closed"))
        if c.ws is ws:  # dropped by the server (or the network), not closed by us
            c.ws = None
            c.dropped_at = time.monotonic()
            if self.reconnect_automatically:
                self._spawn(self._until_back(c, wait_first=True))


STORM_BOOT = json.dumps({"chargePointVendor": "Bench", "chargePointModel": "Storm"})
STORM_STATUS = json.dumps({"connectorId": 1, "errorCode": "NoError", "status": "Available"})


def _storm_answer(action: str, request: dict[str, Any]) -> dict[str, Any]:
    if action == "GetConfiguration":
        return {"configurationKey": [], "unknownKey": list(request.get("key") or [])}
    if action in ("SetChargingProfile", "ClearChargingProfile", "ChangeConfiguration"):
        return {"status": "Accepted"}
    if action in ("GetCompositeSchedule", "TriggerMessage"):
        return {"status": "Rejected"}
    return {}


@dataclass
class StormPhase:
    """One wave of chargers coming back."""

    name: str
    n: int
    back: int = 0
    # seconds from the server being ready (restart) or the drop (blip) until each was back
    p50_s: float | None = None
    p95_s: float | None = None
    max_s: float | None = None
    server_start_s: float | None = None  # restart: from the kill until the port accepted
    connect_failures: int = 0
    server_cpu_pct: float | None = None
    server_peak_rss_mb: float | None = None
    server_errors: int = 0  # ERROR lines in the server's log during the phase
    first_error: str = ""


@dataclass(frozen=True)
class StormOptions:
    """One storm run."""

    n: int = 1000
    database_url: str | None = None
    password: str | None = STORM_PASSWORD
    register_concurrency: int = 50
    open_timeout_s: float = 30.0
    call_timeout_s: float = 30.0
    phase_timeout_s: float = 900.0
    seed: int = 1
    csms_log_level: str = "INFO"
    log_dir: Path | None = None


async def _start_csms(
    port: int, db_url: str, workdir: Path, opts: StormOptions, number: int
) -> RunningServer:
    log_file = workdir / f"csms-{number}.log"
    load_opts = LoadOptions(csms_log_level=opts.csms_log_level)
    with log_file.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *server_command("csms", port, db_url, load_opts),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=workdir,
            env=child_env(),
        )
    server = RunningServer("csms", proc, port, log_file, db_url)
    await _wait_listening(server, STARTUP_TIMEOUT_S)
    return server


def _error_lines(server: RunningServer) -> int:
    try:
        text = server.log_file.read_text(errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if " ERROR " in line or "Traceback" in line)


async def _watch_phase(
    phase: StormPhase,
    fleet: StormFleet,
    server: RunningServer,
    since: float,
    t0: float,
    timeout_s: float,
    failures0: int,
    log: Log,
) -> None:
    """Wait until every charger is back after ``since``; fill in the phase (times from t0;
    connection failures counted from ``failures0``)."""
    cpu0, start, peak = _cpu_or_none([server.pid]), time.monotonic(), 0.0
    errors0 = _error_lines(server)
    next_print = start + 5.0
    while len(fleet.back_since(since)) < phase.n and time.monotonic() - start < timeout_s:
        await asyncio.sleep(0.2)
        with contextlib.suppress(OSError, ValueError, IndexError):
            peak = max(peak, memory_mb(server.pid)[1])
        if time.monotonic() >= next_print:
            log(f"[storm {phase.name}] {len(fleet.back_since(since))}/{phase.n} back")
            next_print += 5.0
    cpu1, span = _cpu_or_none([server.pid]), time.monotonic() - start
    back = sorted(c.back_at - t0 for c in fleet.back_since(since) if c.back_at is not None)
    phase.back = len(back)
    phase.p50_s, phase.p95_s = percentile(back, 50), percentile(back, 95)
    phase.max_s = back[-1] if back else None
    phase.connect_failures = fleet.failures() - failures0
    if cpu0 is not None and cpu1 is not None and span > 0:
        phase.server_cpu_pct = 100.0 * (cpu1 - cpu0) / span
    phase.server_peak_rss_mb = peak or None
    phase.server_errors = _error_lines(server) - errors0
    phase.first_error = fleet.first_error
    fleet.first_error = ""


async def run_storm(opts: StormOptions, log: Log = print) -> list[StormPhase]:
    """Register N chargers, then the two storms; every process is stopped at the end."""
    phases: list[StormPhase] = []
    with tempfile.TemporaryDirectory(prefix="ocpp_storm_") as tmp:
        workdir = Path(tmp)
        async with fresh_database(opts.database_url, workdir) as db_url:
            port = free_port()
            servers = [await _start_csms(port, db_url, workdir, opts, 1)]
            fleet = StormFleet(
                f"ws://{HOST}:{port}/ocpp",
                opts.n,
                password=opts.password,
                open_timeout_s=opts.open_timeout_s,
                call_timeout_s=opts.call_timeout_s,
                seed=opts.seed,
            )
            try:
                await _storm_phases(opts, fleet, servers, workdir, phases, log)
            finally:
                await fleet.close()
                await _stop(servers[-1].proc)
                if opts.log_dir is not None:
                    _keep_logs(workdir, opts.log_dir)
    return phases


async def _phase(
    phase: StormPhase,
    fleet: StormFleet,
    server: RunningServer,
    since: float,
    t0: float,
    connecting: asyncio.Task[None] | None,
    failures0: int,
    opts: StormOptions,
    log: Log,
) -> None:
    try:
        await _watch_phase(phase, fleet, server, since, t0, opts.phase_timeout_s, failures0, log)
    finally:
        if connecting is not None:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
    log(format_storm_phases([phase]))


async def _storm_phases(
    opts: StormOptions,
    fleet: StormFleet,
    servers: list[RunningServer],
    workdir: Path,
    phases: list[StormPhase],
    log: Log,
) -> None:
    # 1. First connect: every charger registers itself (its password is hashed and stored).
    first = StormPhase(f"first connect, {opts.register_concurrency} at a time", opts.n)
    phases.append(first)
    t0 = time.monotonic()
    connecting = asyncio.create_task(fleet.connect_all(opts.register_concurrency))
    await _phase(first, fleet, servers[-1], t0, t0, connecting, 0, opts, log)

    # 2. The central system is killed and started again: every charger reconnects with backoff.
    restart = StormPhase("csms killed and restarted (backoff 5 s x2, jitter 50 %)", opts.n)
    phases.append(restart)
    old = servers[-1]
    failures0 = fleet.failures()
    killed = time.monotonic()
    old.proc.kill()
    await old.proc.wait()
    servers.append(await _start_csms(old.port, old.database_url, workdir, opts, 2))
    ready = time.monotonic()
    restart.server_start_s = ready - killed
    log(f"[storm] csms killed and listening again after {restart.server_start_s:.1f} s")
    await _phase(restart, fleet, servers[-1], killed, ready, None, failures0, opts, log)

    # 3. A network blip: every connection drops and every charger reconnects at once.
    blip = StormPhase("network blip: all reconnect at once", opts.n)
    phases.append(blip)
    failures0 = fleet.failures()
    await fleet.drop_all()
    dropped = time.monotonic()
    connecting = asyncio.create_task(fleet.connect_all(None))
    await _phase(blip, fleet, servers[-1], dropped, dropped, connecting, failures0, opts, log)


STORM_COLUMNS = (
    ("phase", "name"),
    ("N", "n"),
    ("back", "back"),
    ("p50 s", "p50_s"),
    ("p95 s", "p95_s"),
    ("max s", "max_s"),
    ("server start s", "server_start_s"),
    ("connect failures", "connect_failures"),
    ("server CPU %", "server_cpu_pct"),
    ("peak RSS MB", "server_peak_rss_mb"),
    ("server errors", "server_errors"),
)


def _storm_cell(p: StormPhase, key: str) -> str:
    value = getattr(p, key)
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def format_storm_phases(phases: Sequence[StormPhase]) -> str:
    """Plain text, one block per phase."""
    lines = []
    for p in phases:
        cells = [f"{h}: {_storm_cell(p, k)}" for h, k in STORM_COLUMNS[1:]]
        lines.append(f"[storm] {p.name}: " + ", ".join(cells))
        if p.first_error:
            lines.append(f"        first failure: {p.first_error}")
    return "\n".join(lines)


def format_storm_markdown(phases: Sequence[StormPhase], opts: StormOptions) -> str:
    """The phases as a Markdown table, with the machine."""
    db = "SQLite" if opts.database_url is None else opts.database_url.split("://")[0]
    head = [
        f"Machine: {machine_description()}. Measured {datetime.now(UTC):%Y-%m-%d}. "
        f"csms on {db}; {opts.n} OCPP 1.6 chargers "
        f"{'with passwords (security profile 1)' if opts.password else 'without passwords'}.",
        "",
        "| " + " | ".join(h for h, _ in STORM_COLUMNS) + " |",
        "|---|" + "---:|" * (len(STORM_COLUMNS) - 1),
    ]
    rows = ["| " + " | ".join(_storm_cell(p, k) for _, k in STORM_COLUMNS) + " |" for p in phases]
    notes = [f"- {p.name}: first failure: {p.first_error}" for p in phases if p.first_error]
    return "\n".join(head + rows + (["", *notes] if notes else [])) + "\n"


def _storm_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ocpp_load storm",
        description="Reconnect storm: N chargers back after a csms restart and a network blip.",
    )
    p.add_argument("--n", type=int, default=1000, help="chargers (1000)")
    p.add_argument(
        "--database-url",
        help="postgresql://user@host/db (a fresh database on that server, dropped after) or "
        "sqlite:///path; default a fresh SQLite file",
    )
    p.add_argument("--no-password", action="store_true", help="chargers without passwords")
    p.add_argument(
        "--register-concurrency", type=int, default=50, help="first connects in flight (50)"
    )
    p.add_argument("--open-timeout", type=float, default=30.0, help="handshake timeout, s (30)")
    p.add_argument("--phase-timeout", type=float, default=900.0, help="s allowed per phase")
    p.add_argument("--seed", type=int, default=1, help="seed of the backoff jitter")
    p.add_argument(
        "--csms-log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    p.add_argument("--markdown", type=Path, help="write the table here")
    p.add_argument("--json", type=Path, help="write the phases here (JSON)")
    p.add_argument("--log-dir", type=Path, help="keep the server's output here")
    return p


def storm_main(argv: Sequence[str]) -> int:
    """``storm`` subcommand."""
    args = _storm_parser().parse_args(argv)
    if args.n < 1:
        print("error: --n must be positive", file=sys.stderr)
        return 2
    opts = StormOptions(
        n=args.n,
        database_url=args.database_url,
        password=None if args.no_password else STORM_PASSWORD,
        register_concurrency=args.register_concurrency,
        open_timeout_s=args.open_timeout,
        phase_timeout_s=args.phase_timeout,
        seed=args.seed,
        csms_log_level=args.csms_log_level,
        log_dir=args.log_dir,
    )
    soft, _hard = raise_open_file_limit()
    if soft < 2 * opts.n + 200:
        print(f"warning: open-file limit {soft} is below 2 x N + margin", file=sys.stderr)
    print(f"machine: {machine_description()}; open-file limit {soft}", flush=True)
    try:
        phases = asyncio.run(run_storm(opts, lambda m: print(m, flush=True)))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print("\n" + format_storm_phases(phases), flush=True)
    if args.markdown is not None:
        args.markdown.write_text(format_storm_markdown(phases, opts))
        print(f"wrote {args.markdown}")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(p) for p in phases], indent=1))
        print(f"wrote {args.json}")
    return 0


# --- command line ------------------------------------------------------------------------------


def _numbers(text: str, kind: Callable[[str], Any]) -> list[Any]:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list: {text!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"need positive values: {text!r}")
    return values


def _servers(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SERVERS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"servers are {', '.join(SERVERS)}; got {text!r}")
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ocpp_load",
        description="OCPP load benchmark: csms vs a bare ocpp-package server vs raw websockets.",
    )
    p.add_argument(
        "--n",
        type=lambda t: _numbers(t, int),
        default=list(DEFAULT_N),
        help="connections, comma-separated (default 100,1000,2000)",
    )
    p.add_argument(
        "--period", type=float, default=2.0, help="s between MeterValues per connection (2)"
    )
    p.add_argument("--duration", type=float, default=30.0, help="measurement window, s (30)")
    p.add_argument(
        "--servers",
        type=_servers,
        default=list(SERVERS),
        help="which servers, in order (default csms,bare,raw)",
    )
    p.add_argument(
        "--rate",
        type=lambda t: _numbers(t, float),
        help="offer this many MeterValues/s in total instead of --period (comma-separated: "
        "one case per rate, e.g. 500,1000,1500)",
    )
    p.add_argument("--markdown", type=Path, help="write the table (Markdown) to this file")
    p.add_argument("--json", type=Path, help="write every result (JSON) to this file")
    p.add_argument(
        "--database-url",
        help="csms database: postgresql://user@host/db (a fresh database is created on that "
        "server per case and dropped after) or sqlite:///path (used as is); default a fresh "
        "SQLite file per case",
    )
    p.add_argument("--client-procs", type=int, default=1, help="load-client processes (1)")
    p.add_argument("--call-timeout", type=float, default=10.0, help="s before a call times out")
    p.add_argument("--ramp-timeout", type=float, default=180.0, help="s allowed for ramp-up")
    p.add_argument(
        "--connect-concurrency", type=int, default=50, help="handshakes in flight per client"
    )
    p.add_argument("--no-compression", action="store_true", help="clients offer no deflate")
    p.add_argument("--seed", type=int, default=1, help="seed of the start-time jitter")
    p.add_argument(
        "--csms-log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    p.add_argument("--progress-every", type=float, default=5.0, help="s between progress lines")
    p.add_argument("--log-dir", type=Path, help="keep every server's and client's output here")
    return p


async def run_all(cases: Sequence[Case], opts: LoadOptions, log: Log = print) -> list[CaseResult]:
    """Every case in turn (a case that fails to start is reported and skipped)."""
    results: list[CaseResult] = []
    for i, case in enumerate(cases, 1):
        log(f"=== case {i}/{len(cases)}: {case.label()}")
        try:
            result = await run_case(case, opts, log)
        except Exception as exc:  # noqa: BLE001  (a server that does not start, no PostgreSQL)
            log(f"[{case.label()}] failed: {type(exc).__name__}: {exc}")
            period = case.period_s(opts)
            note = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
            result = CaseResult(case.server, case.n, period, case.n / period, notes=[note])
        results.append(result)
        log(format_table([result]))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``soak`` and ``storm`` are subcommands; without one, the load cases)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["soak"]:
        return soak_main(argv[1:])
    if argv[:1] == ["storm"]:
        return storm_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.period <= 0 or args.duration <= 0 or args.client_procs < 1:
        print("error: --period, --duration and --client-procs must be positive", file=sys.stderr)
        return 2
    opts = LoadOptions(
        period_s=args.period,
        duration_s=args.duration,
        database_url=args.database_url,
        client_procs=args.client_procs,
        call_timeout_s=args.call_timeout,
        ramp_timeout_s=args.ramp_timeout,
        connect_concurrency=args.connect_concurrency,
        compression=not args.no_compression,
        seed=args.seed,
        csms_log_level=args.csms_log_level,
        progress_every_s=args.progress_every,
        log_dir=args.log_dir,
    )
    soft, _hard = raise_open_file_limit()
    biggest = max(args.n)
    if soft < biggest + 200:
        print(
            f"warning: open-file limit {soft} is below N={biggest} + margin; connections will "
            "fail (raise the hard limit: ulimit -Hn)",
            file=sys.stderr,
        )
    rates: list[float | None] = list(args.rate) if args.rate else [None]
    cases = [Case(s, n, r) for s in args.servers for n in args.n for r in rates]
    print(f"machine: {machine_description()}; open-file limit {soft}", flush=True)
    try:
        results = asyncio.run(run_all(cases, opts, lambda m: print(m, flush=True)))
    except KeyboardInterrupt:  # servers and clients were stopped on the way out
        print("interrupted", file=sys.stderr)
        return 130
    print("\n" + format_table(results), flush=True)
    if args.markdown is not None:
        args.markdown.write_text(format_markdown(results, opts, bool(args.rate)))
        print(f"wrote {args.markdown}")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
