"""One planning leader per site: a lease in Redis with a fencing token.

``lease:{site}`` = ``"{token} {worker}"`` with an expiry (``lease_ttl_s``); ``fence:{site}`` is a
counter that only grows, so every new lease gets a larger token than any before it. The leader
renews every third of the TTL. A leader that stops (SIGKILL, partition, long pause) loses the lease
when it expires and another worker takes it with a new token.

A paused leader does not know it was replaced: when it wakes it still believes it leads. Hence
``check_fence`` right before each dispatch: it passes only if the token is still the current
lease's and the lease has more than ``fence_margin_s`` left. Chargers cannot check tokens
themselves, so the check is made as late as possible — by the worker holding the socket, just
before the call (csms.cluster.routing) — which leaves only that last local step unfenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from csms.cluster.keys import Keys, raise_if_cancelled, text
from csms.cluster.settings import ClusterSettings
from csms.domain.leadership import Fence

log = logging.getLogger(__name__)

# KEYS[1]: lease, KEYS[2]: fence counter. ARGV: worker, ttl ms. The token is taken only when the
# lease is free, in the same atomic step as the lease itself: tokens have no gaps a paused
# contender could slip into, and a lease always carries the largest token so far.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ' ' .. ARGV[1], 'PX', ARGV[2], 'NX')
return token
"""

# KEYS[1]: lease. ARGV: value, ttl ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1]: lease. ARGV: value.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1]: lease. ARGV: value, least time left (ms).
_CHECK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  return 0
end
return 1
"""

_MGET_BATCH = 500  # lease keys read per round trip

# Redis expires keys by its own clock; ours may run a little faster (Redlock's drift allowance).
_DRIFT = 0.01


@dataclass(frozen=True, slots=True)
class Lease:
    """A site's planning lease as held by one worker."""

    site_id: str
    token: int
    worker_id: str

    @property
    def value(self) -> str:
        """What the lease key holds while the lease stands."""
        return f"{self.token} {self.worker_id}"


class Leases:
    """Lease operations for one worker."""

    def __init__(self, redis: Redis, settings: ClusterSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.worker_id = settings.worker_id
        self.ttl_s = settings.lease_ttl_s
        self._ttl_ms = max(1, round(settings.lease_ttl_s * 1000))
        self._margin_ms = round(settings.fence_margin_s * 1000)
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._check = redis.register_script(_CHECK)

    async def acquire(self, site_id: str) -> Lease | None:
        """Take the site's lease with a new token if nobody holds it (this worker included)."""
        token = await self._acquire(
            keys=[self.keys.lease(site_id), self.keys.fence(site_id)],
            args=[self.worker_id, self._ttl_ms],
        )
        return None if token is None else Lease(site_id, int(token), self.worker_id)

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease by a full TTL if it is still this one."""
        return bool(
            int(
                await self._renew(
                    keys=[self.keys.lease(lease.site_id)], args=[lease.value, self._ttl_ms]
                )
            )
        )

    async def release(self, lease: Lease) -> bool:
        """Give the lease up if it is still this one (another worker can take it at once)."""
        return bool(
            int(await self._release(keys=[self.keys.lease(lease.site_id)], args=[lease.value]))
        )

    async def check_fence(self, site_id: str, token: int, worker_id: str | None = None) -> bool:
        """Is ``token`` the current lease on the site, held by ``worker_id`` (default: this
        worker), with more than ``fence_margin_s`` left? One atomic step in Redis; call it right
        before each dispatch. (The holder is compared too: should Redis lose the counter, a new
        lease could reuse an old token number.)"""
        holder = self.worker_id if worker_id is None else worker_id
        passed = await self._check(
            keys=[self.keys.lease(site_id)],
            args=[Lease(site_id, token, holder).value, self._margin_ms],
        )
        return bool(int(passed))

    async def check(self, fence: Fence) -> bool:
        """``check_fence`` for a fence made on any worker."""
        return await self.check_fence(fence.site_id, fence.token, fence.worker_id)

    async def free(self, site_ids: Sequence[str]) -> set[str]:
        """Those of the sites nobody leads now (one MGET per 500 sites)."""
        out: set[str] = set()
        for start in range(0, len(site_ids), _MGET_BATCH):
            batch = site_ids[start : start + _MGET_BATCH]
            values = await self.redis.mget([self.keys.lease(s) for s in batch])
            out.update(s for s, v in zip(batch, values, strict=True) if v is None)
        return out

    async def current(self, site_id: str) -> Lease | None:
        """Who leads the site now, if anyone."""
        value = text(await self.redis.get(self.keys.lease(site_id)))
        if value is None or " " not in value:
            return None
        token, worker = value.split(" ", 1)
        return Lease(site_id, int(token), worker)


GainCallback = Callable[[str, int], None]
LossCallback = Callable[[str], None]


LiveWorkers = Callable[[], Awaitable[int]]

# Ticks a worker keeps a site it just gained before it may hand it on to balance the load: a
# take-over costs a reconciliation of the site's chargers, so leadership must not flap.
_KEEP_TICKS = 6


class LeaseKeeper:
    """Acquires, renews and gives up the leases of a set of sites, every third of the TTL.

    Sites are shared out among the live workers (``live_workers`` counts them): a worker under its
    fair share (sites / workers, rounded up) takes a free site at once; one at or over it takes a
    free site only when it was already free at its previous tick (nobody under their share wanted
    it, e.g. its leader died and the others are full); one over its share hands one site a tick
    back (released: a worker under its share takes it at its next tick). Without ``live_workers``
    every free site is taken at once.

    ``is_leader``/``token`` answer from memory, and stop answering yes as soon as the lease may
    have expired by this worker's clock even if Redis could not be reached to say so. ``on_gain``
    (site, token) and ``on_loss`` (site) are called synchronously: take note only.
    """

    def __init__(
        self,
        leases: Leases,
        sites: Iterable[str] = (),
        *,
        on_gain: GainCallback | None = None,
        on_loss: LossCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        live_workers: LiveWorkers | None = None,
    ) -> None:
        self.leases = leases
        self._sites = set(sites)
        self._live_workers = live_workers
        self._ticks = 0
        self._gained_at: dict[str, int] = {}  # tick of each gain
        self._seen_free: set[str] = set()  # sites found free (and left) at the previous tick
        self._on_gain = on_gain
        self._on_loss = on_loss
        self._clock = clock
        self._held: dict[str, Lease] = {}
        self._valid_until: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._interval_s = leases.ttl_s / 3

    def listen(self, on_gain: GainCallback | None, on_loss: LossCallback | None) -> None:
        """Who to tell of gains and losses from now on (the smart-charging loop, built after the
        cluster is joined)."""
        self._on_gain, self._on_loss = on_gain, on_loss

    def set_sites(self, sites: Iterable[str]) -> None:
        """The sites to lead from now on (sites dropped are released at the next tick)."""
        self._sites = set(sites)
        self._wake.set()

    def is_leader(self, site_id: str) -> bool:
        """Does this worker lead the site (lease held and not possibly expired)?"""
        return site_id in self._held and self._clock() < self._valid_until[site_id]

    def token(self, site_id: str) -> int | None:
        """The fencing token to dispatch the site's profiles with, while leading it."""
        return self._held[site_id].token if self.is_leader(site_id) else None

    def fence(self, site_id: str) -> Fence | None:
        """What to dispatch the site's profiles under, while leading it."""
        token = self.token(site_id)
        return None if token is None else Fence(site_id, token, self.leases.worker_id)

    def leading(self) -> set[str]:
        """The sites this worker leads."""
        return {s for s in self._held if self.is_leader(s)}

    async def tick(self) -> None:
        """Renew what is held, give up what is no longer wanted (or, over the fair share, one
        site to balance), try to take the rest."""
        self._ticks += 1
        for site_id, lease in list(self._held.items()):
            if site_id not in self._sites:
                with contextlib.suppress(RedisError):
                    await self.leases.release(lease)
                self._lose(site_id, "site no longer managed")
                continue
            started = self._clock()
            try:
                renewed = await self.leases.renew(lease)
            except RedisError as exc:
                if self._clock() >= self._valid_until[site_id]:
                    self._lose(site_id, f"could not renew: {exc}")
                else:
                    log.warning("lease of %s not renewed yet: %s", site_id, exc)
                continue
            if renewed:
                self._valid_until[site_id] = started + self.leases.ttl_s * (1 - _DRIFT)
            else:
                self._lose(site_id, "lease expired or taken over")
        share = await self._fair_share()
        await self._hand_on_one(share)
        try:
            free = await self.leases.free(sorted(self._sites - set(self._held)))
        except RedisError as exc:
            log.warning("leases not read: %s", exc)
            return
        seen_free: set[str] = set()
        for site_id in sorted(free):
            if len(self._held) >= share and site_id not in self._seen_free:
                # At our share: leave it one tick to a worker under theirs.
                seen_free.add(site_id)
                continue
            started = self._clock()
            try:
                gained = await self.leases.acquire(site_id)
            except RedisError as exc:
                log.warning("lease of %s not acquired: %s", site_id, exc)
                continue
            if gained is not None:
                self._held[site_id] = gained
                self._valid_until[site_id] = started + self.leases.ttl_s * (1 - _DRIFT)
                self._gained_at[site_id] = self._ticks
                log.info("leading site %s with token %d", site_id, gained.token)
                self._call(self._on_gain, site_id, gained.token)
        self._seen_free = seen_free

    async def _fair_share(self) -> int:
        """Sites per live worker, rounded up (every site, without a worker count)."""
        if self._live_workers is None:
            return len(self._sites)
        try:
            workers = max(1, await self._live_workers())
        except RedisError as exc:
            log.warning("live workers not counted: %s", exc)
            return len(self._sites)
        return -(-len(self._sites) // workers)

    async def _hand_on_one(self, share: int) -> None:
        """Over the fair share: release the site held longest enough, for another to take."""
        if len(self._held) <= share:
            return
        settled = [s for s in self._held if self._ticks - self._gained_at.get(s, 0) >= _KEEP_TICKS]
        if not settled:
            return
        site_id = max(settled)
        with contextlib.suppress(RedisError):
            await self.leases.release(self._held[site_id])
        self._lose(site_id, f"handed on: this worker leads more than its share ({share})")

    async def run(self) -> None:
        """Tick until cancelled; then release every lease (best effort) so another worker takes
        over at once instead of after the TTL."""
        try:
            while True:
                raise_if_cancelled()
                self._wake.clear()
                await self.tick()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval_s):
                        await self._wake.wait()
        finally:
            await self.release_all()

    async def release_all(self) -> None:
        """Give up every lease held (bounded to one second: used on the way out)."""
        for site_id, lease in list(self._held.items()):
            with contextlib.suppress(RedisError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.leases.release(lease)
            self._lose(site_id, "stopping")

    def _lose(self, site_id: str, why: str) -> None:
        self._held.pop(site_id, None)
        self._gained_at.pop(site_id, None)
        self._valid_until.pop(site_id, None)
        log.warning("no longer leading site %s: %s", site_id, why)
        self._call(self._on_loss, site_id)

    @staticmethod
    def _call(callback: Callable[..., None] | None, *args: object) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # a callback's bug must not stop the leases being kept
            log.exception("lease callback failed")
