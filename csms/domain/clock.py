"""One clock for the whole central system, so tests can use a manual one and replays a fast one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the time (aware, UTC) and waits in its own time."""

    def now(self) -> datetime:
        """The current time."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """Wall-clock time."""

    speed = 1.0

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of real time."""
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Replay time: ``start`` + ``speed`` × real time elapsed since ``anchor``.

    ``anchor`` is the wall-clock instant (UTC) at which this clock reads ``start``; by default the
    moment the clock is made. Two processes given the same start, speed and anchor agree on the time,
    which is how the central system and the simulator replay a day together.
    """

    def __init__(
        self,
        start: datetime,
        speed: float = 1.0,
        *,
        anchor: datetime | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock's start must be timezone-aware")
        if not speed > 0:
            raise ValueError(f"the clock's speed must be > 0, not {speed!r}")
        self._start = start.astimezone(UTC)
        self.speed = float(speed)
        self._wall = wall
        self._anchor = anchor.timestamp() if anchor is not None else wall()

    @property
    def start(self) -> datetime:
        """The time this clock reads at its anchor."""
        return self._start

    def now(self) -> datetime:
        """Replayed time."""
        return self._start + timedelta(seconds=(self._wall() - self._anchor) * self.speed)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of replayed time (``seconds / speed`` of real time)."""
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class ManualClock:
    """A clock that only moves when told (tests). ``sleep`` returns once the clock was moved past
    the end of the wait."""

    speed = 1.0

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        """The time it was set to."""
        return self._now

    def set(self, when: datetime) -> None:
        """Move the clock."""
        self._now = when

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock was moved ``seconds`` past now (polls: tests move it by hand)."""
        until = self._now + timedelta(seconds=max(0.0, seconds))
        while self._now < until:
            await asyncio.sleep(0.005)
