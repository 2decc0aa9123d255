"""The websocket as the ocpp package sees it: every frame logged, malformed frames answered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from csms.domain.clock import Clock
from csms.ocpp.frames import fix_outgoing, parse_frame, summary

log = logging.getLogger(__name__)

BATCH = 500
SHUTDOWN_FLUSH_S = 5.0  # the most a shutdown waits for the last frames to be written


class MessageSink(Protocol):
    """Where raw frames go (the station service)."""

    async def log_messages_raw(self, rows: list[dict[str, Any]]) -> None:
        """Append frames."""
        ...


class Websocket(Protocol):
    """What we use of a websockets connection."""

    async def recv(self) -> str | bytes:
        """Next frame."""
        ...

    async def send(self, message: str) -> None:
        """Send a frame."""
        ...


class MessageLogWriter:
    """Writes raw frames to the database in batches, off the receive path.

    A slow or failing database never blocks or breaks a charger's connection: frames queue up (up
    to a bound, beyond which new frames are not logged, with a warning). A batch that fails is
    written again row by row, so only the rows the database refuses are lost (and logged).
    """

    def __init__(self, sink: MessageSink, clock: Clock, max_queue: int = 100_000) -> None:
        self._sink = sink
        self._clock = clock
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=max_queue)
        self.dropped = 0

    def record(
        self,
        charge_point_id: str,
        direction: str,
        raw: str,
        when: datetime,
        parsed: list[Any] | None = None,
    ) -> None:
        """Queue one frame (never blocks). ``parsed``: the frame already decoded, if it was."""
        try:
            kind, unique_id, action, payload = summary(raw, parsed)
        except (ValueError, TypeError, IndexError, KeyError, RecursionError):
            kind, unique_id, action, payload = 0, "-1", None, {"raw": raw[:2000]}
        # PostgreSQL text cannot hold NUL: one hostile frame must not sink its whole batch.
        unique_id = unique_id.replace("\x00", "")
        action = None if action is None else action.replace("\x00", "")
        row = {
            "charge_point_id": charge_point_id,
            "direction": direction,
            "message_type": kind,
            "unique_id": unique_id[:64],
            "action": action,
            "payload": payload,
            "created_at": when,
        }
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("message log queue full: %d frames not logged", self.dropped)

    async def run(self) -> None:
        """Write batches until cancelled (then flush what is left)."""
        try:
            while True:
                rows = [await self._queue.get()]
                while len(rows) < BATCH and not self._queue.empty():
                    rows.append(self._queue.get_nowait())
                await self._write(rows)
        except asyncio.CancelledError:
            # Shutting down: write what is queued before the database goes away, but never hang
            # the shutdown on it (a connection wedged by the cancellation would wait forever).
            pending = self._queue.qsize()
            try:
                async with asyncio.timeout(SHUTDOWN_FLUSH_S):
                    await self.flush()
            except TimeoutError:
                log.error("message log: %d frames could not be written at shutdown", pending)
            raise

    async def flush(self) -> None:
        """Write everything queued now."""
        rows: list[dict[str, Any]] = []
        while not self._queue.empty():
            rows.append(self._queue.get_nowait())
        if rows:
            await self._write(rows)

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            await self._sink.log_messages_raw(rows)
            return
        except Exception:  # logged: the message log must never take a connection down
            if len(rows) == 1:
                log.exception("could not write a frame to the message log: %r", rows[0])
                return
            log.warning("a batch of %d frames failed; writing them one by one", len(rows))
        for row in rows:
            await self._write([row])


class LoggedConnection:
    """Wraps a websocket: logs each frame, answers malformed ones itself (see csms.ocpp.frames)."""

    def __init__(
        self,
        ws: Websocket,
        charge_point_id: str,
        version: str,
        writer: MessageLogWriter,
        clock: Clock,
        after_send: Callable[[str], None] | None = None,
        known_actions: frozenset[str] = frozenset(),
    ) -> None:
        self._known_actions = known_actions
        self._after_send = after_send
        self._ws = ws
        self._id = charge_point_id
        self._version = version
        self._writer = writer
        self._clock = clock

    async def recv(self) -> str:
        """Next well-formed frame; malformed frames get their CALLERROR and are skipped."""
        while True:
            raw = await self._ws.recv()
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            msg, problem = parse_frame(text, self._version, self._known_actions)
            if msg is None:  # unparseable: keep it raw, do not parse it a second time
                msg = [0, "-1", None, {"raw": text[:2000]}]
            self._writer.record(self._id, "in", text, self._clock.now(), msg)
            if problem is None:
                return text
            log.warning(
                "malformed frame answered with CALLERROR",
                extra={"charge_point": self._id, "ocpp_version": self._version},
            )
            await self.send(problem)

    async def send(self, message: str) -> None:
        """Send a frame (1.6 error codes spelled as in the 1.6 spec)."""
        text = fix_outgoing(message, self._version)
        await self._ws.send(text)
        self._writer.record(self._id, "out", text, self._clock.now())
        if self._after_send is not None:
            self._after_send(text)
