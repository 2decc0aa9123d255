"""The load client of the OCPP load benchmark: ``python -m benchmarks.ocpp_load_client``.

Opens N OCPP 1.6 connections to one server on loopback, boots each with a BootNotification, then
(after a ``go`` line on stdin when ``--wait-go`` is given) sends one MeterValues per connection every
``--period`` seconds, with a random start offset per connection, for ``--duration`` seconds, and
measures the round trip of every call. It speaks raw OCPP-J frames (no schema validation, no
``ocpp`` package) so that the client stays cheap; it answers every CALL from the server (e.g. the
central system's GetConfiguration after boot) with an empty CALLRESULT.

It runs in its own process so that its CPU is not counted as the server's. Progress and the final
result go to stdout as JSON lines (``{"event": ...}``); the result, with every latency, is written to
``--out``. Each connection keeps at most one CALL in flight, as OCPP-J requires: a tick that comes
while the previous call is still unanswered is skipped and counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State
from websockets.typing import Subprotocol

CALL, CALLRESULT, CALLERROR = 2, 3, 4
PROGRESS_EVERY_S = 1.0
CLOSE_TIMEOUT_S = 5.0
GO_LINE = b"go"


@dataclass(frozen=True)
class ClientConfig:
    """What one client process does."""

    url: str  # ws://127.0.0.1:PORT/ocpp  (the charger id is appended)
    n: int
    period_s: float
    duration_s: float
    first_index: int = 0
    ramp_timeout_s: float = 180.0
    call_timeout_s: float = 10.0
    connect_concurrency: int = 50
    compression: bool = True
    seed: int = 1
    wait_go: bool = False
    go_timeout_s: float = 600.0


@dataclass
class ClientResult:
    """What one client process measured (latencies in ms, of MeterValues sent in the window)."""

    n: int = 0
    connected: int = 0
    booted: int = 0
    connect_failures: int = 0
    first_connect_error: str = ""
    ramp_s: float = 0.0
    window_s: float = 0.0
    held_at_end: int = 0
    sent: int = 0
    answered: int = 0
    answered_in_window: int = 0
    call_errors: int = 0
    timeouts: int = 0
    skipped_ticks: int = 0
    closed_by_server: int = 0
    cpu_window_s: float = 0.0  # this process's CPU time during the window
    server_calls_answered: int = 0
    boot_latencies_ms: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


def emit(event: str, **data: Any) -> None:
    """One progress line on stdout."""
    print(json.dumps({"event": event, **data}), flush=True)


class _Timestamp:
    """An ISO timestamp, recomputed at most once a second (formatting is not free)."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._text


class Charger:
    """One simulated 1.6 charger: a reader task, and calls made one at a time."""

    def __init__(self, index: int, ws: ClientConnection, result: ClientResult) -> None:
        self.index = index
        self.ws = ws
        self.result = result
        self.seq = 0
        self.energy_wh = 1000.0 * index
        self._waiting_id: str | None = None
        self._future: asyncio.Future[tuple[int, float]] | None = None
        self.closed = False
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                try:
                    msg = json.loads(raw)
                    kind, unique_id = msg[0], msg[1]
                except (ValueError, TypeError, IndexError, KeyError):
                    continue
                if kind == CALL:
                    await self.ws.send(f'[3,"{unique_id}",{{}}]')
                    self.result.server_calls_answered += 1
                elif unique_id == self._waiting_id and self._future and not self._future.done():
                    self._future.set_result((int(kind), now))
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            if self._future is not None and not self._future.done():
                self._future.set_exception(ConnectionError("closed"))

    async def call(self, action: str, payload: str, timeout_s: float) -> tuple[int, float] | None:
        """Send one CALL; (message type of the answer, round trip ms), or None on timeout.

        Raises ConnectionError when the connection is (or gets) closed.
        """
        if self.closed:
            raise ConnectionError("closed")
        self.seq += 1
        unique_id = f"{self.index}-{self.seq}"
        future: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()
        self._waiting_id, self._future = unique_id, future
        start = time.perf_counter()
        try:
            await self.ws.send(f'[2,"{unique_id}","{action}",{payload}]')
            async with asyncio.timeout(timeout_s):
                kind, end = await future
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            raise ConnectionError("closed") from exc
        finally:
            self._waiting_id, self._future = None, None
        return kind, (end - start) * 1000.0

    def meter_values(self, stamp: str) -> str:
        """A valid 1.6 MeterValues payload (energy register and power), as JSON."""
        self.energy_wh += 3.0
        return (
            '{"connectorId":1,"meterValue":[{"timestamp":"' + stamp + '","sampledValue":['
            '{"value":"'
            + f"{self.energy_wh:.1f}"
            + '","measurand":"Energy.Active.Import.Register",'
            '"unit":"Wh"},{"value":"7400","measurand":"Power.Active.Import","unit":"W"}]}]}'
        )


BOOT_PAYLOAD = json.dumps({"chargePointVendor": "Bench", "chargePointModel": "LoadClient"})


async def _open(
    cfg: ClientConfig, index: int, result: ClientResult, gate: asyncio.Semaphore
) -> Charger | None:
    """Connect and boot one charger; None if that failed."""
    url = f"{cfg.url.rstrip('/')}/bench{index:05d}"
    async with gate:
        try:
            ws = await connect(
                url,
                subprotocols=[Subprotocol("ocpp1.6")],
                proxy=None,
                compression="deflate" if cfg.compression else None,
                open_timeout=cfg.call_timeout_s,
                ping_interval=None,  # the server pings; answering is automatic
                close_timeout=CLOSE_TIMEOUT_S,
                max_queue=64,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            result.connect_failures += 1
            if not result.first_connect_error:
                result.first_connect_error = f"{type(exc).__name__}: {exc}"[:300]
            return None
        result.connected += 1
        charger = Charger(index, ws, result)
        try:
            answer = await charger.call("BootNotification", BOOT_PAYLOAD, cfg.call_timeout_s)
        except ConnectionError:
            answer = None
        if answer is None or answer[0] != CALLRESULT:
            result.connect_failures += 1
            if not result.first_connect_error:
                result.first_connect_error = f"BootNotification failed: {answer}"
            await _close(charger)
            return None
        result.booted += 1
        result.boot_latencies_ms.append(answer[1])
        return charger


async def _close(charger: Charger) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await charger.ws.close()
    charger.reader.cancel()


async def _ramp(cfg: ClientConfig, result: ClientResult) -> list[Charger]:
    """Open and boot every connection (bounded concurrency and time)."""
    gate = asyncio.Semaphore(max(1, cfg.connect_concurrency))
    tasks = [
        asyncio.create_task(_open(cfg, cfg.first_index + i, result, gate)) for i in range(cfg.n)
    ]
    start = time.perf_counter()
    deadline = start + cfg.ramp_timeout_s
    pending: set[asyncio.Task[Charger | None]] = set(tasks)
    while pending and time.perf_counter() < deadline:
        wait_s = min(PROGRESS_EVERY_S, deadline - time.perf_counter())
        _, pending = await asyncio.wait(pending, timeout=max(0.0, wait_s))
        emit("ramp", connected=result.connected, booted=result.booted, n=cfg.n)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    result.ramp_s = time.perf_counter() - start
    result.connect_failures += len(pending)
    chargers: list[Charger] = []
    for task in tasks:
        if task.cancelled() or task.exception() is not None:
            continue
        charger = task.result()
        if charger is not None:
            chargers.append(charger)
    return chargers


async def _wait_go(cfg: ClientConfig) -> None:
    """Wait for a ``go`` line on stdin (bounded); EOF or timeout also start the window."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        async with asyncio.timeout(cfg.go_timeout_s):
            while True:
                line = await reader.readline()
                if not line or line.strip() == GO_LINE:
                    return
    except TimeoutError:
        emit("warning", message="no go line received; starting anyway")
    finally:
        transport.close()


async def _drive(
    cfg: ClientConfig,
    charger: Charger,
    result: ClientResult,
    window_start: float,
    offset_s: float,
    stamp: _Timestamp,
) -> None:
    """Send MeterValues on this charger's ticks until the window ends."""
    window_end = window_start + cfg.duration_s
    last_tick = int((cfg.duration_s - offset_s) / cfg.period_s - 1e-9)  # the last one in the window
    tick = 0
    while True:
        due = window_start + offset_s + tick * cfg.period_s
        if due >= window_end:
            return
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            answer = await charger.call(
                "MeterValues", charger.meter_values(stamp.now()), cfg.call_timeout_s
            )
        except ConnectionError:
            result.closed_by_server += 1
            return
        result.sent += 1
        if answer is None:
            result.timeouts += 1
        elif answer[0] == CALLRESULT:
            result.answered += 1
            result.latencies_ms.append(answer[1])
            if time.perf_counter() <= window_end:
                result.answered_in_window += 1
        else:
            result.call_errors += 1
        # The next tick not yet due; ticks that came while this call was in flight are skipped
        # (and counted, as far as they fall inside the window).
        behind = (time.perf_counter() - window_start - offset_s) / cfg.period_s
        next_tick = max(tick + 1, int(behind) + 1)
        result.skipped_ticks += max(0, min(next_tick, last_tick + 1) - (tick + 1))
        tick = next_tick


async def run_client(cfg: ClientConfig) -> ClientResult:
    """Ramp up, wait for go (optionally), drive the load, close; everything bounded in time."""
    result = ClientResult(n=cfg.n)
    chargers = await _ramp(cfg, result)
    emit("ready", connected=result.connected, booted=result.booted, ramp_s=result.ramp_s)
    if cfg.wait_go:
        await _wait_go(cfg)
    rng = random.Random(cfg.seed * 1_000_003 + cfg.first_index)
    stamp = _Timestamp()
    window_start = time.perf_counter()
    cpu_start = time.process_time()

    def window_over() -> None:  # once, at the end of the window
        if result.window_s:
            return
        result.window_s = cfg.duration_s
        result.cpu_window_s = time.process_time() - cpu_start
        result.held_at_end = sum(1 for c in chargers if not c.closed and c.ws.state is State.OPEN)

    end_of_window = asyncio.get_running_loop().call_later(cfg.duration_s, window_over)
    emit("window", duration_s=cfg.duration_s)
    drivers = [
        asyncio.create_task(
            _drive(cfg, c, result, window_start, rng.uniform(0.0, cfg.period_s), stamp)
        )
        for c in chargers
    ]
    # Calls in flight at the end of the window get up to call_timeout_s to come back.
    hard_end = window_start + cfg.duration_s + cfg.call_timeout_s + 2.0
    pending: set[asyncio.Task[None]] = set(drivers)
    while pending and time.perf_counter() < hard_end:
        wait_s = min(PROGRESS_EVERY_S, hard_end - time.perf_counter())
        _, pending = await asyncio.wait(pending, timeout=max(0.0, wait_s))
        elapsed = time.perf_counter() - window_start
        emit("progress", elapsed_s=round(elapsed, 2), sent=result.sent, answered=result.answered)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    # Stay until the window is over (all ticks may be done a little before it ends).
    await asyncio.sleep(max(0.0, window_start + cfg.duration_s - time.perf_counter()))
    end_of_window.cancel()
    window_over()
    await asyncio.gather(*(_close(c) for c in chargers))
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ocpp_load_client", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--url", required=True, help="ws://127.0.0.1:PORT/ocpp (id appended)")
    p.add_argument("--n", type=int, required=True, help="connections")
    p.add_argument("--period", type=float, required=True, help="seconds between MeterValues")
    p.add_argument("--duration", type=float, required=True, help="measurement window, s")
    p.add_argument("--first-index", type=int, default=0, help="charger ids start here")
    p.add_argument("--ramp-timeout", type=float, default=180.0)
    p.add_argument("--call-timeout", type=float, default=10.0)
    p.add_argument("--connect-concurrency", type=int, default=50)
    p.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--wait-go", action="store_true", help="wait for 'go' on stdin after ramp-up")
    p.add_argument("--out", type=Path, help="write the result (JSON) here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    if args.n < 1 or args.period <= 0 or args.duration <= 0:
        print("error: --n, --period and --duration must be positive", file=sys.stderr)
        return 2
    cfg = ClientConfig(
        url=args.url,
        n=args.n,
        period_s=args.period,
        duration_s=args.duration,
        first_index=args.first_index,
        ramp_timeout_s=args.ramp_timeout,
        call_timeout_s=args.call_timeout,
        connect_concurrency=args.connect_concurrency,
        compression=not args.no_compression,
        seed=args.seed,
        wait_go=args.wait_go,
    )
    result = asyncio.run(run_client(cfg))
    if args.out is not None:
        args.out.write_text(json.dumps(asdict(result)))
    emit(
        "done",
        held=result.held_at_end,
        sent=result.sent,
        answered=result.answered,
        timeouts=result.timeouts,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
