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
import contextlib
import json
import os
import platform
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
        server = RunningServer(kind, proc, port, log_file)
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
    """Entry point."""
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
