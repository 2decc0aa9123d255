"""Brute-force protection for logins (chargers' HTTP Basic auth, console sign-ins): pure, over an
injected clock.

A key (a charger id, a user name, a remote address) that fails ``max_failures`` times within
``window_s`` is locked out for ``lockout_s``; a lockout that follows the end of the previous one
within ``max_lockout_s`` lasts twice as long, up to ``max_lockout_s``, so a patient attacker gets
ever fewer guesses while a charger with a stale password is back within a minute once it is fixed.
While a key is locked out, attempts are refused before the password is looked at: no scrypt work
for an attacker to make us do. At most ``max_keys`` keys are tracked; the least recently touched is
forgotten first, so memory stays bounded whatever an attacker sends.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from csms.domain.clock import Clock

IPV6_PREFIX = 64  # one subscriber usually gets a whole /64: key IPv6 addresses by it
MAX_STRIKES = 32  # 2**32 lockouts: far past any max_lockout_s; keeps the arithmetic finite


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """When a key is locked out and for how long."""

    max_failures: int = 5
    window_s: float = 300.0
    lockout_s: float = 60.0
    max_lockout_s: float = 3600.0
    max_keys: int = 10_000

    def __post_init__(self) -> None:
        problems = []
        if self.max_failures < 1:
            problems.append(f"max_failures must be at least 1, not {self.max_failures}")
        if not self.window_s > 0:
            problems.append(f"window_s must be > 0, not {self.window_s}")
        if not self.lockout_s > 0:
            problems.append(f"lockout_s must be > 0, not {self.lockout_s}")
        if not self.max_lockout_s >= self.lockout_s:
            problems.append(
                f"max_lockout_s ({self.max_lockout_s}) must be at least lockout_s "
                f"({self.lockout_s})"
            )
        if self.max_keys < 1:
            problems.append(f"max_keys must be at least 1, not {self.max_keys}")
        if problems:
            raise ValueError("; ".join(problems))

    def lockout_for(self, strikes: int) -> float:
        """How long the lockout after ``strikes`` earlier ones in a row lasts."""
        return min(self.lockout_s * 2.0 ** min(strikes, MAX_STRIKES), self.max_lockout_s)


@dataclass(slots=True)
class _Entry:
    failures: deque[float]  # times of recent failures (seconds), at most max_failures of them
    locked_until: float = -math.inf
    strikes: int = 0  # lockouts in a row so far


class LoginThrottle:
    """Failures and lockouts of one kind of key (e.g. charger ids)."""

    def __init__(self, policy: ThrottlePolicy, clock: Clock) -> None:
        self.policy = policy
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None when it may try now."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._now()
        if entry.locked_until > now:
            return entry.locked_until - now
        if self._stale(entry, now):
            del self._entries[key]  # nothing left to remember: free the slot now
        return None

    def failure(self, key: str) -> float | None:
        """Record a failed attempt; the lockout's length in seconds if it started one, else None.

        A failure while the key is locked out is not counted: callers refuse those attempts before
        checking anything, and one that raced past the check must not lengthen the lockout."""
        now = self._now()
        entry = self._touch(key)
        if entry.locked_until > now:
            return None
        p = self.policy
        while entry.failures and entry.failures[0] <= now - p.window_s:
            entry.failures.popleft()
        entry.failures.append(now)
        if len(entry.failures) < p.max_failures:
            return None
        if now - entry.locked_until > p.max_lockout_s:
            entry.strikes = 0  # quiet for as long as the longest lockout: start over
        duration = p.lockout_for(entry.strikes)
        entry.strikes = min(entry.strikes + 1, MAX_STRIKES)
        entry.locked_until = now + duration
        entry.failures.clear()
        return duration

    def success(self, key: str) -> None:
        """Forget the key: its failures and its lockout history."""
        self._entries.pop(key, None)

    def _touch(self, key: str) -> _Entry:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        while len(self._entries) >= self.policy.max_keys:
            self._entries.popitem(last=False)  # the least recently touched
        entry = _Entry(deque(maxlen=self.policy.max_failures))
        self._entries[key] = entry
        return entry

    def _stale(self, entry: _Entry, now: float) -> bool:
        """Nothing this entry holds can matter any more."""
        p = self.policy
        recent = any(t > now - p.window_s for t in entry.failures)
        streak_over = entry.strikes == 0 or now - entry.locked_until > p.max_lockout_s
        return not recent and streak_over


@dataclass(slots=True)
class LoginGuard:
    """Throttles attempts by identity (charger id, user name) and by remote address together.

    An attempt is refused while either key is locked out. A success forgets the identity's
    failures but not the address's: one valid credential must not launder guesses at others from
    the same place; the address's failures age out of the window instead.
    """

    by_identity: LoginThrottle
    by_address: LoginThrottle | None = field(default=None)

    @classmethod
    def create(
        cls, identity: ThrottlePolicy, address: ThrottlePolicy | None, clock: Clock
    ) -> LoginGuard:
        """A guard with these policies (``address`` None: no limit per address)."""
        return cls(
            LoginThrottle(identity, clock),
            LoginThrottle(address, clock) if address is not None else None,
        )

    @classmethod
    def from_limits(
        cls,
        *,
        per_identity: int,
        per_address: int,
        window_s: float,
        lockout_s: float,
        max_lockout_s: float,
        clock: Clock,
    ) -> LoginGuard:
        """A guard allowing ``per_identity`` failures per id or name and ``per_address`` per
        remote address (0: no limit per address) within the same window and lockouts."""

        def policy(max_failures: int) -> ThrottlePolicy:
            return ThrottlePolicy(
                max_failures=max_failures,
                window_s=window_s,
                lockout_s=lockout_s,
                max_lockout_s=max_lockout_s,
            )

        return cls.create(
            policy(per_identity), policy(per_address) if per_address > 0 else None, clock
        )

    def retry_after(self, identity: str, address: str | None) -> float | None:
        """Seconds until this attempt may be made, or None when it may be made now."""
        waits = [self.by_identity.retry_after(identity)]
        if self.by_address is not None and address is not None:
            waits.append(self.by_address.retry_after(address))
        known = [w for w in waits if w is not None]
        return max(known) if known else None

    def failed(self, identity: str, address: str | None) -> float | None:
        """Record a failed attempt; seconds of the longest lockout it started, else None."""
        started = [self.by_identity.failure(identity)]
        if self.by_address is not None and address is not None:
            started.append(self.by_address.failure(address))
        known = [s for s in started if s is not None]
        return max(known) if known else None

    def succeeded(self, identity: str) -> None:
        """A successful login: the identity starts afresh."""
        self.by_identity.success(identity)


def address_key(host: str | None) -> str | None:
    """The key of a remote address: an IPv4 address as is, an IPv6 one by its /64 (an IPv4-mapped
    one as IPv4), anything else (a test client's name) verbatim; None when unknown."""
    if not host:
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def retry_after_header(seconds: float) -> str:
    """An HTTP Retry-After value (whole seconds, rounded up, at least 1; RFC 9110 §10.2.3)."""
    return str(max(1, math.ceil(seconds)))
