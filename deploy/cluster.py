"""``python -m deploy.cluster`` / ``make cluster``: a csms cluster on one machine.

N identical workers of the central system (``python -m csms``) share one PostgreSQL database and
one Redis (cluster mode: ``CSMS_CLUSTER__REDIS_URL``), behind nginx: chargers connect to nginx's
OCPP port, operators to its HTTP port, and nginx spreads both over the workers, skipping a dead
one (``deploy/nginx.conf.template`` says how and why).

The launcher checks the prerequisites (nginx, PostgreSQL, Redis, free ports), creates the database
if needed, writes ``nginx.conf`` into the run directory, starts the workers (each logs to
``<run dir>/worker-K.log``) and nginx, prints where everything is, and waits. Ctrl-C or SIGTERM
stops nginx and the workers gracefully. A worker that dies is reported, not restarted: that is the
job of the operator or of a service manager.

For tests and benchmarks the same is importable, with no output of its own::

    with Cluster(ClusterSpec(workers=2, ocpp_port=0, http_port=0, run_dir=tmp)) as cluster:
        cluster.http_url, cluster.ocpp_url, cluster.workers
        cluster.kill_worker(0)

``Cluster`` blocks while it starts and stops (seconds): from async code, call it through
``asyncio.to_thread``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).with_name("nginx.conf.template")
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/csms_cluster"
# --simulate replays a day from its morning: it needs a database without a later replay in it, so
# its own default database is made afresh on every start (as make demo does with its SQLite file).
DEFAULT_SIM_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/csms_cluster_demo"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_KEY_PREFIX = "csms-cluster:"
HOST = "127.0.0.1"  # everything listens on loopback: one machine
PASSWORD_FILE = "initial-admin-password"
NGINX_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# Characters that would break out of a quoted nginx path (or start a variable in a log path).
_NGINX_UNSAFE = set('"\\$;{}\n\r')

T = TypeVar("T")


class ClusterError(Exception):
    """The cluster cannot start: its message is for the operator, one line per problem."""


@dataclass(frozen=True)
class ClusterSpec:
    """What to run. Port 0 means a free port picked at start (tests)."""

    workers: int = 3
    ocpp_port: int = 9000
    http_port: int = 8000
    worker_ocpp_ports_from: int = 9101  # worker K listens on ..from + K - 1; 0: free ports
    worker_http_ports_from: int = 8101
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    key_prefix: str = DEFAULT_KEY_PREFIX
    run_dir: Path = Path("out/cluster")
    allow_unknown_chargers: bool = False
    accept_unknown_id_tokens: bool = False
    session_secret: str | None = None  # signs console cookies on every worker; None: random
    extra_env: Mapping[str, str] = field(default_factory=dict)  # e.g. CSMS_CLOCK__* for all
    inherit_csms_env: bool = False  # pass this process's CSMS_* variables on to the workers
    nginx: str | None = None  # nginx binary; None: found on PATH or in /usr/sbin
    python: str = sys.executable
    start_timeout_s: float = 90.0  # a cold start of several workers on 2 loaded cores
    stop_timeout_s: float = 30.0  # SIGTERM, then SIGKILL after this


@dataclass
class Worker:
    """One worker process of the cluster (``index`` 0 is ``worker-1``)."""

    index: int
    worker_id: str
    ocpp_port: int
    http_port: int
    log_path: Path
    env: dict[str, str] = field(repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def health_url(self) -> str:
        return f"http://{HOST}:{self.http_port}/api/health"


# --- pure helpers ---------------------------------------------------------------------------


def render_nginx_conf(
    run_dir: Path, ocpp_port: int, http_port: int, workers: Sequence[tuple[int, int]]
) -> str:
    """The nginx configuration for these listeners and workers ((ocpp_port, http_port) each)."""
    run_dir = run_dir.resolve()
    bad = _NGINX_UNSAFE & set(str(run_dir))
    if bad:
        raise ValueError(
            f"run directory {run_dir} contains {''.join(sorted(bad))!r}, which nginx paths "
            "cannot hold: choose another --run-dir"
        )
    if not workers:
        raise ValueError("a cluster needs at least one worker")

    def servers(ports: Sequence[int]) -> str:
        # max_fails/fail_timeout: see the template's upstream comments
        return "\n".join(f"        server {HOST}:{p} max_fails=1 fail_timeout=5s;" for p in ports)

    values = {
        "RUN_DIR": str(run_dir),
        "OCPP_PORT": str(ocpp_port),
        "HTTP_PORT": str(http_port),
        "OCPP_UPSTREAMS": servers([o for o, _ in workers]),
        "HTTP_UPSTREAMS": servers([h for _, h in workers]),
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    left = sorted(set(re.findall(r"@@[A-Z_]+@@", text)))
    if left:
        raise ValueError(f"the nginx template has placeholders the launcher does not fill: {left}")
    return text


def write_nginx_conf(
    run_dir: Path, ocpp_port: int, http_port: int, workers: Sequence[tuple[int, int]]
) -> Path:
    """Render the configuration into ``run_dir/nginx.conf`` and make nginx's temp folders."""
    conf = render_nginx_conf(run_dir, ocpp_port, http_port, workers)
    for name in NGINX_TEMP_DIRS:
        (run_dir / "nginx-temp" / name).mkdir(parents=True, exist_ok=True)
    path = run_dir / "nginx.conf"
    path.write_text(conf)
    return path


def nginx_command(nginx: str, run_dir: Path, *extra: str) -> list[str]:
    """``nginx -p RUN_DIR -c RUN_DIR/nginx.conf -e RUN_DIR/nginx-error.log EXTRA...``: every
    file nginx touches, from the first line it logs, inside the run directory."""
    run_dir = run_dir.resolve()
    return [
        nginx,
        "-p",
        f"{run_dir}/",
        "-c",
        str(run_dir / "nginx.conf"),
        "-e",
        str(run_dir / "nginx-error.log"),
        *extra,
    ]


def nginx_conf_problem(nginx: str, run_dir: Path) -> str | None:
    """What ``nginx -t`` finds wrong with ``run_dir/nginx.conf``, or None."""
    done = subprocess.run(
        nginx_command(nginx, run_dir, "-t", "-q"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()


def find_nginx(explicit: str | None = None) -> str | None:
    """The nginx binary: ``explicit``, else on PATH, else Debian's /usr/sbin/nginx (not on a
    normal user's PATH)."""
    if explicit is not None:
        return shutil.which(explicit)
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _pg_urls(database_url: str) -> tuple[str, str, str]:
    """(the database's URL for asyncpg, the maintenance database's URL, the database name)."""
    parts = urlsplit(database_url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ClusterError(
            f"--database-url {redact(database_url)}: cluster mode needs PostgreSQL "
            "(postgresql://user@host:port/db), the workers share one database"
        )
    name = parts.path.lstrip("/")
    if not name or "/" in name:
        raise ClusterError(f"--database-url {redact(database_url)}: name a database at the end")
    plain = parts._replace(scheme="postgresql")
    return urlunsplit(plain), urlunsplit(plain._replace(path="/postgres")), name


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def port_problem(port: int, host: str = HOST) -> str | None:
    """Why ``host:port`` cannot be listened on, or None (bound the way uvicorn and nginx do)."""
    if port == 0:
        return None
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = HOST) -> bool:
    """Does something accept connections on ``host:port``?"""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The status of GET ``url`` (None: no answer). Ignores any http_proxy of the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):  # URLError is an OSError
        return None


def _run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when called inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


# --- prerequisites --------------------------------------------------------------------------


async def _pg_problem(database_url: str) -> str | None:
    import asyncpg  # type: ignore[import-untyped]

    target, maintenance, _ = _pg_urls(database_url)
    how = (
        "start it (e.g. `sudo service postgresql start`) or pass --database-url "
        "postgresql://user@host:port/db"
    )
    try:
        conn = await asyncpg.connect(target, timeout=5)
    except asyncpg.InvalidCatalogNameError:
        try:  # the database does not exist yet: can we create it?
            conn = await asyncpg.connect(maintenance, timeout=5)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            return f"PostgreSQL is not reachable at {redact(maintenance)} ({exc}): {how}"
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL is not reachable at {redact(target)} ({exc}): {how}"
    await conn.close()
    return None


def _redis_problem(redis_url: str) -> str | None:
    import redis
    from redis.exceptions import RedisError

    how = (
        "start it (e.g. `sudo service redis-server start` or `redis-server --daemonize yes`) "
        "or pass --redis-url"
    )
    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3)
    except ValueError as exc:
        return f"--redis-url {redact(redis_url)}: {exc}"
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        return f"Redis is not reachable at {redact(redis_url)} ({exc}): {how}"
    finally:
        client.close()
    return None


def check_prerequisites(spec: ClusterSpec) -> list[str]:
    """Everything that stops ``spec`` from starting, one line each (empty: all is well)."""
    problems: list[str] = []
    if spec.workers < 1:
        problems.append("--workers must be at least 1")
    if not spec.key_prefix:
        problems.append("--key-prefix must not be empty")
    if find_nginx(spec.nginx) is None:
        where = spec.nginx or "nginx (on PATH and in /usr/sbin)"
        problems.append(
            f"{where} not found: install it with `sudo apt-get install nginx-light` "
            "(Debian/Ubuntu) or pass --nginx PATH"
        )
    try:
        problem = _run_async(lambda: _pg_problem(spec.database_url))
    except ClusterError as exc:
        problem = str(exc)
    if problem:
        problems.append(problem)
    problem = _redis_problem(spec.redis_url)
    if problem:
        problems.append(problem)
    ports = [
        ("--ocpp-port", "nginx's OCPP port", spec.ocpp_port),
        ("--http-port", "nginx's HTTP port", spec.http_port),
    ]
    for k in range(spec.workers if spec.worker_ocpp_ports_from else 0):
        ports.append(
            (
                "--worker-ocpp-ports-from",
                f"worker-{k + 1}'s OCPP port",
                spec.worker_ocpp_ports_from + k,
            )
        )
    for k in range(spec.workers if spec.worker_http_ports_from else 0):
        ports.append(
            (
                "--worker-http-ports-from",
                f"worker-{k + 1}'s HTTP port",
                spec.worker_http_ports_from + k,
            )
        )
    seen: dict[int, str] = {}
    for flag, what, port in ports:
        if port == 0:
            continue
        if not 0 < port < 65536:
            problems.append(f"{what} {port} is not a TCP port: choose another {flag}")
        elif port in seen:
            problems.append(f"{what} {port} is also {seen[port]}: choose another {flag}")
        elif problem := port_problem(port):
            problems.append(
                f"cannot listen on {HOST}:{port}, {what} ({problem}): choose another {flag}"
            )
        seen.setdefault(port, what)
    return problems


# --- the database ---------------------------------------------------------------------------


async def _ensure_database(database_url: str) -> bool:
    import asyncpg

    target, maintenance, name = _pg_urls(database_url)
    try:
        conn = await asyncpg.connect(target, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    conn = await asyncpg.connect(maintenance, timeout=10)
    try:
        await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
    except asyncpg.DuplicateDatabaseError:  # someone else just made it
        return False
    finally:
        await conn.close()
    return True


def ensure_database(database_url: str) -> bool:
    """Create the PostgreSQL database of ``database_url`` unless it exists (connecting to the
    server's ``postgres`` database to do so). True if it was created."""
    return _run_async(lambda: _ensure_database(database_url))


async def _drop_database(database_url: str) -> None:
    import asyncpg

    _, maintenance, name = _pg_urls(database_url)
    conn = await asyncpg.connect(maintenance, timeout=10)
    try:
        # WITH (FORCE), PostgreSQL 13+: ends the sessions a killed worker may have left behind
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


def drop_database(database_url: str) -> None:
    """Drop the PostgreSQL database of ``database_url`` if it exists (tests)."""
    _run_async(lambda: _drop_database(database_url))


async def _has_tables(database_url: str) -> bool:
    import asyncpg

    target, _, _ = _pg_urls(database_url)
    try:
        conn = await asyncpg.connect(target, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        return False
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    return bool(found)


def has_tables(database_url: str) -> bool:
    """Does the database of ``database_url`` exist with tables in it?"""
    return _run_async(lambda: _has_tables(database_url))


# --- processes ------------------------------------------------------------------------------


def _env(spec: ClusterSpec) -> dict[str, str]:
    """The environment every child starts from: this one, without CSMS_* settings unless asked
    (a developer's own must not leak into a test), unbuffered, this checkout importable."""
    env = {
        k: v for k, v in os.environ.items() if spec.inherit_csms_env or not k.startswith("CSMS_")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _popen(
    args: Sequence[str], log_path: Path, env: Mapping[str, str], mode: str
) -> subprocess.Popen[bytes]:
    """Start ``args`` with its output in ``log_path``, in a process group of its own: Ctrl-C in
    the terminal reaches the launcher only, which then stops the children in order (a worker
    that got SIGINT from the terminal and then SIGTERM from us would skip its clean shutdown)."""
    with log_path.open(mode + "b") as log:
        return subprocess.Popen(
            list(args),
            cwd=log_path.parent,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _stop_all(procs: Sequence[subprocess.Popen[bytes]], sig: int, timeout_s: float) -> None:
    """Send ``sig`` to every live process, wait up to ``timeout_s`` for all, SIGKILL the rest."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


class Cluster:
    """nginx and N workers, started and stopped together; see the module's docstring."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.run_dir = spec.run_dir.resolve()
        self.ocpp_port = spec.ocpp_port
        self.http_port = spec.http_port
        self.workers: list[Worker] = []
        self.nginx: subprocess.Popen[bytes] | None = None
        self.database_created = False
        self._session_secret = spec.session_secret or secrets.token_urlsafe(36)  # 48 chars
        self._expected_down: set[int] = set()  # workers stopped or killed on purpose
        self._reported: set[str] = set()
        self.started_at: float | None = None  # time.time() of start()

    # where things are

    @property
    def ocpp_url(self) -> str:
        """nginx's OCPP endpoint; a charger appends ``/<its id>``."""
        return f"ws://{HOST}:{self.ocpp_port}/ocpp"

    @property
    def http_url(self) -> str:
        """nginx's HTTP endpoint (API under /api, console under /console/)."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def password_file(self) -> Path:
        """Where the first start on an empty database writes the console admin's password."""
        return self.run_dir / PASSWORD_FILE

    @property
    def nginx_log(self) -> Path:
        return self.run_dir / "nginx-error.log"

    # life cycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Check, create the database if needed, start the workers and nginx; return once nginx
        answers. Raises ClusterError (everything started is stopped again)."""
        if self.nginx is not None or self.workers:
            raise ClusterError("this cluster was started already")
        self.started_at = time.time()
        problems = check_prerequisites(self.spec)
        if problems:
            raise ClusterError("\n".join(problems))
        nginx = find_nginx(self.spec.nginx)
        assert nginx is not None  # checked above
        try:
            self.database_created = ensure_database(self.spec.database_url)
            self._start(nginx)
        except BaseException:
            self.stop()
            raise

    def _start(self, nginx: str) -> None:
        spec = self.spec
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ocpp_port = spec.ocpp_port or free_port()
        self.http_port = spec.http_port or free_port()
        taken = {self.ocpp_port, self.http_port}

        def pick(base: int, k: int) -> int:
            port = base + k if base else free_port()
            while port in taken:  # the kernel may hand out a port twice: not yet bound
                port = free_port()
            taken.add(port)
            return port

        base_env = _env(spec)
        for k in range(spec.workers):
            worker_id = f"worker-{k + 1}"
            ocpp, http = pick(spec.worker_ocpp_ports_from, k), pick(spec.worker_http_ports_from, k)
            env = {**base_env, **self._worker_settings(worker_id, ocpp, http)}
            log = self.run_dir / f"{worker_id}.log"
            self.workers.append(Worker(k, worker_id, ocpp, http, log, env))
        upstreams = [(w.ocpp_port, w.http_port) for w in self.workers]
        try:
            conf = write_nginx_conf(self.run_dir, self.ocpp_port, self.http_port, upstreams)
        except ValueError as exc:
            raise ClusterError(str(exc)) from None
        problem = nginx_conf_problem(nginx, self.run_dir)
        if problem:
            raise ClusterError(f"nginx rejects {conf}: {problem}")
        # The first worker alone: it migrates the schema and, on an empty database, creates the
        # console admin. Workers starting together would race for both.
        first, *others = self.workers
        self._spawn(first, "w")
        self._wait_ready(first)
        for worker in others:
            self._spawn(worker, "w")
        for worker in others:
            self._wait_ready(worker)
        self.nginx = _popen(
            nginx_command(nginx, self.run_dir, "-g", "daemon off;"),
            self.run_dir / "nginx.log",
            _env(spec),
            "w",
        )
        self._wait_nginx()

    def _worker_settings(self, worker_id: str, ocpp_port: int, http_port: int) -> dict[str, str]:
        spec = self.spec
        settings = {
            **spec.extra_env,
            "CSMS_DATABASE__URL": spec.database_url,
            "CSMS_CLUSTER__REDIS_URL": spec.redis_url,
            "CSMS_CLUSTER__WORKER_ID": worker_id,
            "CSMS_CLUSTER__KEY_PREFIX": spec.key_prefix,
            "CSMS_OCPP__HOST": HOST,
            "CSMS_OCPP__PORT": str(ocpp_port),
            # nginx is the only client: take the charger's address from X-Forwarded-For
            "CSMS_OCPP__TRUSTED_PROXIES": HOST,
            "CSMS_WEB__HOST": HOST,
            "CSMS_WEB__PORT": str(http_port),
            # one key for all: a console sign-in made through one worker is valid on every one
            "CSMS_WEB__SESSION_SECRET": self._session_secret,
            "CSMS_WEB__INITIAL_PASSWORD_FILE": str(self.password_file),
            # plain HTTP on loopback: a browser would not send a Secure-only cookie back
            "CSMS_WEB__COOKIE_SECURE": "false",
        }
        if spec.allow_unknown_chargers:
            settings["CSMS_OCPP__ALLOW_UNKNOWN_CHARGERS"] = "true"
        if spec.accept_unknown_id_tokens:
            settings["CSMS_OCPP__ACCEPT_UNKNOWN_ID_TOKENS"] = "true"
        return settings

    def _spawn(self, worker: Worker, mode: str) -> None:
        worker.proc = _popen([self.spec.python, "-m", "csms"], worker.log_path, worker.env, mode)
        self._expected_down.discard(worker.index)
        self._reported.discard(worker.worker_id)

    def _wait_ready(self, worker: Worker) -> None:
        """Until its HTTP API answers and its OCPP port accepts connections."""
        deadline = time.monotonic() + self.spec.start_timeout_s
        while True:
            if not worker.alive:
                raise ClusterError(
                    f"{worker.worker_id} exited during start-up (status {worker.returncode}); "
                    f"the end of {worker.log_path}:\n{_tail(worker.log_path)}"
                )
            if http_status(worker.health_url, 1.0) == 200 and port_open(worker.ocpp_port):
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{worker.worker_id} is not ready after {self.spec.start_timeout_s:g} s; "
                    f"the end of {worker.log_path}:\n{_tail(worker.log_path)}"
                )
            time.sleep(0.1)

    def _wait_nginx(self) -> None:
        assert self.nginx is not None
        deadline = time.monotonic() + min(30.0, self.spec.start_timeout_s)
        while True:
            if self.nginx.poll() is not None:
                raise ClusterError(
                    f"nginx exited during start-up (status {self.nginx.returncode}); the end of "
                    f"{self.nginx_log}:\n{_tail(self.nginx_log)}\n{_tail(self.run_dir / 'nginx.log')}"
                )
            if port_open(self.ocpp_port) and http_status(f"{self.http_url}/api/health") == 200:
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"nginx does not answer on {self.http_url}; see {self.nginx_log}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """nginx first (no new connections; SIGTERM is its fast shutdown, which closes the open
        websockets instead of waiting days for them), then every worker: SIGTERM (connections
        closed, message log flushed), SIGKILL after ``stop_timeout_s``. Safe to call twice."""
        if self.nginx is not None:
            _stop_all([self.nginx], signal.SIGTERM, 10.0)
        procs = [w.proc for w in self.workers if w.proc is not None]
        self._expected_down.update(w.index for w in self.workers)
        _stop_all(procs, signal.SIGTERM, self.spec.stop_timeout_s)

    # one worker at a time (tests, benchmarks)

    def kill_worker(self, index: int) -> int:
        """SIGKILL ``workers[index]`` (a crash: no shutdown code runs). Its exit status."""
        worker = self.workers[index]
        assert worker.proc is not None
        self._expected_down.add(index)
        _stop_all([worker.proc], signal.SIGKILL, self.spec.stop_timeout_s)
        return worker.proc.returncode

    def stop_worker(self, index: int) -> int:
        """SIGTERM ``workers[index]`` (SIGKILL after the stop timeout). Its exit status."""
        worker = self.workers[index]
        assert worker.proc is not None
        self._expected_down.add(index)
        _stop_all([worker.proc], signal.SIGTERM, self.spec.stop_timeout_s)
        return worker.proc.returncode

    def restart_worker(self, index: int) -> None:
        """Start a stopped or killed ``workers[index]`` again, on its ports (its log grows), and
        wait until it is ready. nginx sends it traffic again within fail_timeout (5 s)."""
        worker = self.workers[index]
        if worker.alive:
            raise ClusterError(f"{worker.worker_id} is running")
        self._spawn(worker, "a")
        self._wait_ready(worker)

    def check(self) -> list[str]:
        """Processes that ended without being asked to since the last call, one line each."""
        out: list[str] = []
        for worker in self.workers:
            if worker.alive or worker.index in self._expected_down or worker.proc is None:
                continue
            if worker.worker_id not in self._reported:
                self._reported.add(worker.worker_id)
                out.append(
                    f"{worker.worker_id} (pid {worker.pid}) exited with status "
                    f"{worker.returncode}: see {worker.log_path}; nginx sends its chargers' "
                    "reconnects to the other workers (it is not restarted)"
                )
        if self.workers and not any(w.alive for w in self.workers):
            if len(self._expected_down) < len(self.workers) and "all" not in self._reported:
                self._reported.add("all")
                out.append("no worker is left: nginx answers 502 until one is started")
        else:
            self._reported.discard("all")
        nginx_ended = self.nginx is not None and self.nginx.poll() is not None
        if self.nginx is not None and nginx_ended and "nginx" not in self._reported:
            self._reported.add("nginx")
            out.append(
                f"nginx (pid {self.nginx.pid}) exited with status {self.nginx.returncode}: "
                f"see {self.nginx_log}"
            )
        return out

    @property
    def nginx_alive(self) -> bool:
        return self.nginx is not None and self.nginx.poll() is None


# --- --simulate: the demo's site and day, replayed against nginx ------------------------------

DEMO_SITE_ID = "demo"
DEMO_SITE_FILE = ROOT / "examples" / "demo_site.json"
DEMO_SESSIONS = ROOT / "examples" / "acn_caltech_2019-06-14.csv.gz"
DEMO_DAY = "2019-06-14"
DEMO_HOURS = 19.0


@dataclass(frozen=True)
class Replay:
    """One replay clock, shared by the workers and the simulator."""

    start: datetime
    speed: float
    anchor: datetime

    def settings(self) -> dict[str, str]:
        """The workers' ``CSMS_CLOCK__*``."""
        return {
            "CSMS_CLOCK__START": self.start.isoformat(),
            "CSMS_CLOCK__SPEED": str(self.speed),
            "CSMS_CLOCK__ANCHOR": self.anchor.isoformat(),
        }


def demo_replay(speed: float) -> Replay:
    """The demo's day from 05:00 Caltech time, reading 05:00 now."""
    from charge_point_sim.acn import CALTECH_TZ

    start = datetime.fromisoformat(f"{DEMO_DAY}T05:00").replace(tzinfo=CALTECH_TZ)
    return Replay(start, speed, datetime.now(UTC))


async def _seed_demo_site(database_url: str, replay: Replay) -> int:
    """The demo's site row and its chargers registered (as ``make demo`` does), straight into
    the database before any worker starts. Returns the number of chargers."""
    from charge_point_sim.acn import CALTECH_TZ
    from charge_point_sim.site import load_site
    from csms.db.engine import create_engine, session_factory
    from csms.db.migrate import upgrade_to_head
    from csms.domain.clock import ScaledClock
    from csms.services.notifications import Notifier
    from csms.services.sites import SiteService
    from csms.services.stations import StationService

    site = load_site(DEMO_SITE_FILE)
    clock = ScaledClock(replay.start, replay.speed, anchor=replay.anchor)
    engine = create_engine(database_url)
    try:
        await upgrade_to_head(engine)
        sessions = session_factory(engine)
        await SiteService(sessions, clock, Notifier()).upsert(
            DEMO_SITE_ID,
            {
                "name": "Demo site (ACN-Data day at Caltech)",
                "timezone": str(CALTECH_TZ),
                "capacity_kw": site.cap_kw or 40.0,
                "method": "milp",
                "step_minutes": 5,
                "default_dwell_hours": 8,
                "default_energy_kwh": 15,
            },
        )
        stations = StationService(sessions, clock)
        for c in site.chargers:
            conn = c.config.spec.connectors[0]
            await stations.register_charge_point(
                c.config.charger_id,
                site_id=DEMO_SITE_ID,
                max_power_w=conn.max_power_w,
                phases=conn.phases,
                voltage_v=c.config.spec.voltage_v,
            )
        return len(site.chargers)
    finally:
        await engine.dispose()


def start_simulator(cluster: Cluster, replay: Replay) -> subprocess.Popen[bytes]:
    """``python -m charge_point_sim run`` replaying the demo's day against nginx's OCPP port."""
    return _popen(
        [
            cluster.spec.python,
            "-m",
            "charge_point_sim",
            "run",
            "--url",
            cluster.ocpp_url,
            "--site",
            str(DEMO_SITE_FILE),
            "--scenario",
            f"acn:{DEMO_SESSIONS}:{DEMO_DAY}",
            "--start",
            replay.start.isoformat(),
            "--anchor",
            replay.anchor.isoformat(),
            "--speed",
            str(replay.speed),
            "--duration",
            f"{DEMO_HOURS * 3600:.0f}",  # from --start, whenever the simulator starts
            "--report",
            str(cluster.run_dir / "simulator-report.json"),
            "--quiet",
        ],
        cluster.run_dir / "simulator.log",
        _env(cluster.spec),
        "w",
    )


# --- the command line -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m deploy.cluster",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run a csms cluster on this machine: N workers (python -m csms) sharing one\n"
            "PostgreSQL database and one Redis, behind nginx. Needs nginx (apt-get install\n"
            "nginx-light), PostgreSQL and Redis; the database is created if it does not exist.\n"
            "Ctrl-C or SIGTERM stops nginx and the workers. A worker that dies is reported,\n"
            "not restarted."
        ),
        epilog=(
            "CSMS_* variables in the environment reach every worker (e.g. CSMS_LOG_LEVEL=DEBUG),\n"
            "except those the launcher sets: database, cluster, ports, session secret.\n"
            "Files in the run directory: nginx.conf, worker-K.log, nginx-error.log,\n"
            "nginx-access.log, initial-admin-password (first start of an empty database)."
        ),
    )
    p.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    p.add_argument("--ocpp-port", type=int, default=9000, help="nginx's OCPP port (default 9000)")
    p.add_argument("--http-port", type=int, default=8000, help="nginx's HTTP port (default 8000)")
    p.add_argument(
        "--worker-ocpp-ports-from",
        type=int,
        default=9101,
        metavar="PORT",
        help="worker K's OCPP port is PORT+K-1 (default 9101; 0: free ports)",
    )
    p.add_argument(
        "--worker-http-ports-from",
        type=int,
        default=8101,
        metavar="PORT",
        help="worker K's HTTP port is PORT+K-1 (default 8101; 0: free ports)",
    )
    p.add_argument(
        "--database-url",
        help=f"PostgreSQL database shared by the workers (default {DEFAULT_DATABASE_URL}; "
        f"with --simulate {DEFAULT_SIM_DATABASE_URL}, made afresh on every start)",
    )
    p.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help=f"Redis (default {DEFAULT_REDIS_URL})"
    )
    p.add_argument(
        "--key-prefix",
        default=DEFAULT_KEY_PREFIX,
        help=f"prefix of this cluster's Redis keys (default {DEFAULT_KEY_PREFIX})",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        default=Path("out/cluster"),
        help="nginx.conf, logs and the admin password file (default out/cluster)",
    )
    p.add_argument(
        "--allow-unknown-chargers",
        action="store_true",
        help="let unregistered chargers connect and self-register",
    )
    p.add_argument("--accept-unknown-id-tokens", action="store_true", help="accept any id token")
    p.add_argument(
        "--simulate",
        action="store_true",
        help="also replay the demo's day (examples/demo_site.json: 20 chargers, ACN-Data "
        "sessions) against nginx's OCPP port; puts the workers on the replay clock and seeds the "
        "demo site into a fresh database",
    )
    p.add_argument(
        "--sim-speed",
        type=float,
        default=60.0,
        help="replay speed with --simulate (default 60: the day in about 19 min)",
    )
    p.add_argument("--nginx", help="the nginx binary (default: on PATH or /usr/sbin/nginx)")
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        help="seconds a worker has to stop before SIGKILL (default 30)",
    )
    return p


def _table(cluster: Cluster, nginx_pid: int) -> str:
    def rel(path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(Path.cwd()))
        return str(path)

    spec = cluster.spec
    try:
        fresh = cluster.password_file.stat().st_mtime >= (cluster.started_at or 0.0) - 1
    except OSError:
        fresh = False
    password = (
        f"{rel(cluster.password_file)} (user admin; delete it after signing in)"
        if fresh
        else "none: the database already has users (a password file is written only on the "
        "first start of an empty database)"
    )
    lines = [
        f"csms cluster: {len(cluster.workers)} workers behind nginx",
        f"  console        {cluster.http_url}/console/",
        f"  API            {cluster.http_url}/api/health, {cluster.http_url}/docs",
        f"  OCPP           {cluster.ocpp_url}/<charger id>",
        f"  admin password {password}",
        f"  database       {redact(spec.database_url)}"
        + (" (created)" if cluster.database_created else ""),
        f"  redis          {redact(spec.redis_url)}, keys {spec.key_prefix}*",
        f"  nginx          pid {nginx_pid}, {rel(cluster.run_dir / 'nginx.conf')}, "
        f"logs {rel(cluster.nginx_log)}",
        "",
        f"  {'worker':<10} {'pid':>8} {'ocpp':>6} {'http':>6}  log",
    ]
    for w in cluster.workers:
        lines.append(
            f"  {w.worker_id:<10} {w.pid or 0:>8} {w.ocpp_port:>6} {w.http_port:>6}  "
            f"{rel(w.log_path)}"
        )
    return "\n".join(lines)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 after a clean stop, 1 if the cluster could not start, 2 on bad flags."""
    args = build_parser().parse_args(argv)
    if args.sim_speed <= 0:
        print("error: --sim-speed must be > 0", file=sys.stderr)
        return 2
    replay = demo_replay(args.sim_speed) if args.simulate else None
    spec = ClusterSpec(
        workers=args.workers,
        ocpp_port=args.ocpp_port,
        http_port=args.http_port,
        worker_ocpp_ports_from=args.worker_ocpp_ports_from,
        worker_http_ports_from=args.worker_http_ports_from,
        database_url=args.database_url
        or (DEFAULT_SIM_DATABASE_URL if args.simulate else DEFAULT_DATABASE_URL),
        redis_url=args.redis_url,
        key_prefix=args.key_prefix,
        run_dir=args.run_dir,
        allow_unknown_chargers=args.allow_unknown_chargers,
        accept_unknown_id_tokens=args.accept_unknown_id_tokens or args.simulate,
        extra_env={} if replay is None else replay.settings(),
        inherit_csms_env=True,
        nginx=args.nginx,
        stop_timeout_s=args.stop_timeout,
    )
    cluster = Cluster(spec)
    simulator: subprocess.Popen[bytes] | None = None
    # Ctrl-C and SIGTERM stop the cluster, even when started in the background with SIGINT
    # ignored (children then get the default dispositions back: the simulator can report).
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        problems = check_prerequisites(spec)
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            return 1
        if replay is not None:
            if spec.database_url == DEFAULT_SIM_DATABASE_URL:
                drop_database(spec.database_url)
            elif has_tables(spec.database_url):
                print(
                    f"error: --simulate replays {DEMO_DAY} from 05:00 and needs an empty "
                    f"database; {redact(spec.database_url)} has tables: drop it, or leave "
                    "--database-url out to use the demo's own database",
                    file=sys.stderr,
                )
                return 1
            ensure_database(spec.database_url)
            chargers = _run_async(lambda: _seed_demo_site(spec.database_url, replay))
            print(f"seeded site {DEMO_SITE_ID!r} with {chargers} chargers", flush=True)
        print(f"starting {spec.workers} workers and nginx...", flush=True)
        try:
            cluster.start()
        except ClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        assert cluster.nginx is not None
        print(_table(cluster, cluster.nginx.pid), flush=True)
        if replay is not None:
            simulator = start_simulator(cluster, replay)
            print(
                f"  simulator      pid {simulator.pid}, replaying {DEMO_DAY} at "
                f"{replay.speed:g}x, log {cluster.run_dir / 'simulator.log'}",
                flush=True,
            )
        print("Ctrl-C stops the cluster.", flush=True)
        while True:
            time.sleep(0.5)
            for line in cluster.check():
                print(f"{datetime.now():%H:%M:%S} {line}", file=sys.stderr, flush=True)
            if simulator is not None and simulator.poll() is not None:
                print(
                    f"simulator finished (status {simulator.returncode}): summary in "
                    f"{cluster.run_dir / 'simulator.log'}; the cluster keeps running",
                    flush=True,
                )
                simulator = None
    except KeyboardInterrupt:
        pass
    finally:
        # a second Ctrl-C must not cut the graceful stop short (it is bounded by the timeout)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if simulator is not None:
            print("\nstopping the simulator...", file=sys.stderr, flush=True)
            _stop_all([simulator], signal.SIGINT, 15.0)  # SIGINT: it writes its report
        if cluster.workers or cluster.nginx is not None:
            print(
                f"\nstopping nginx and the workers (up to {spec.stop_timeout_s:g} s)...",
                file=sys.stderr,
                flush=True,
            )
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
