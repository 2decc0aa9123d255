"""The simulator's clock: simulated time that may run faster than real time.

Every simulated charger of one run shares one clock, so they all agree on "now" and a central
system started with the same start time and speed sees a consistent site. ``speed`` 60 plays an
hour in a minute. Times are aware UTC datetimes; durations passed to :meth:`Clock.sleep` are in
simulated seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from charge_point_sim.errors import InvalidModelError
from charge_point_sim.profiles import finite, is_aware


class Clock(Protocol):
    """What the OCPP sides and the session driver need from time."""

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        ...

    def now(self) -> datetime:
        """The current simulated time (aware UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time."""
        ...


class ScaledClock:
    """Simulated time = ``start`` + ``speed`` x real time elapsed since the clock was made.

    With ``anchor`` (an aware wall-clock instant), simulated time = ``start`` + ``speed`` x the
    wall-clock time elapsed since ``anchor`` instead: a central system in another process given
    the same start, speed and anchor reads the same time (a restart of either does not move it).
    """

    def __init__(
        self,
        start: datetime | None = None,
        speed: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        anchor: datetime | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not (finite(speed) and speed > 0):
            raise InvalidModelError("speed must be > 0")
        if start is not None and (start.tzinfo is None or not is_aware(start)):
            raise InvalidModelError("start must be timezone-aware")
        if anchor is not None and not is_aware(anchor):
            raise InvalidModelError("anchor must be timezone-aware")
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._speed = float(speed)
        if anchor is None:
            self._monotonic = monotonic
            self._t0 = monotonic()
        else:
            self._monotonic = wall
            self._t0 = anchor.timestamp()

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def start(self) -> datetime:
        """The simulated time at which the clock was made."""
        return self._start

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(self._monotonic() - self._t0) * self._speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._speed)


async def sleep_until(clock: Clock, t: datetime) -> None:
    """Wait on ``clock`` until the simulated time ``t`` (at once if it has passed)."""
    await clock.sleep((t - clock.now()).total_seconds())


async def wait_event(clock: Clock, event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` of simulated time for ``event``; True when it was set."""
    if event.is_set():
        return True
    try:
        await asyncio.wait_for(event.wait(), max(0.0, seconds) / clock.speed)
    except TimeoutError:
        return False
    return True
