"""The websocket as the ocpp package sees it: every frame logged, malformed frames answered."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from csms.db.engine import RETRY_FIRST_DELAY_S, is_transient
from csms.domain.clock import Clock
from csms.domain.rate_limit import TokenBucket
from csms.ocpp.frames import CALL, fix_outgoing, for_package, parse_frame, summary

log = logging.getLogger(__name__)

BATCH = 500
SHUTDOWN_FLUSH_S = 5.0  # the most a shutdown waits for the last frames to be written
WRITE_RETRY_MAX_DELAY_S = 5.0  # longest pause between writes tried again while the database is away


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
    to a bound, beyond which new frames are not logged, with a warning). While the database is
    unreachable (a restart) a batch is kept and tried again with backoff until it is written. A
    batch the database refuses is written again row by row, so only the rows it refuses are lost
    (and logged).
    """

    def __init__(self, sink: MessageSink, clock: Clock, max_queue: int = 100_000) -> None:
        self._sink = sink
        self._clock = clock
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=max_queue)
        self.dropped = 0
        self.retries = 0  # writes tried again because the database was unavailable

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
        delay = RETRY_FIRST_DELAY_S
        while True:
            try:
                await self._sink.log_messages_raw(rows)
                return
            except Exception as exc:  # logged: the message log must never take a connection down
                if is_transient(exc):
                    # The database is away (a restart): keep the batch and try again, less often
                    # each time, for as long as it takes; frames that arrive meanwhile queue up
                    # (bounded: beyond it they are counted in ``dropped`` and logged). Writing row
                    # by row would only lose every row of the batch, one error at a time.
                    if delay == RETRY_FIRST_DELAY_S:
                        log.warning(
                            "message log: database unavailable, %d frames kept, retrying: %s",
                            len(rows),
                            type(exc).__name__,
                        )
                    self.retries += 1
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, WRITE_RETRY_MAX_DELAY_S)
                    continue
                if len(rows) == 1:
                    log.exception("could not write a frame to the message log: %r", rows[0])
                    return
                log.warning("a batch of %d frames failed; writing them one by one", len(rows))
                break
        for row in rows:
            await self._write([row])


# The head of a frame, enough to answer a CALL refused by the rate limit without parsing it all.
_HEAD = re.compile(r'\s*\[\s*([234])\s*,\s*"([^"\\]{0,36})"')
HEAD_CHARS = 64


class LoggedConnection:
    """Wraps a websocket: logs each frame, answers malformed ones itself (see csms.ocpp.frames),
    limits how fast the charger may send (csms.domain.rate_limit), and passes on only the answer to
    the call we are waiting for."""

    def __init__(
        self,
        ws: Websocket,
        charge_point_id: str,
        version: str,
        writer: MessageLogWriter,
        clock: Clock,
        after_send: Callable[[str], None] | None = None,
        known_actions: frozenset[str] = frozenset(),
        max_messages_per_s: float = 0.0,
        message_burst: int = 100,
    ) -> None:
        self._known_actions = known_actions
        self._after_send = after_send
        self._ws = ws
        self._id = charge_point_id
        self._version = version
        self._writer = writer
        self._clock = clock
        self.limit = TokenBucket(max_messages_per_s, message_burst, clock)
        self._refused_in_a_row = 0
        self._pending: str | None = None  # the id of our CALL whose answer we wait for

    def _extra(self) -> dict[str, Any]:
        return {"charge_point": self._id, "ocpp_version": self._version}

    async def recv(self) -> str:
        """Next frame for the ocpp package: a well-formed CALL, or the answer to our pending call.

        Malformed frames get their CALLERROR and are skipped; frames over the rate limit too.
        """
        while True:
            raw = await self._ws.recv()
            if not await self._admit(raw):
                continue
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            msg, problem = parse_frame(text, self._version, self._known_actions)
            # Unparseable: keep it raw, do not parse it a second time.
            logged = msg if msg is not None else [0, "-1", None, {"raw": text[:2000]}]
            self._writer.record(self._id, "in", text, self._clock.now(), logged)
            if problem is not None:
                log.warning("malformed frame answered with CALLERROR", extra=self._extra())
                await self.send(problem)
                continue
            if msg is None:
                log.warning("malformed CALLERROR dropped", extra=self._extra())
                continue
            if msg[0] == CALL:
                return text
            if msg[1] != self._pending:
                # An answer carries the id of the call it answers (1.6 §4.1.4, 2.0.1 part 4
                # §4.1.4); one to no call of ours answers nothing. The ocpp package would queue
                # it until its next call, unbounded, and then walk that queue recursively.
                log.warning("answer to no pending call dropped", extra=self._extra())
                continue
            self._pending = None
            return for_package(msg) or text

    async def _admit(self, raw: str | bytes) -> bool:
        """Take the frame under the rate limit? Refused frames are neither parsed, logged nor
        handled: a refused CALL gets a GenericError CALLERROR, anything else is dropped.

        Refused, not disconnected: a charger cut off reconnects at once (handshake, password check,
        boot), which costs more than a refusal, and a charger emptying its offline queue should
        slow down, not lose its connection. It resends a refused transaction-related message after
        its retry interval (1.6 §3.7.1, TransactionMessageAttempts / TransactionMessageRetryInterval;
        2.0.1 OCPPCommCtrlr.MessageAttemptsTransactionEvent / MessageAttemptIntervalTransactionEvent),
        by when the bucket has refilled. A refusal costs no JSON parse, no database, no log row.
        """
        if not self.limit.enabled:
            return True
        head = raw[:HEAD_CHARS]
        text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
        match = _HEAD.match(text)
        if match is not None and match[1] != "2" and match[2] == self._pending:
            return True  # the answer to our own call: we decide how many of those there are
        if self.limit.take():
            if self._refused_in_a_row:
                log.warning(
                    "rate limit: %d frames were refused",
                    self._refused_in_a_row,
                    extra=self._extra(),
                )
                self._refused_in_a_row = 0
            return True
        if not self._refused_in_a_row:
            log.warning(
                "rate limit exceeded (%g messages/s, burst %d): refusing frames",
                self.limit.rate_per_s,
                self.limit.burst,
                extra=self._extra(),
            )
        self._refused_in_a_row += 1
        if match is not None and match[1] == "2":
            description = (
                f"rate limit: at most {self.limit.rate_per_s:g} messages/s "
                f"(burst {self.limit.burst}); retry in {self.limit.wait_s():.1f} s"
            )
            await self._ws.send(json.dumps([4, match[2], "GenericError", description, {}]))
        await asyncio.sleep(0)  # a flood must not keep the other connections waiting
        return False

    async def send(self, message: str) -> None:
        """Send a frame (1.6 error codes spelled as in the 1.6 spec)."""
        text = fix_outgoing(message, self._version)
        if text.startswith("[2,"):
            # Our CALL (the ocpp package sends one at a time): only its answer will be passed on.
            # Noted before sending, as the answer may arrive before send() returns.
            self._pending = str(json.loads(text)[1])
        await self._ws.send(text)
        self._writer.record(self._id, "out", text, self._clock.now())
        if self._after_send is not None:
            self._after_send(text)
