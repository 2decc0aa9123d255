"""A charger's connection that survives reconnects, and the outbox of its transaction messages.

:class:`Link` is what the ``ocpp`` ChargePoint sees as its connection (async ``recv``/``send``).
The runner attaches a fresh websocket to it after each (re)connect; while there is none, ``recv``
waits for the next one and ``send`` raises :class:`OfflineError`. A call whose connection drops before
the answer came raises :class:`OfflineError` at once (:meth:`Link.guard`) instead of waiting for the
response timeout.

:class:`Outbox` keeps transaction-related messages (1.6 Start/Stop/MeterValues, 2.0.1
TransactionEvent) in order until the central system answered them: a message that could not be
sent, or whose answer was lost, is sent again after the reconnect, unchanged (same seqNo, same
timestamps). That is at-least-once delivery, as the spec asks: a message whose answer got lost is
a duplicate the central system recognises (same seqNo in 2.0.1; same transaction and timestamp in
1.6).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.exceptions import ConnectionClosed

from charge_point_sim.errors import InvalidModelError, SimulatorError

log = logging.getLogger("charge_point_sim.link")

T = TypeVar("T")


class OfflineError(SimulatorError, ConnectionError):
    """No connection: the message was not sent, or its answer was lost with the connection."""


class Link:
    """The connection of one charger across reconnects. Single event loop."""

    def __init__(self) -> None:
        self._ws: Any = None
        self.online = asyncio.Event()
        self._dropped = asyncio.Event()
        self._dropped.set()
        self.connects = 0
        self.drops = 0

    @property
    def is_online(self) -> bool:
        return self._ws is not None

    def attach(self, ws: Any) -> None:
        """A new connection is up."""
        self._ws = ws
        self._dropped = asyncio.Event()
        self.connects += 1
        self.online.set()

    def detach(self, ws: Any) -> None:
        """``ws`` is gone (idempotent; ignored when a newer connection is attached)."""
        if self._ws is ws and ws is not None:
            self._ws = None
            self.drops += 1
            self.online.clear()
            self._dropped.set()

    async def dropped(self) -> None:
        """Wait until the current connection is gone (at once when offline)."""
        await self._dropped.wait()

    async def recv(self) -> str:
        """The next message; across a drop, the first one of the next connection."""
        while True:
            await self.online.wait()
            ws = self._ws
            try:
                message: str = await ws.recv()
            except ConnectionClosed:
                self.detach(ws)
                continue
            return message

    async def send(self, message: str) -> None:
        ws = self._ws
        if ws is None:
            raise OfflineError("not connected")
        try:
            await ws.send(message)
        except ConnectionClosed as e:
            self.detach(ws)
            raise OfflineError("the connection closed") from e

    async def guard(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro``; if the connection drops first, cancel it and raise :class:`OfflineError`."""
        if not self.is_online:
            coro.close()
            raise OfflineError("not connected")
        task = asyncio.ensure_future(coro)
        waiter = asyncio.ensure_future(self._dropped.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
                if not waiter.cancelled() and waiter.done():
                    raise OfflineError("the connection dropped before the answer")
        return task.result()


@dataclass(slots=True)
class _Entry:
    build: Callable[[], Any]
    done: asyncio.Future[Any]
    held: bool = False  # could not be delivered at once (offline, or the answer was lost)


class Outbox:
    """Transaction messages delivered in order, at least once (see the module docstring).

    ``send`` makes the call (raising :class:`OfflineError` or ``TimeoutError`` when it got no answer).
    ``build`` callables make the payload when it is (re)sent; they must return the same payload
    each time.

    Counters for the report: ``total`` messages queued, ``held`` of them that could not be
    delivered at once (queued while offline, or their answer was lost) and ``held_delivered`` of
    those delivered later; ``resends`` failed delivery attempts; ``max_queued`` the most messages
    waiting at once.
    """

    def __init__(self, send: Callable[[Any], Awaitable[Any]]) -> None:
        self._send = send
        self._queue: deque[_Entry] = deque()
        self._lock = asyncio.Lock()
        self.resends = 0
        self.total = 0
        self.held = 0
        self.held_delivered = 0
        self.max_queued = 0

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, build: Callable[[], Any]) -> asyncio.Future[Any]:
        """Queue a message; the future gets its answer once delivered."""
        entry = _Entry(build, asyncio.get_running_loop().create_future())
        self.total += 1
        self._queue.append(entry)
        self.max_queued = max(self.max_queued, len(self._queue))
        return entry.done

    async def flush(self) -> None:
        """Send what is queued, in order, until empty or the connection is gone."""
        async with self._lock:
            while self._queue:
                entry = self._queue[0]
                try:
                    answer = await self._send(entry.build())
                except (OfflineError, TimeoutError) as e:
                    log.info("transaction message kept for later: %s", e)
                    self.resends += 1
                    for waiting in self._queue:
                        if not waiting.held:
                            waiting.held = True
                            self.held += 1
                    return
                self._queue.popleft()
                if entry.held:
                    self.held_delivered += 1
                if not entry.done.done():
                    entry.done.set_result(answer)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays in simulated seconds: ``initial_s`` doubling up to ``max_s``, each
    shortened by a random fraction of up to ``jitter`` of itself.

    Without jitter, chargers dropped together (a central system restart) retry together at 5,
    10, 20 s... and hit it in lockstep; with it, a site's retries spread over
    ``[(1 - jitter) x base, base]``. The delay never exceeds ``max_s`` and never falls below
    ``(1 - jitter) x initial_s``.
    """

    initial_s: float = 5.0
    max_s: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_s) and self.initial_s > 0):
            raise InvalidModelError("initial_s must be > 0")
        if not (math.isfinite(self.max_s) and self.max_s >= self.initial_s):
            raise InvalidModelError("max_s must be >= initial_s")
        if not (math.isfinite(self.jitter) and 0.0 <= self.jitter < 1.0):
            raise InvalidModelError("jitter must be within [0, 1)")

    def delay(self, attempt: int, u: float = 0.0) -> float:
        """The wait before reconnect attempt ``attempt`` (0-based); ``u`` in [0, 1) is the
        random draw (0: no shortening)."""
        base = min(self.max_s, self.initial_s * 2 ** min(max(attempt, 0), 30))
        return float(base * (1.0 - self.jitter * min(max(u, 0.0), 1.0)))
