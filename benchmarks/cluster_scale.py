"""Cluster scale-out benchmark (issue #8): ``python -m benchmarks.cluster_scale``.

Three parts, each on clusters started with ``deploy.cluster`` (N workers of ``python -m csms``
sharing PostgreSQL and Redis behind nginx), every one on a fresh PostgreSQL database (created on
the server of ``--database-url``, dropped afterwards) and under a Redis key prefix of its own
(deleted afterwards), on free ports:

1. **Scaling.** For each W of ``--workers``: a cluster of W workers; the load clients of
   ``benchmarks.ocpp_load`` (``benchmarks.ocpp_load_client``, in their own processes) connect N
   OCPP 1.6 chargers through nginx's OCPP port, boot them, then each sends one MeterValues every
   ``--period`` seconds for ``--duration`` seconds. Per W: chargers held, MeterValues answered per
   second, p50/p95/p99 round trip, errors, the CPU seconds of every worker, nginx, PostgreSQL,
   Redis and the load clients over the window, what Redis and PostgreSQL did (commands, bytes,
   transactions, rows, WAL), and the throughput at W over the throughput at 1. With
   ``--find-max`` the same cluster is then stepped up (``--max-step`` times the offered rate each
   step, new load clients each step) until p99 passes ``--max-p99-ms``, a call fails, a charger is
   lost or fewer than 95 % of the calls offered are answered: the highest rate sustained is
   reported per W.
2. **Failover.** A cluster of ``--failover-workers`` with ``--sites`` sites (their leases shared
   out among the workers) and N chargers that reconnect by themselves (``ocpp_load.StormFleet``:
   backoff 5 s doubling, 50 % jitter), each sending MeterValues every ``--failover-period``
   seconds; the worker leading most sites is killed (SIGKILL). Measured from the kill: until every
   charger is connected and booted again (the chargers' view), until every presence key in Redis
   names a live worker, until every site's lease is held by a live worker; and the calls that
   never got an answer.
3. **Redis probe** (``--redis-probe N``, off by default): the presence Lua scripts of
   ``csms.cluster.presence`` timed on N synthetic chargers (throwaway keys), for the capacity
   estimate: one refresh of every claim (500 per script call) and one directory sync.

A benchmark, not a test: nothing is asserted. Every process it starts is stopped at the end of
its part; every wait is bounded; only loopback traffic. On a 2-core machine the workers, nginx,
PostgreSQL, Redis and the load clients share the same two cores: more workers cannot add cores,
so throughput does not scale linearly here (the CPU columns show where the time goes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from benchmarks.ocpp_load import (
    CaseResult,
    ClientProcess,
    LoadOptions,
    RunningServer,
    StormCharger,
    StormFleet,
    _merge_client_results,
    _read_events,
    _spawn_client,
    _split,
    _stop,
    cpu_seconds,
    fresh_database,
    machine_busy_seconds,
    machine_description,
    memory_mb,
    percentile,
    raise_open_file_limit,
)
from benchmarks.ocpp_load_client import CALLRESULT
from csms.cluster.keys import text
from csms.cluster.presence import worker_of
from deploy.cluster import (
    DEFAULT_REDIS_URL,
    Cluster,
    ClusterError,
    ClusterSpec,
    check_prerequisites,
    redact,
)

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_WORKERS = (1, 2, 3)
SITE_TIMEZONE = "UTC"
SAMPLE_EVERY_S = 0.5
CLIENT_EXIT_SLACK_S = 30.0
SUSTAINED_SHARE = 0.95  # of the offered calls answered in the window, to count as sustained
NGINX_CHARGERS = 2000  # deploy/nginx.conf.template: worker_connections 4096, two per charger
POLL_S = 0.2

Log = Callable[[str], None]


# --- options and results -----------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleOptions:
    """How every part is run."""

    workers: tuple[int, ...] = DEFAULT_WORKERS
    n: int = 1000
    period_s: float = 2.0  # s between two MeterValues of one charger
    duration_s: float = 60.0
    database_url: str = DEFAULT_DATABASE_URL  # a fresh database is made on this server per run
    redis_url: str = DEFAULT_REDIS_URL
    client_procs: int = 1
    call_timeout_s: float = 10.0
    ramp_timeout_s: float = 300.0
    connect_concurrency: int = 50
    sites: int = 6
    lease_ttl_s: float = 10.0
    presence_ttl_s: float = 15.0
    scaling: bool = True
    find_max: bool = False
    max_window_s: float = 20.0
    max_step: float = 1.5
    max_rate: float = 10_000.0
    max_p99_ms: float = 1000.0
    failover: bool = True
    failover_workers: int = 3
    failover_n: int | None = None  # None: n
    failover_period_s: float = 10.0
    failover_warmup_s: float = 10.0
    failover_timeout_s: float = 180.0
    redis_probe_n: int = 0
    redis_probe_workers: int = 3
    csms_log_level: str = "INFO"
    nginx: str | None = None
    seed: int = 1
    progress_every_s: float = 5.0
    log_dir: Path | None = None

    @property
    def chargers_in_failover(self) -> int:
        """N of the failover part."""
        return self.n if self.failover_n is None else self.failover_n


@dataclass
class StepResult:
    """One load window on a running cluster (None: could not be measured)."""

    workers: int
    n: int
    period_s: float
    offered_per_s: float
    window_s: float
    held: int = 0
    connect_failures: int = 0
    ramp_s: float = 0.0
    sent: int = 0
    answered: int = 0
    answered_per_s: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    call_errors: int = 0
    timeouts: int = 0
    skipped: int = 0
    chargers_per_worker: dict[str, int] = field(default_factory=dict)  # presence, after ramp-up
    worker_cpu_s: dict[str, float] = field(default_factory=dict)
    worker_rss_mb: dict[str, float] = field(default_factory=dict)  # VmRSS at the window's end
    nginx_cpu_s: float | None = None
    postgres_cpu_s: float | None = None
    redis_cpu_s: float | None = None
    client_cpu_s: float | None = None
    machine_cpu_pct: float | None = None
    redis_commands_per_s: float | None = None
    redis_in_bytes_per_s: float | None = None
    redis_out_bytes_per_s: float | None = None
    redis_top_commands: dict[str, float] = field(default_factory=dict)  # calls/s
    pg_commits_per_s: float | None = None
    pg_inserted_per_s: float | None = None
    pg_updated_per_s: float | None = None
    pg_wal_bytes_per_s: float | None = None
    pg_inserted_by_table: dict[str, int] = field(default_factory=dict)
    sustained: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class ScaleRun:
    """Everything measured on one cluster of W workers."""

    workers: int
    base: StepResult
    steps: list[StepResult] = field(default_factory=list)  # --find-max
    max_sustained_per_s: float | None = None
    scaling: float | None = None  # base answered/s over that of the smallest W
    max_scaling: float | None = None  # max sustained over that of the smallest W
    worker_log_errors: int = 0
    start_s: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class FailoverResult:
    """One worker killed under load."""

    workers: int
    n: int
    sites: int
    period_s: float
    lease_ttl_s: float
    presence_ttl_s: float
    held_before: int = 0
    ramp_s: float = 0.0
    leases_before: dict[str, int] = field(default_factory=dict)
    chargers_before: dict[str, int] = field(default_factory=dict)
    victim: str = ""
    victim_leases: int = 0
    victim_chargers: int = 0
    dropped: int = 0  # chargers whose connection dropped after the kill
    chargers_back_s: float | None = None  # the last one connected and booted again
    chargers_back_p50_s: float | None = None
    presence_moved_s: float | None = None  # every presence key names a survivor
    leadership_moved_s: float | None = None  # every lease held by a survivor
    leases_after: dict[str, int] = field(default_factory=dict)
    chargers_after: dict[str, int] = field(default_factory=dict)
    reconnect_failures: int = 0
    calls_sent: int = 0
    calls_answered: int = 0
    calls_errors: int = 0
    calls_lost: int = (
        0  # never answered: the connection dropped with the call in flight, or timeout
    )
    calls_lost_timeout: int = 0
    ticks_while_disconnected: int = 0  # calls not sent: the charger was reconnecting
    worker_log_errors: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class RedisProbe:
    """The presence scripts on many synthetic chargers."""

    n: int
    workers: int
    refresh_calls: int = 0
    refresh_wall_s: float = 0.0  # one refresh of every claim, all workers, one after the other
    refresh_server_ms_per_call: float | None = None
    refresh_in_bytes: int = 0
    sync_calls: int = 0  # Redis commands of one PresenceDirectory.sync (every live worker read)
    sync_wall_s: float = 0.0
    sync_server_ms: float | None = None  # Redis's time on them, all together
    sync_out_bytes: int = 0
    notes: list[str] = field(default_factory=list)


# --- measuring the processes -----------------------------------------------------------------


def _proc_dirs() -> list[Path]:
    return [p for p in Path("/proc").iterdir() if p.name.isdigit()]


def _children(pid: int) -> list[int]:
    """Direct children of a process (from /proc/*/stat)."""
    out = []
    for d in _proc_dirs():
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = (d / "stat").read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _postgres_pids(database: str) -> list[int]:
    """The PostgreSQL processes that work for ``database``: its backends and the server's own
    (postmaster, WAL writer, checkpointer...), not other databases' backends."""
    out = []
    for d in _proc_dirs():
        with contextlib.suppress(OSError):
            if (d / "comm").read_text().strip() != "postgres":
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            backend = "(" in cmd or "[local]" in cmd
            if not backend or f" {database} " in cmd:
                out.append(int(d.name))
    return out


def _cpu_of(pids: Sequence[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[pid] = cpu_seconds(pid)
    return out


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings (a process born in between counts from its start)."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


@dataclass
class _Reading:
    """Counters at one moment."""

    t: float
    workers: dict[str, float]
    nginx: dict[int, float]
    postgres: dict[int, float]
    machine_s: float
    redis: dict[str, float]
    pg: dict[str, float]
    pg_tables: dict[str, int]


class _Meter:
    """Reads CPU of the cluster's processes, Redis's and PostgreSQL's counters."""

    def __init__(self, cluster: Cluster, db_url: str, redis_url: str) -> None:
        self.cluster = cluster
        self.db_url = "postgresql://" + db_url.split("://", 1)[1]
        self.database = db_url.rsplit("/", 1)[1]
        self.redis_url = redis_url
        nginx = cluster.nginx
        self.nginx_pids = [] if nginx is None else [nginx.pid, *_children(nginx.pid)]

    async def read(self) -> _Reading:
        workers = {}
        for w in self.cluster.workers:
            if w.pid is not None and w.alive:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    workers[w.worker_id] = cpu_seconds(w.pid)
        return _Reading(
            t=time.monotonic(),
            workers=workers,
            nginx=_cpu_of(self.nginx_pids),
            postgres=_cpu_of(_postgres_pids(self.database)),
            machine_s=machine_busy_seconds(),
            redis=await _redis_counters(self.redis_url),
            pg=await self._pg(),
            pg_tables=await self._pg_tables(),
        )

    async def _pg(self) -> dict[str, float]:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(self.db_url, timeout=10)
        try:
            row = await conn.fetchrow(
                "SELECT xact_commit, tup_inserted, tup_updated, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS wal "
                "FROM pg_stat_database WHERE datname = current_database()"
            )
        finally:
            await conn.close()
        return {k: float(row[k]) for k in ("xact_commit", "tup_inserted", "tup_updated", "wal")}

    async def _pg_tables(self) -> dict[str, int]:
        import asyncpg

        conn = await asyncpg.connect(self.db_url, timeout=10)
        try:
            rows = await conn.fetch("SELECT relname, n_tup_ins FROM pg_stat_user_tables")
        finally:
            await conn.close()
        return {str(r["relname"]): int(r["n_tup_ins"]) for r in rows}


async def _redis_counters(url: str) -> dict[str, float]:
    """Redis's CPU, commands and bytes so far, and calls per command (``cmd:NAME``)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_timeout=10)
    try:
        stats = await client.info("stats")
        cpu = await client.info("cpu")
        commands = await client.info("commandstats")
    finally:
        await client.aclose()
    out = {
        "cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        "commands": float(stats["total_commands_processed"]),
        "in_bytes": float(stats["total_net_input_bytes"]),
        "out_bytes": float(stats["total_net_output_bytes"]),
    }
    for name, value in commands.items():
        if isinstance(value, dict):
            short = name.removeprefix("cmdstat_")
            out[f"cmd:{short}"] = float(value.get("calls", 0))
            out[f"usec:{short}"] = float(value.get("usec", 0))
    return out


def _delta(a: dict[str, float], b: dict[str, float], key: str) -> float:
    return b.get(key, 0.0) - a.get(key, 0.0)


def _fill_usage(step: StepResult, a: _Reading, b: _Reading) -> None:
    """CPU and counters of the window between two readings."""
    span = b.t - a.t
    if span <= 0:
        return
    step.worker_cpu_s = {w: b.workers[w] - a.workers[w] for w in b.workers if w in a.workers}
    step.nginx_cpu_s = _cpu_delta(a.nginx, b.nginx)
    step.postgres_cpu_s = _cpu_delta(a.postgres, b.postgres)
    step.machine_cpu_pct = 100.0 * (b.machine_s - a.machine_s) / span

    def rate(d: dict[str, float], e: dict[str, float], key: str) -> float | None:
        if key not in d or key not in e:
            return None
        return (e[key] - d[key]) / span

    step.redis_cpu_s = b.redis["cpu_s"] - a.redis["cpu_s"]
    step.redis_commands_per_s = rate(a.redis, b.redis, "commands")
    step.redis_in_bytes_per_s = rate(a.redis, b.redis, "in_bytes")
    step.redis_out_bytes_per_s = rate(a.redis, b.redis, "out_bytes")
    calls = {
        k.removeprefix("cmd:"): (b.redis[k] - a.redis.get(k, 0.0)) / span
        for k in b.redis
        if k.startswith("cmd:")
    }
    top = sorted(((v, k) for k, v in calls.items() if v > 0), reverse=True)[:8]
    step.redis_top_commands = {k: round(v, 1) for v, k in top}
    step.pg_commits_per_s = rate(a.pg, b.pg, "xact_commit")
    step.pg_inserted_per_s = rate(a.pg, b.pg, "tup_inserted")
    step.pg_updated_per_s = rate(a.pg, b.pg, "tup_updated")
    step.pg_wal_bytes_per_s = rate(a.pg, b.pg, "wal")
    step.pg_inserted_by_table = {
        t: n - a.pg_tables.get(t, 0) for t, n in b.pg_tables.items() if n - a.pg_tables.get(t, 0)
    }


# --- Redis: presence, leases, clean-up ---------------------------------------------------------


async def _presence_holders(redis_url: str, prefix: str) -> dict[str, str]:
    """Charger -> worker, from the presence keys."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url, decode_responses=True, socket_timeout=10)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}presence:*", count=1000)]
        values = await client.mget(keys) if keys else []
    finally:
        await client.aclose()
    out = {}
    for key, value in zip(keys, values, strict=True):
        worker = worker_of(text(value))
        if worker is not None:
            out[str(text(key)).removeprefix(f"{prefix}presence:")] = worker
    return out


async def _lease_holders(redis_url: str, prefix: str, sites: Sequence[str]) -> dict[str, str]:
    """Site -> worker holding its lease (sites without a lease left out)."""
    from redis.asyncio import Redis

    if not sites:
        return {}
    client = Redis.from_url(redis_url, decode_responses=True, socket_timeout=10)
    try:
        values = await client.mget([f"{prefix}lease:{s}" for s in sites])
    finally:
        await client.aclose()
    out = {}
    for site, value in zip(sites, values, strict=True):
        worker = worker_of(text(value))
        if worker is not None:
            out[site] = worker
    return out


async def _delete_prefix(redis_url: str, prefix: str) -> None:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(redis_url, socket_timeout=10)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    except RedisError:
        pass
    finally:
        await client.aclose()


# --- the cluster -------------------------------------------------------------------------------


def site_ids(count: int) -> list[str]:
    """The benchmark's sites."""
    return [f"bench-site-{k + 1}" for k in range(count)]


async def seed_sites(db_url: str, count: int) -> None:
    """Migrate the fresh database and create the sites, before any worker starts (the workers
    then share their leases out)."""
    from csms.db.engine import create_engine, session_factory
    from csms.db.migrate import upgrade_to_head
    from csms.domain.clock import SystemClock
    from csms.services.notifications import Notifier
    from csms.services.sites import SiteService

    engine = create_engine(db_url)
    try:
        await upgrade_to_head(engine)
        sites = SiteService(session_factory(engine), SystemClock(), Notifier())
        for site_id in site_ids(count):
            await sites.upsert(
                site_id,
                {
                    "timezone": SITE_TIMEZONE,
                    "capacity_kw": 200.0,
                    "step_minutes": 15,
                    "method": "lp",
                },
            )
    finally:
        await engine.dispose()


def cluster_spec(
    opts: ScaleOptions, workers: int, db_url: str, prefix: str, run_dir: Path
) -> ClusterSpec:
    """A cluster on free ports that lets the load clients register themselves."""
    return ClusterSpec(
        workers=workers,
        ocpp_port=0,
        http_port=0,
        worker_ocpp_ports_from=0,
        worker_http_ports_from=0,
        database_url=db_url,
        redis_url=opts.redis_url,
        key_prefix=prefix,
        run_dir=run_dir,
        allow_unknown_chargers=True,
        accept_unknown_id_tokens=True,
        extra_env={
            "CSMS_LOG_LEVEL": opts.csms_log_level,
            "CSMS_CLUSTER__LEASE_TTL_S": repr(opts.lease_ttl_s),
            "CSMS_CLUSTER__PRESENCE_TTL_S": repr(opts.presence_ttl_s),
        },
        nginx=opts.nginx,
    )


def _error_lines(cluster: Cluster) -> int:
    count = 0
    for w in cluster.workers:
        with contextlib.suppress(OSError):
            text = w.log_path.read_text(errors="replace")
            count += sum(
                1 for line in text.splitlines() if " ERROR " in line or "Traceback" in line
            )
    return count


def _keep_logs(run_dir: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".err", ".conf"):
            shutil.copy2(path, target / path.name)


@contextlib.asynccontextmanager
async def running_cluster(
    opts: ScaleOptions, workers: int, label: str, log: Log
) -> AsyncIterator[tuple[Cluster, str, str]]:
    """A started cluster on a fresh database with the sites seeded; yields (cluster, database URL,
    key prefix). Everything is stopped and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"cluster_scale_{label}_") as tmp:
        workdir = Path(tmp)
        async with fresh_database(opts.database_url, workdir) as db_url:
            await seed_sites(db_url, opts.sites)
            prefix = f"bench-scale-{secrets.token_hex(4)}:"
            cluster = Cluster(cluster_spec(opts, workers, db_url, prefix, workdir / "cluster"))
            log(f"[{label}] starting {workers} worker(s) and nginx")
            t0 = time.monotonic()
            try:
                await asyncio.to_thread(cluster.start)
                log(f"[{label}] cluster ready in {time.monotonic() - t0:.1f} s")
                yield cluster, db_url, prefix
            finally:
                await asyncio.to_thread(cluster.stop)
                await _delete_prefix(opts.redis_url, prefix)
                if opts.log_dir is not None:
                    _keep_logs(workdir, opts.log_dir / label)


def _nginx_target(cluster: Cluster, workdir: Path) -> RunningServer:
    """nginx's OCPP port as ``ocpp_load`` names a server for its load clients (which read only
    the port: the process is the cluster's, measured here, not ocpp_load's)."""
    return RunningServer(
        "cluster", cast(asyncio.subprocess.Process, None), cluster.ocpp_port, workdir / "nginx"
    )


# --- part 1: one load window -------------------------------------------------------------------


async def load_step(
    cluster: Cluster,
    db_url: str,
    prefix: str,
    n: int,
    period_s: float,
    window_s: float,
    opts: ScaleOptions,
    workdir: Path,
    label: str,
    log: Log,
) -> StepResult:
    """New load clients through nginx: ramp up N chargers, measure one window, close them."""
    workdir.mkdir(parents=True, exist_ok=True)
    step = StepResult(len(cluster.workers), n, period_s, n / period_s, window_s)
    load = LoadOptions(
        period_s=period_s,
        duration_s=window_s,
        client_procs=opts.client_procs,
        call_timeout_s=opts.call_timeout_s,
        ramp_timeout_s=opts.ramp_timeout_s,
        connect_concurrency=opts.connect_concurrency,
        seed=opts.seed,
        progress_every_s=opts.progress_every_s,
    )
    target = _nginx_target(cluster, workdir)
    meter = _Meter(cluster, db_url, opts.redis_url)
    clients = [
        await _spawn_client(target, first, count, period_s, load, workdir, i)
        for i, (first, count) in enumerate(_split(n, opts.client_procs))
    ]
    readers = [asyncio.create_task(_read_events(c)) for c in clients]
    try:
        await _ramp(clients, n, opts, label, log)
        step.chargers_per_worker = dict(
            sorted(Counter((await _presence_holders(opts.redis_url, prefix)).values()).items())
        )
        booted = sum(c.booted for c in clients)
        log(
            f"[{label}] {booted}/{n} booted, per worker {step.chargers_per_worker}; "
            f"measuring {window_s:g} s at {n / period_s:g} MeterValues/s"
        )
        before = await meter.read()
        await _go(clients)
        await _window(clients, window_s, opts, label, log)
        after = await meter.read()
        _fill_usage(step, before, after)
        for w in cluster.workers:
            if w.pid is not None and w.alive:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    step.worker_rss_mb[w.worker_id] = round(memory_mb(w.pid)[0], 1)
        deadline = opts.call_timeout_s + CLIENT_EXIT_SLACK_S
        try:
            async with asyncio.timeout(deadline):
                await asyncio.gather(*(c.proc.wait() for c in clients))
        except TimeoutError:
            step.notes.append(f"a load client did not finish within {deadline:.0f} s: killed")
    finally:
        for c in clients:
            await _stop(c.proc, 5.0)
        await asyncio.gather(*readers, return_exceptions=True)
    _merge(clients, step, load, workdir)
    dead = [w.worker_id for w in cluster.workers if not w.alive]
    if dead:
        step.notes.append(f"worker(s) exited: {', '.join(dead)}")
    step.sustained = _sustained(step, opts)
    return step


async def _ramp(
    clients: list[ClientProcess], n: int, opts: ScaleOptions, label: str, log: Log
) -> None:
    deadline = time.monotonic() + opts.ramp_timeout_s + 15.0
    next_print = time.monotonic() + opts.progress_every_s
    while time.monotonic() < deadline:
        if all(c.ready or c.proc.returncode is not None for c in clients):
            return
        if time.monotonic() >= next_print:
            log(f"[{label}] ramp-up: {sum(c.booted for c in clients)}/{n} connected and booted")
            next_print += opts.progress_every_s
        await asyncio.sleep(POLL_S)


async def _go(clients: list[ClientProcess]) -> None:
    for c in clients:
        if c.proc.stdin is not None and c.proc.returncode is None:
            with contextlib.suppress(ConnectionError):
                c.proc.stdin.write(b"go\n")
                await c.proc.stdin.drain()


async def _window(
    clients: list[ClientProcess], window_s: float, opts: ScaleOptions, label: str, log: Log
) -> None:
    start = time.monotonic()
    next_print = start + opts.progress_every_s
    while (elapsed := time.monotonic() - start) < window_s:
        await asyncio.sleep(min(SAMPLE_EVERY_S, window_s - elapsed))
        left = window_s - (time.monotonic() - start)
        if time.monotonic() >= next_print and left >= 1.0:
            answered = sum(c.answered for c in clients)
            log(f"[{label}] {left:.0f} s left, {answered} calls answered so far")
            next_print += opts.progress_every_s


def _merge(
    clients: list[ClientProcess], step: StepResult, load: LoadOptions, workdir: Path
) -> None:
    """The load clients' results (ocpp_load's merge), plus p95."""
    case = CaseResult("cluster", step.n, step.period_s, step.offered_per_s)
    _merge_client_results(clients, case, load, workdir)
    step.held = case.held
    step.connect_failures = case.connect_failures
    step.ramp_s = case.ramp_s
    step.sent = case.sent
    step.answered = case.answered
    step.answered_per_s = case.answered_per_s
    step.p50_ms, step.p99_ms, step.max_ms = case.p50_ms, case.p99_ms, case.max_ms
    step.call_errors, step.timeouts, step.skipped = case.call_errors, case.timeouts, case.skipped
    if case.client_cpu_pct is not None:
        step.client_cpu_s = case.client_cpu_pct * load.duration_s / 100.0
    step.notes.extend(case.notes)
    latencies: list[float] = []
    for c in clients:
        with contextlib.suppress(OSError, ValueError, KeyError):
            latencies.extend(json.loads(c.out_file.read_text())["latencies_ms"])
    step.p95_ms = percentile(sorted(latencies), 95)


def _sustained(step: StepResult, opts: ScaleOptions) -> bool:
    return (
        step.held == step.n
        and step.call_errors == 0
        and step.timeouts == 0
        and step.p99_ms is not None
        and step.p99_ms <= opts.max_p99_ms
        and step.answered_per_s >= SUSTAINED_SHARE * step.offered_per_s
    )


async def run_scale(workers: int, opts: ScaleOptions, log: Log) -> ScaleRun:
    """One cluster of W workers: the fixed-rate window, then (``find_max``) the rate steps."""
    label = f"W={workers}"
    t0 = time.monotonic()
    async with running_cluster(opts, workers, label, log) as (cluster, db_url, prefix):
        started = time.monotonic() - t0
        with tempfile.TemporaryDirectory(prefix="cluster_scale_clients_") as tmp:
            workdir = Path(tmp)
            base = await load_step(
                cluster,
                db_url,
                prefix,
                opts.n,
                opts.period_s,
                opts.duration_s,
                opts,
                workdir / "base",
                label,
                log,
            )
            run = ScaleRun(workers, base, start_s=started)
            log(format_steps([base]))
            if opts.find_max:
                await _find_max(run, cluster, db_url, prefix, opts, workdir, log)
        run.worker_log_errors = _error_lines(cluster)
    sustained = [s.answered_per_s for s in [run.base, *run.steps] if s.sustained]
    run.max_sustained_per_s = max(sustained) if sustained else None
    return run


async def _find_max(
    run: ScaleRun,
    cluster: Cluster,
    db_url: str,
    prefix: str,
    opts: ScaleOptions,
    workdir: Path,
    log: Log,
) -> None:
    """Step the rate up from the base until a step is not sustained (down if the base was not)."""
    label = f"W={run.workers}"
    up = run.base.sustained
    rate = run.base.offered_per_s
    for k in range(1, 30):
        rate = rate * opts.max_step if up else rate / opts.max_step
        if rate > opts.max_rate or (not up and k > 4):
            break
        log(f"[{label}] find-max step {k}: {rate:.0f} MeterValues/s offered")
        step = await load_step(
            cluster,
            db_url,
            prefix,
            opts.n,
            opts.n / rate,
            opts.max_window_s,
            opts,
            workdir / f"step{k}",
            f"{label} {rate:.0f}/s",
            log,
        )
        run.steps.append(step)
        log(format_steps([step]))
        if step.sustained != up or step.held < opts.n // 2:
            break


async def run_scaling(opts: ScaleOptions, log: Log = print) -> list[ScaleRun]:
    """Every W in turn; a cluster that does not start is reported and skipped."""
    runs: list[ScaleRun] = []
    for workers in opts.workers:
        try:
            runs.append(await run_scale(workers, opts, log))
        except (ClusterError, OSError, RuntimeError) as exc:
            log(f"[W={workers}] failed: {type(exc).__name__}: {str(exc)[:500]}")
            empty = StepResult(workers, opts.n, opts.period_s, opts.n / opts.period_s, 0.0)
            runs.append(ScaleRun(workers, empty, notes=[f"failed: {str(exc)[:300]}"]))
    first = next((r for r in runs if r.base.answered_per_s > 0), None)
    for r in runs:
        if first is not None and r.base.answered_per_s > 0:
            r.scaling = r.base.answered_per_s / first.base.answered_per_s
        if first is not None and first.max_sustained_per_s and r.max_sustained_per_s:
            r.max_scaling = r.max_sustained_per_s / first.max_sustained_per_s
    return runs


# --- part 2: failover --------------------------------------------------------------------------


@dataclass
class _Traffic:
    """MeterValues from every charger of a StormFleet, counted from the chargers' view."""

    fleet: StormFleet
    period_s: float
    seed: int
    sent: int = 0
    answered: int = 0
    errors: int = 0
    lost_closed: int = 0
    lost_timeout: int = 0
    not_sent: int = 0
    in_flight: int = 0
    stopping: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        rng = random.Random(self.seed)
        t0 = time.monotonic()
        self.tasks = [
            asyncio.create_task(self._drive(c, t0 + rng.uniform(0.0, self.period_s)))
            for c in self.fleet.chargers
        ]

    async def stop(self, timeout_s: float) -> None:
        """No new calls; calls in flight get ``timeout_s`` to be answered."""
        self.stopping = True
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _drive(self, c: StormCharger, due: float) -> None:
        energy = 1000.0 * c.index
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if self.stopping:
                return
            due += self.period_s
            if c.ws is None:
                self.not_sent += 1
                continue
            energy += 3.0
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            payload = (
                '{"connectorId":1,"meterValue":[{"timestamp":"' + stamp + '","sampledValue":['
                '{"value":"' + f"{energy:.1f}" + '","measurand":"Energy.Active.Import.Register",'
                '"unit":"Wh"}]}]}'
            )
            self.sent += 1
            self.in_flight += 1
            try:
                answer = await self.fleet._call(c, "MeterValues", payload)
            except ConnectionError:
                self.lost_closed += 1
                continue
            except TimeoutError:
                self.lost_timeout += 1
                continue
            finally:
                self.in_flight -= 1
            if answer[0] == CALLRESULT:
                self.answered += 1
            else:
                self.errors += 1


async def _until(
    what: str, check: Callable[[], Awaitable[bool]], timeout_s: float, log: Log, label: str
) -> bool:
    deadline = time.monotonic() + timeout_s
    next_print = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if await check():
            return True
        if time.monotonic() >= next_print:
            log(f"[{label}] waiting: {what}")
            next_print += 5.0
        await asyncio.sleep(POLL_S)
    return False


async def run_failover(opts: ScaleOptions, log: Log = print) -> FailoverResult:
    """N chargers on a cluster, then the worker leading most sites killed; see the docstring."""
    n, workers = opts.chargers_in_failover, opts.failover_workers
    result = FailoverResult(
        workers, n, opts.sites, opts.failover_period_s, opts.lease_ttl_s, opts.presence_ttl_s
    )
    label = f"failover W={workers}"
    sites = site_ids(opts.sites)
    async with running_cluster(opts, workers, "failover", log) as (cluster, _db, prefix):
        fleet = StormFleet(
            cluster.ocpp_url,
            n,
            password=None,
            open_timeout_s=30.0,
            call_timeout_s=opts.call_timeout_s,
            seed=opts.seed,
            prefix="failover",
        )
        traffic = _Traffic(fleet, opts.failover_period_s, opts.seed)
        try:
            await _failover(result, cluster, fleet, traffic, prefix, sites, opts, label, log)
        finally:
            if not traffic.stopping:
                await traffic.stop(0.0)
            await fleet.close()
            result.worker_log_errors = _error_lines(cluster)
    return result


async def _failover(
    result: FailoverResult,
    cluster: Cluster,
    fleet: StormFleet,
    traffic: _Traffic,
    prefix: str,
    sites: list[str],
    opts: ScaleOptions,
    label: str,
    log: Log,
) -> None:
    n, redis_url = result.n, opts.redis_url
    t0 = time.monotonic()
    connecting = asyncio.create_task(fleet.connect_all(opts.connect_concurrency))

    async def all_up() -> bool:
        return len(fleet.back_since(t0)) == n

    try:
        if not await _until(f"{n} chargers to connect", all_up, opts.ramp_timeout_s, log, label):
            result.notes.append(f"only {len(fleet.back_since(t0))}/{n} connected in time")
    finally:
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
    result.ramp_s = time.monotonic() - t0
    result.held_before = fleet.connected()

    share = -(-len(sites) // len(cluster.workers))  # what LeaseKeeper deems fair

    async def settled() -> bool:
        holders = await _presence_holders(redis_url, prefix)
        leases = await _lease_holders(redis_url, prefix, sites)
        spread = max(Counter(leases.values()).values(), default=0) <= share
        return len(holders) == n and len(leases) == len(sites) and spread

    # The first worker to start takes every site; the others get theirs as it hands them on
    # (one per lease tick, after it has held them for a while): tens of seconds.
    if not await _until("the sites' leases to spread out", settled, 120.0, log, label):
        result.notes.append("the leases were not spread fairly before the kill")
    log(f"[{label}] {result.held_before}/{n} connected in {result.ramp_s:.1f} s; traffic on")
    traffic.start()
    await asyncio.sleep(opts.failover_warmup_s)

    leases = await _lease_holders(redis_url, prefix, sites)
    holders = await _presence_holders(redis_url, prefix)
    ids = [w.worker_id for w in cluster.workers]
    result.leases_before = {w: sum(1 for v in leases.values() if v == w) for w in ids}
    result.chargers_before = {w: sum(1 for v in holders.values() if v == w) for w in ids}
    victim = max(
        cluster.workers,
        key=lambda w: (result.leases_before[w.worker_id], result.chargers_before[w.worker_id]),
    )
    result.victim = victim.worker_id
    result.victim_leases = result.leases_before[victim.worker_id]
    result.victim_chargers = result.chargers_before[victim.worker_id]
    survivors = {w for w in ids if w != victim.worker_id}
    failures0 = fleet.failures()
    log(
        f"[{label}] leases {result.leases_before}, chargers {result.chargers_before}; "
        f"killing {victim.worker_id} (SIGKILL)"
    )
    killed = time.monotonic()
    await asyncio.to_thread(cluster.kill_worker, victim.index)
    await _watch_failover(result, fleet, killed, survivors, prefix, sites, opts, label, log)
    result.reconnect_failures = fleet.failures() - failures0
    await asyncio.sleep(2.0)  # calls made just after the last reconnect get answered
    await traffic.stop(opts.call_timeout_s + 1.0)
    result.calls_sent = traffic.sent
    result.calls_answered = traffic.answered
    result.calls_errors = traffic.errors
    result.calls_lost = traffic.lost_closed + traffic.lost_timeout
    result.calls_lost_timeout = traffic.lost_timeout
    result.ticks_while_disconnected = traffic.not_sent
    leases = await _lease_holders(redis_url, prefix, sites)
    holders = await _presence_holders(redis_url, prefix)
    result.leases_after = dict(sorted(Counter(leases.values()).items()))
    result.chargers_after = dict(sorted(Counter(holders.values()).items()))


async def _watch_failover(
    result: FailoverResult,
    fleet: StormFleet,
    killed: float,
    survivors: set[str],
    prefix: str,
    sites: list[str],
    opts: ScaleOptions,
    label: str,
    log: Log,
) -> None:
    """Poll until the chargers are back, presence names survivors and leases are theirs."""
    deadline = killed + opts.failover_timeout_s
    next_print = killed + 5.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        dropped = [c for c in fleet.chargers if c.dropped_at is not None and c.dropped_at >= killed]
        back = [c for c in dropped if c.back_at is not None and c.back_at > (c.dropped_at or 0)]
        all_back = dropped and len(back) == len(dropped) and fleet.connected() == result.n
        if result.chargers_back_s is None and all_back:
            times = sorted((c.back_at or now) - killed for c in back)
            result.dropped = len(dropped)
            result.chargers_back_s = times[-1]
            result.chargers_back_p50_s = percentile(times, 50)
            log(f"[{label}] all {len(dropped)} dropped chargers back after {times[-1]:.1f} s")
        holders = await _presence_holders(opts.redis_url, prefix)
        if (
            result.presence_moved_s is None
            and len(holders) == result.n
            and set(holders.values()) <= survivors
        ):
            result.presence_moved_s = time.monotonic() - killed
            log(
                f"[{label}] every presence key names a survivor after {result.presence_moved_s:.1f} s"
            )
        leases = await _lease_holders(opts.redis_url, prefix, sites)
        if (
            result.leadership_moved_s is None
            and len(leases) == len(sites)
            and set(leases.values()) <= survivors
        ):
            result.leadership_moved_s = time.monotonic() - killed
            log(f"[{label}] every lease held by a survivor after {result.leadership_moved_s:.1f} s")
        if None not in (result.chargers_back_s, result.presence_moved_s, result.leadership_moved_s):
            return
        if now >= next_print:
            log(
                f"[{label}] {now - killed:.0f} s after the kill: {len(back)}/{len(dropped)} "
                f"dropped chargers back, {len(leases)}/{len(sites)} leases held"
            )
            next_print += 5.0
        await asyncio.sleep(POLL_S)
    result.dropped = result.dropped or sum(
        1 for c in fleet.chargers if c.dropped_at is not None and c.dropped_at >= killed
    )
    result.notes.append(f"not everything moved within {opts.failover_timeout_s:g} s")


# --- part 3: the presence scripts on many chargers ---------------------------------------------


async def run_redis_probe(redis_url: str, n: int, workers: int, log: Log = print) -> RedisProbe:
    """Time the presence refresh and directory sync of ``csms.cluster.presence`` on N synthetic
    chargers shared by W workers (keys under a throwaway prefix, deleted afterwards)."""
    from csms.cluster.node import connect
    from csms.cluster.presence import Claim, Presence, PresenceDirectory
    from csms.cluster.settings import ClusterSettings

    probe = RedisProbe(n, workers)
    prefix = f"bench-probe-{secrets.token_hex(4)}:"
    ids = [f"worker-{k + 1}" for k in range(workers)]
    settings = [
        ClusterSettings(redis_url=redis_url, worker_id=w, key_prefix=prefix, presence_ttl_s=600.0)
        for w in ids
    ]
    client = connect(settings[0])
    presences = [Presence(client, s) for s in settings]
    claims: dict[str, list[Claim]] = {w: [] for w in ids}
    try:
        log(f"[redis probe] seeding {n} presence keys over {workers} workers")
        for start in range(0, n, 1000):
            async with client.pipeline(transaction=False) as pipe:
                for i in range(start, min(n, start + 1000)):
                    p = presences[i % workers]
                    claim = Claim(f"CP{i:06d}", p.worker_id, secrets.token_hex(8))
                    claims[p.worker_id].append(claim)
                    pipe.set(p.keys.presence(claim.charge_point_id), claim.value, px=600_000)
                    pipe.sadd(p.keys.chargers(p.worker_id), claim.charge_point_id)
                await pipe.execute()
        for p in presences:
            await p.heartbeat()  # live: the directory reads live workers only
        before = await _redis_counters(redis_url)
        t0 = time.perf_counter()
        for p in presences:
            lost = await p.refresh(claims[p.worker_id])
            if lost:
                probe.notes.append(f"{len(lost)} claims of {p.worker_id} did not refresh")
        probe.refresh_wall_s = time.perf_counter() - t0
        middle = await _redis_counters(redis_url)
        directory = PresenceDirectory(presences[0])
        t0 = time.perf_counter()
        await directory.sync()  # what every worker does on its own schedule
        probe.sync_wall_s = time.perf_counter() - t0
        after = await _redis_counters(redis_url)
        if len(directory.snapshot()) != n:
            probe.notes.append(f"the sync found {len(directory.snapshot())} of {n} chargers")
        probe.refresh_calls = int(_delta(before, middle, "cmd:evalsha"))
        probe.refresh_in_bytes = int(_delta(before, middle, "in_bytes"))
        if probe.refresh_calls:
            usec = _delta(before, middle, "usec:evalsha")
            probe.refresh_server_ms_per_call = usec / probe.refresh_calls / 1000.0
        probe.sync_calls = int(_delta(middle, after, "commands"))
        probe.sync_out_bytes = int(_delta(middle, after, "out_bytes"))
        probe.sync_server_ms = (
            sum(_delta(middle, after, k) for k in after if k.startswith("usec:")) / 1000.0
        )
    finally:
        await client.aclose()
        await _delete_prefix(redis_url, prefix)
    return probe


# --- reporting ---------------------------------------------------------------------------------


def _f(value: float | None, digits: int | None = None) -> str:
    if value is None:
        return "—"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _cpu_list(step: StepResult) -> str:
    return " / ".join(f"{v:.1f}" for v in step.worker_cpu_s.values()) or "—"


STEP_COLUMNS = (
    "W",
    "N",
    "offered/s",
    "held",
    "ramp s",
    "msgs/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "max ms",
    "err/timeout/skip",
    "worker CPU s",
    "nginx CPU s",
    "PG CPU s",
    "Redis CPU s",
    "client CPU s",
    "machine CPU %",
)


def _step_cells(s: StepResult) -> list[str]:
    return [
        str(s.workers),
        str(s.n),
        _f(s.offered_per_s),
        str(s.held),
        _f(s.ramp_s),
        _f(s.answered_per_s),
        _f(s.p50_ms),
        _f(s.p95_ms),
        _f(s.p99_ms),
        _f(s.max_ms),
        f"{s.call_errors}/{s.timeouts}/{s.skipped}",
        _cpu_list(s),
        _f(s.nginx_cpu_s),
        _f(s.postgres_cpu_s),
        _f(s.redis_cpu_s),
        _f(s.client_cpu_s),
        _f(s.machine_cpu_pct),
    ]


def _plain(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    table = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def format_steps(steps: Sequence[StepResult]) -> str:
    """Load windows as a plain table."""
    text = _plain(STEP_COLUMNS, [_step_cells(s) for s in steps])
    notes = [f"  W={s.workers} {s.offered_per_s:.0f}/s: {n}" for s in steps for n in s.notes]
    return "\n".join([text, *notes])


SUMMARY_COLUMNS = (
    "W",
    "msgs/s at the fixed rate",
    "scaling",
    "max sustained msgs/s",
    "max scaling",
    "chargers per worker",
    "worker RSS MB",
    "Redis cmds/s",
    "Redis in/out KB/s",
    "PG commits/s",
    "PG rows inserted/s",
    "WAL KB/s",
    "worker log errors",
)


def _summary_cells(r: ScaleRun) -> list[str]:
    b = r.base
    per_worker = " / ".join(str(v) for v in b.chargers_per_worker.values()) or "—"
    kb_in = None if b.redis_in_bytes_per_s is None else b.redis_in_bytes_per_s / 1000
    kb_out = None if b.redis_out_bytes_per_s is None else b.redis_out_bytes_per_s / 1000
    wal = None if b.pg_wal_bytes_per_s is None else b.pg_wal_bytes_per_s / 1000
    return [
        str(r.workers),
        _f(b.answered_per_s),
        _f(r.scaling, 2),
        _f(r.max_sustained_per_s),
        _f(r.max_scaling, 2),
        per_worker,
        " / ".join(f"{v:.0f}" for v in b.worker_rss_mb.values()) or "—",
        _f(b.redis_commands_per_s),
        f"{_f(kb_in)} / {_f(kb_out)}",
        _f(b.pg_commits_per_s),
        _f(b.pg_inserted_per_s),
        _f(wal),
        str(r.worker_log_errors),
    ]


def format_scaling(runs: Sequence[ScaleRun]) -> str:
    """Every W: the fixed-rate windows, the find-max steps and the summary (plain text)."""
    parts = ["fixed rate:", format_steps([r.base for r in runs])]
    steps = [s for r in runs for s in r.steps]
    if steps:
        parts += ["find-max steps:", format_steps(steps)]
    parts += ["summary:", _plain(SUMMARY_COLUMNS, [_summary_cells(r) for r in runs])]
    parts += [f"  W={r.workers}: {n}" for r in runs for n in r.notes]
    return "\n".join(parts)


FAILOVER_ROWS: tuple[tuple[str, Callable[[FailoverResult], str]], ...] = (
    ("workers / chargers / sites", lambda r: f"{r.workers} / {r.n} / {r.sites}"),
    ("MeterValues per charger every", lambda r: f"{r.period_s:g} s"),
    ("lease TTL / presence TTL", lambda r: f"{r.lease_ttl_s:g} s / {r.presence_ttl_s:g} s"),
    ("connected before the kill (ramp)", lambda r: f"{r.held_before} ({r.ramp_s:.1f} s)"),
    ("leases per worker before", lambda r: _counts(r.leases_before)),
    ("chargers per worker before", lambda r: _counts(r.chargers_before)),
    (
        "killed (SIGKILL)",
        lambda r: f"{r.victim}: {r.victim_leases} leases, {r.victim_chargers} chargers",
    ),
    ("chargers dropped", lambda r: str(r.dropped)),
    (
        "chargers back (connected + booted), p50 / all",
        lambda r: f"{_f(r.chargers_back_p50_s, 1)} s / **{_f(r.chargers_back_s, 1)} s**",
    ),
    ("every presence key on a survivor", lambda r: f"{_f(r.presence_moved_s, 1)} s"),
    (
        "leadership moved (every lease on a survivor)",
        lambda r: f"**{_f(r.leadership_moved_s, 1)} s**",
    ),
    ("failed reconnect attempts", lambda r: str(r.reconnect_failures)),
    (
        "calls sent / answered / errors",
        lambda r: f"{r.calls_sent} / {r.calls_answered} / {r.calls_errors}",
    ),
    (
        "calls lost (never answered; of them timeouts)",
        lambda r: f"**{r.calls_lost}** ({r.calls_lost_timeout})",
    ),
    ("ticks while disconnected (not sent)", lambda r: str(r.ticks_while_disconnected)),
    ("leases per worker after", lambda r: _counts(r.leases_after)),
    ("chargers per worker after", lambda r: _counts(r.chargers_after)),
    ("worker log errors", lambda r: str(r.worker_log_errors)),
)


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "—"


def format_failover(r: FailoverResult, markdown: bool = False) -> str:
    """The failover figures, one per line (or a two-column Markdown table)."""
    rows = [(name, cell(r)) for name, cell in FAILOVER_ROWS]
    if markdown:
        lines = ["| figure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
        lines += [f"\n- {n}" for n in r.notes]
        return "\n".join(lines)
    width = max(len(a) for a, _ in rows)
    lines = [f"  {a.ljust(width)}  {b.replace('**', '')}" for a, b in rows]
    return "\n".join(["failover:", *lines, *(f"  note: {n}" for n in r.notes)])


def format_probe(p: RedisProbe, markdown: bool = False) -> str:
    """The Redis probe's figures."""
    rows = [
        ("chargers / workers", f"{p.n} / {p.workers}"),
        (
            "refresh of every claim: script calls, wall s, server ms per call, bytes in",
            f"{p.refresh_calls}, {p.refresh_wall_s:.2f} s, "
            f"{_f(p.refresh_server_ms_per_call, 2)} ms, {p.refresh_in_bytes / 1e6:.2f} MB",
        ),
        (
            "one directory sync of one worker: Redis commands, wall s, server ms, bytes out",
            f"{p.sync_calls}, {p.sync_wall_s:.2f} s, "
            f"{_f(p.sync_server_ms, 1)} ms, {p.sync_out_bytes / 1e6:.2f} MB",
        ),
    ]
    if markdown:
        return "\n".join(["| figure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])
    return "\n".join(["redis probe:", *(f"  {a}: {b}" for a, b in rows)])


def format_markdown(
    opts: ScaleOptions,
    runs: Sequence[ScaleRun],
    failover: FailoverResult | None,
    probe: RedisProbe | None,
    command: str,
) -> str:
    """Everything measured, with the machine and the command, ready for BENCHMARKS.md."""
    out = [
        f"Machine: {machine_description()}. Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "```sh",
        command,
        "```",
        "",
    ]
    if runs:
        out += [
            f"Load: {opts.n} OCPP 1.6 chargers through nginx, each booted, then one MeterValues "
            f"every {opts.period_s:g} s ({opts.n / opts.period_s:g}/s offered) for "
            f"{opts.duration_s:g} s; {opts.client_procs} load-client process(es); "
            f"{opts.sites} sites; CPU seconds over the window (*worker CPU s*: each worker).",
            "",
            _md(STEP_COLUMNS, [_step_cells(r.base) for r in runs]),
            "",
        ]
        steps = [s for r in runs for s in r.steps]
        if steps:
            out += [
                f"Find-max steps ({opts.max_window_s:g} s windows, rate x{opts.max_step:g} per "
                f"step; sustained = all held, no error or timeout, p99 <= {opts.max_p99_ms:g} ms, "
                f">= {SUSTAINED_SHARE:.0%} of the offered calls answered):",
                "",
                _md(
                    [*STEP_COLUMNS, "sustained"],
                    [[*_step_cells(s), "yes" if s.sustained else "no"] for s in steps],
                ),
                "",
            ]
        out += [_md(SUMMARY_COLUMNS, [_summary_cells(r) for r in runs]), ""]
        for r in runs:
            b = r.base
            out.append(
                f"- W={r.workers}: Redis calls/s {b.redis_top_commands}; PG rows inserted in the "
                f"window by table {b.pg_inserted_by_table}"
            )
            out += [f"- W={r.workers}: {n}" for n in [*r.notes, *b.notes]]
        out.append("")
    if failover is not None:
        out += [format_failover(failover, markdown=True), ""]
    if probe is not None:
        out += [format_probe(probe, markdown=True), ""]
    return "\n".join(out)


def to_json(
    opts: ScaleOptions,
    runs: Sequence[ScaleRun],
    failover: FailoverResult | None,
    probe: RedisProbe | None,
) -> str:
    """Every result, raw."""
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    return json.dumps(
        {
            "machine": machine_description(),
            "measured": datetime.now(UTC).isoformat(),
            "options": options,
            "scaling": [asdict(r) for r in runs],
            "failover": None if failover is None else asdict(failover),
            "redis_probe": None if probe is None else asdict(probe),
        },
        indent=1,
    )


# --- command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster_scale",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Cluster scale-out benchmark (issue #8): OCPP load through nginx on clusters of 1, 2,\n"
            "3... workers (throughput, latency, CPU per process, scaling ratio), then a worker\n"
            "killed under load (chargers back, leadership moved, calls lost). Needs nginx,\n"
            "PostgreSQL and Redis; every run gets a fresh database and Redis key prefix."
        ),
        epilog=(
            "examples:\n"
            "  python -m benchmarks.cluster_scale                        # W=1,2,3, N=1000, 60 s\n"
            "  python -m benchmarks.cluster_scale --find-max --markdown out/scale.md\n"
            "  python -m benchmarks.cluster_scale --workers 2 --n 50 --duration 5 --no-failover"
        ),
    )
    g = p.add_argument_group("scaling")
    g.add_argument("--workers", default="1,2,3", help="cluster sizes, comma-separated (1,2,3)")
    g.add_argument("--n", type=int, default=1000, help="chargers (1000)")
    g.add_argument(
        "--period", type=float, default=2.0, help="s between two MeterValues of a charger (2)"
    )
    g.add_argument("--duration", type=float, default=60.0, help="measurement window, s (60)")
    g.add_argument("--no-scaling", action="store_true", help="skip the scaling part")
    g.add_argument(
        "--find-max", action="store_true", help="also step the rate up to the saturation point"
    )
    g.add_argument("--max-window", type=float, default=20.0, help="window per find-max step (20)")
    g.add_argument("--max-step", type=float, default=1.5, help="rate factor per step (1.5)")
    g.add_argument("--max-rate", type=float, default=10000.0, help="highest rate tried (10000)")
    g.add_argument("--max-p99-ms", type=float, default=1000.0, help="p99 still sustained (1000)")
    g.add_argument("--client-procs", type=int, default=1, help="load-client processes (1)")
    g.add_argument("--call-timeout", type=float, default=10.0, help="s before a call times out")
    g.add_argument("--ramp-timeout", type=float, default=300.0, help="s allowed for ramp-up")
    g.add_argument(
        "--connect-concurrency", type=int, default=50, help="handshakes in flight per client"
    )
    f = p.add_argument_group("failover")
    f.add_argument("--no-failover", action="store_true", help="skip the failover part")
    f.add_argument("--failover-workers", type=int, default=3, help="workers (3)")
    f.add_argument("--failover-n", type=int, help="chargers (default: --n)")
    f.add_argument("--failover-period", type=float, default=10.0, help="s between MeterValues (10)")
    f.add_argument("--failover-warmup", type=float, default=10.0, help="s of load before the kill")
    f.add_argument(
        "--failover-timeout", type=float, default=180.0, help="s allowed after the kill (180)"
    )
    f.add_argument("--sites", type=int, default=6, help="sites created before the start (6)")
    c = p.add_argument_group("cluster")
    c.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"a PostgreSQL server: a fresh database is made on it per run ({DEFAULT_DATABASE_URL})",
    )
    c.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help=f"Redis ({DEFAULT_REDIS_URL})")
    c.add_argument("--lease-ttl", type=float, default=10.0, help="CSMS_CLUSTER__LEASE_TTL_S (10)")
    c.add_argument(
        "--presence-ttl", type=float, default=15.0, help="CSMS_CLUSTER__PRESENCE_TTL_S (15)"
    )
    c.add_argument("--nginx", help="the nginx binary (default: on PATH or /usr/sbin/nginx)")
    c.add_argument(
        "--csms-log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--redis-probe",
        type=int,
        default=0,
        metavar="N",
        help="also time the presence scripts on N synthetic chargers (0: no)",
    )
    o.add_argument(
        "--redis-probe-workers",
        type=int,
        help="workers the probe's chargers are shared by (default: the largest --workers)",
    )
    o.add_argument("--markdown", type=Path, help="write the results as Markdown here")
    o.add_argument("--json", type=Path, help="write every result (JSON) here")
    o.add_argument("--log-dir", type=Path, help="keep every worker's and nginx's logs here")
    o.add_argument("--seed", type=int, default=1, help="seed of the start offsets (1)")
    o.add_argument("--progress-every", type=float, default=5.0, help="s between progress lines")
    return p


def _workers(text: str) -> tuple[int, ...] | None:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        return None
    return values if values and all(v >= 1 for v in values) else None


def options_from(args: argparse.Namespace) -> ScaleOptions | str:
    """Options, or a one-line error."""
    workers = _workers(args.workers)
    if workers is None:
        return f"--workers takes positive integers, comma-separated (got {args.workers!r})"
    positive = {
        "--n": args.n,
        "--period": args.period,
        "--duration": args.duration,
        "--max-window": args.max_window,
        "--max-rate": args.max_rate,
        "--max-p99-ms": args.max_p99_ms,
        "--client-procs": args.client_procs,
        "--call-timeout": args.call_timeout,
        "--ramp-timeout": args.ramp_timeout,
        "--connect-concurrency": args.connect_concurrency,
        "--failover-period": args.failover_period,
        "--failover-timeout": args.failover_timeout,
        "--presence-ttl": args.presence_ttl,
        "--progress-every": args.progress_every,
    }
    bad = [name for name, value in positive.items() if not value > 0]
    if bad:
        return f"{', '.join(bad)} must be positive"
    if args.failover_n is not None and args.failover_n < 1:
        return "--failover-n must be positive"
    if args.max_step <= 1:
        return "--max-step must be above 1"
    if args.lease_ttl <= 2:
        return "--lease-ttl must be above 2 s (the workers' fence margin is 1 s, under half of it)"
    if args.redis_probe_workers is not None and args.redis_probe_workers < 1:
        return "--redis-probe-workers must be positive"
    if args.sites < 0 or args.failover_warmup < 0 or args.redis_probe < 0:
        return "--sites, --failover-warmup and --redis-probe cannot be negative"
    failover = not args.no_failover
    if failover and args.failover_workers < 2:
        return "--failover-workers must be at least 2 (one is killed, one takes over)"
    if failover and args.sites < 1:
        return "the failover part needs --sites of at least 1 (leadership is what moves)"
    if args.no_scaling and not failover and not args.redis_probe:
        return "nothing to do: --no-scaling and --no-failover without --redis-probe"
    if args.database_url.split("://", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres"):
        return f"--database-url {redact(args.database_url)}: the cluster needs PostgreSQL"
    return ScaleOptions(
        workers=workers,
        n=args.n,
        period_s=args.period,
        duration_s=args.duration,
        database_url=args.database_url,
        redis_url=args.redis_url,
        client_procs=args.client_procs,
        call_timeout_s=args.call_timeout,
        ramp_timeout_s=args.ramp_timeout,
        connect_concurrency=args.connect_concurrency,
        sites=args.sites,
        lease_ttl_s=args.lease_ttl,
        presence_ttl_s=args.presence_ttl,
        scaling=not args.no_scaling,
        find_max=args.find_max,
        max_window_s=args.max_window,
        max_step=args.max_step,
        max_rate=args.max_rate,
        max_p99_ms=args.max_p99_ms,
        failover=failover,
        failover_workers=args.failover_workers,
        failover_n=args.failover_n,
        failover_period_s=args.failover_period,
        failover_warmup_s=args.failover_warmup,
        failover_timeout_s=args.failover_timeout,
        redis_probe_n=args.redis_probe,
        redis_probe_workers=args.redis_probe_workers or max(workers),
        csms_log_level=args.csms_log_level,
        nginx=args.nginx,
        seed=args.seed,
        progress_every_s=args.progress_every,
        log_dir=args.log_dir,
    )


def prerequisite_problems(opts: ScaleOptions) -> list[str]:
    """What stops a cluster of the largest size from starting (deploy.cluster's checks)."""
    sizes = [*(opts.workers if opts.scaling else ()), *([opts.failover_workers] * opts.failover)]
    if not sizes:
        return []
    spec = cluster_spec(opts, max(sizes), opts.database_url, "bench-check:", Path("."))
    return check_prerequisites(spec)


async def run_all(
    opts: ScaleOptions, log: Log = print
) -> tuple[list[ScaleRun], FailoverResult | None, RedisProbe | None]:
    """The parts asked for, in turn."""
    runs = await run_scaling(opts, log) if opts.scaling else []
    if runs:
        log("\n" + format_scaling(runs))
    failover: FailoverResult | None = None
    if opts.failover:
        try:
            failover = await run_failover(opts, log)
            log(format_failover(failover))
        except (ClusterError, OSError, RuntimeError) as exc:
            log(f"[failover] failed: {type(exc).__name__}: {str(exc)[:500]}")
    probe: RedisProbe | None = None
    if opts.redis_probe_n:
        probe = await run_redis_probe(
            opts.redis_url, opts.redis_probe_n, opts.redis_probe_workers, log
        )
        log(format_probe(probe))
    return runs, failover, probe


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 when done, 1 if a prerequisite is missing, 2 on bad options."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    opts = options_from(args)
    if isinstance(opts, str):
        print(f"error: {opts}", file=sys.stderr)
        return 2
    problems = prerequisite_problems(opts)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    soft, _hard = raise_open_file_limit()
    biggest = max(opts.n, opts.chargers_in_failover)
    if soft < 2 * biggest + 500:
        print(f"warning: open-file limit {soft} is low for N={biggest}", file=sys.stderr)
    if biggest > NGINX_CHARGERS:
        print(
            f"warning: nginx is configured for about {NGINX_CHARGERS} chargers "
            "(deploy/nginx.conf.template: worker_connections)",
            file=sys.stderr,
        )
    print(f"machine: {machine_description()}; open-file limit {soft}", flush=True)

    def log(line: str) -> None:  # progress lines get the time; tables are printed as they are
        print(line if "\n" in line else f"{datetime.now():%H:%M:%S} {line}", flush=True)

    try:
        runs, failover, probe = asyncio.run(run_all(opts, log))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.markdown is not None:
        command = "python -m benchmarks.cluster_scale " + " ".join(argv)
        args.markdown.write_text(format_markdown(opts, runs, failover, probe, command.strip()))
        print(f"wrote {args.markdown}")
    if args.json is not None:
        args.json.write_text(to_json(opts, runs, failover, probe))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
