"""A token bucket: how fast one charger connection may send messages. Pure, over an injected clock.

The bucket holds up to ``burst`` tokens and gains ``rate_per_s`` tokens per second of the clock;
each message takes one, and a message that finds no token is refused. So a charger may send
``burst`` messages at once (a boot, an offline queue) and ``rate_per_s`` on average after that.

Time is the central system's clock, not the wall clock: in a replay at speed S a simulated
charger sends S times as many messages per real second, and so may it (the limit is about how a
charger behaves in its own time). In production the clock is the wall clock. A clock set back
(only a test clock can be) adds no tokens.
"""

from __future__ import annotations

import math

from csms.domain.clock import Clock

EPSILON = 1e-9  # float error must not refuse a message sent exactly on time


class TokenBucket:
    """``rate_per_s`` messages per second on average, ``burst`` at once; a rate of 0: no limit."""

    def __init__(self, rate_per_s: float, burst: int, clock: Clock) -> None:
        if not (math.isfinite(rate_per_s) and rate_per_s >= 0):
            raise ValueError(f"rate_per_s must be a finite number >= 0, not {rate_per_s!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.now()
        self.refused = 0  # messages refused so far

    @property
    def enabled(self) -> bool:
        """Is there a limit at all?"""
        return self.rate_per_s > 0

    @property
    def tokens(self) -> float:
        """Tokens left now (a message needs a whole one)."""
        self._refill()
        return self._tokens

    def take(self) -> bool:
        """Take a token for one message: True if it may go through, False if it is refused."""
        if not self.enabled:
            return True
        self._refill()
        if self._tokens >= 1.0 - EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        self.refused += 1
        return False

    def wait_s(self) -> float:
        """Seconds of clock time until the next message would be taken (0: now)."""
        if not self.enabled:
            return 0.0
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate_per_s)

    def _refill(self) -> None:
        now = self._clock.now()
        elapsed = (now - self._last).total_seconds()
        self._last = now
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate_per_s)
