"""Child processes for fault tests: the central system (``python -m csms``) and the simulator
(``python -m charge_point_sim run``), started with their settings in the environment or on the
command line, stopped gracefully (SIGTERM) or killed (SIGKILL), and the ports they listen on.

Generic on purpose: a test kills, restarts or starves one side and checks what the other saw.
Each child writes its output to a log file in the test's folder (shown when a test fails), so a
chatty child never blocks on a full pipe.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0  # a cold start under a loaded CI machine (imports, migrations)
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Does something accept connections on ``host:port``?"""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_port(port: int, timeout_s: float = START_TIMEOUT_S, host: str = "127.0.0.1") -> None:
    """Wait until ``host:port`` accepts connections (TimeoutError after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not port_open(port, host):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")
        time.sleep(0.05)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``CSMS_`` setting (a developer's own must not leak
    into a test), plus ``extra``; unbuffered output, so a killed child's log is complete; this
    checkout first on the import path, so a child runs it from any working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


class Child:
    """One child process with its output in ``log_path``, run in ``log_path``'s folder (what it
    writes in its working directory, e.g. the central system's first-run admin password file,
    stays out of the checkout)."""

    def __init__(
        self, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.args = list(args)
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=log_path.parent,
                env=dict(env) if env is not None else child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int = 4000) -> str:
        """The end of its log (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-tail:]

    def kill(self) -> int:
        """SIGKILL: no shutdown code runs (a crash, an OOM kill). Returns the exit status."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, and SIGKILL if it has not ended within ``timeout_s``."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return self.kill()

    def wait(self, timeout_s: float) -> int:
        """Its exit status once it ended (TimeoutError after ``timeout_s``)."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.args[:4]} still running after {timeout_s} s") from None


class CsmsProcess:
    """``python -m csms`` on fixed ports with ``CSMS_`` settings from ``settings``; it can be
    killed and started again on the same ports and database (each start logs to its own file)."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str,
        settings: Mapping[str, str] | None = None,
        ocpp_port: int | None = None,
        http_port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.ocpp_port = ocpp_port or free_port()
        self.http_port = http_port or free_port()
        self.env = child_env(
            {
                "CSMS_DATABASE__URL": database_url,
                "CSMS_OCPP__HOST": "127.0.0.1",
                "CSMS_OCPP__PORT": str(self.ocpp_port),
                "CSMS_WEB__HOST": "127.0.0.1",
                "CSMS_WEB__PORT": str(self.http_port),
                **(settings or {}),
            }
        )
        self.child: Child | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """The OCPP endpoint chargers connect to (they append their id)."""
        return f"ws://127.0.0.1:{self.ocpp_port}/ocpp"

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.alive

    def start(self) -> Child:
        """Start it (again)."""
        assert not self.alive, "the central system is already running"
        self.starts += 1
        log = self.workdir / f"csms-{self.starts}.log"
        self.child = Child([sys.executable, "-m", "csms"], log, self.env)
        return self.child

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> float:
        """Wait until the HTTP API answers and the OCPP port accepts connections; returns the
        seconds since the start."""
        assert self.child is not None
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.child.alive:
                raise RuntimeError(f"the central system exited:\n{self.child.output()}")
            try:
                health = httpx.get(f"http://127.0.0.1:{self.http_port}/api/health", timeout=1)
                if health.status_code == 200 and port_open(self.ocpp_port):
                    return time.monotonic() - self.child.started
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the central system is not ready:\n{self.child.output()}")
            time.sleep(0.05)

    def kill(self) -> int:
        """SIGKILL."""
        assert self.child is not None
        return self.child.kill()

    def stop(self) -> int:
        """SIGTERM (graceful: connections closed, message log flushed)."""
        assert self.child is not None
        return self.child.stop()

    def output(self) -> str:
        """The end of the current (last) start's log."""
        return "" if self.child is None else self.child.output()


def replay_clock_settings(start: datetime, speed: float, anchor: datetime) -> dict[str, str]:
    """The central system's replay clock (``CSMS_CLOCK__*``): it reads ``start`` at the
    wall-clock instant ``anchor`` and runs ``speed`` times faster than real time."""
    return {
        "CSMS_CLOCK__START": start.isoformat(),
        "CSMS_CLOCK__SPEED": str(speed),
        "CSMS_CLOCK__ANCHOR": anchor.isoformat(),
    }


def wall_time_of(t: datetime, start: datetime, speed: float, anchor: datetime) -> float:
    """The wall-clock instant (epoch s) at which a replay clock (start, speed, anchor) reads
    ``t``."""
    return anchor.timestamp() + (t - start).total_seconds() / speed


def sleep_until_wall(epoch_s: float) -> None:
    """Sleep until the wall-clock instant ``epoch_s`` (at once if it has passed)."""
    time.sleep(max(0.0, epoch_s - time.time()))


def now_utc() -> datetime:
    """The wall-clock time, aware."""
    return datetime.now(UTC)


def acn_replay_args(
    site: Path,
    acn_file: Path,
    *,
    start: datetime,
    until: datetime,
    anchor: datetime,
    speed: float,
    meter_interval_s: int,
) -> list[str]:
    """The simulator's arguments to replay ``acn_file``'s day on ``site`` from ``start`` to
    ``until``, on the replay clock (start, speed, anchor) the central system shares."""
    return [
        "--site",
        str(site),
        "--scenario",
        f"acn:{acn_file}:{start.date().isoformat()}",
        "--start",
        start.isoformat(),
        "--anchor",
        anchor.isoformat(),
        "--speed",
        str(speed),
        "--duration",
        str((until - start).total_seconds()),
        "--meter-interval",
        str(meter_interval_s),
    ]


def start_simulator(
    workdir: Path,
    *,
    url: str,
    report: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    name: str = "sim",
) -> Child:
    """``python -m charge_point_sim run --url URL --report REPORT --quiet ARGS...``."""
    return Child(
        [
            sys.executable,
            "-m",
            "charge_point_sim",
            "run",
            "--url",
            url,
            "--report",
            str(report),
            "--quiet",
            *args,
        ],
        workdir / f"{name}.log",
        child_env(env),
    )
