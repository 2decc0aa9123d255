"""Which worker holds which charger's socket.

One key per charger, ``presence:{id}`` = ``"{nonce} {worker}"``, with an expiry the holder keeps
refreshing. The newest connection wins: a claim overwrites whatever is there (a charger reconnects
because it thinks its old socket is dead, and nginx may send it to another worker). Refresh and
release compare the whole value first (Lua), so a worker that lost a charger to a newer
connection can neither keep it alive nor delete the new holder's claim. Each worker also keeps a
heartbeat key: a worker killed with SIGKILL stops refreshing, and callers see it is gone within
``presence_ttl_s`` instead of waiting out their command timeout.

Lua scripts here build key names from the prefix and touch several keys: this needs a standalone
Redis (or Sentinel), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from csms.cluster.keys import BLOCK_S, Keys, close_pubsub, raise_if_cancelled, text
from csms.cluster.settings import ClusterSettings

log = logging.getLogger(__name__)

# KEYS[1]: the worker's charger set, KEYS[1 + i]: presence keys; ARGV[1]: ttl ms,
# ARGV[1 + i]: the value expected in KEYS[1 + i]. The set lives as long as the claims in it.
_REFRESH = """
local out = {}
redis.call('PEXPIRE', KEYS[1], ARGV[1])
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
return out
"""

# KEYS[1]: presence key, KEYS[2]: the worker's charger set.
# ARGV: expected value, charger id, channel, event.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  redis.call('PUBLISH', ARGV[3], ARGV[4])
  return 1
end
return 0
"""

# KEYS[1]: presence key, KEYS[2]: the worker's charger set.
# ARGV: value, ttl ms, charger id, channel, event. Claims only a charger nobody holds.
_CLAIM_IF_FREE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then
  return 0
end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""

# KEYS[1]: the worker's charger set. ARGV: presence key prefix, " {worker}".
# Members whose presence is gone or another worker's are pruned on the way (a worker does not
# learn at once that it lost a charger; whoever lists its chargers cleans up).
_CHARGERS_OF = """
local out = {}
local suffix = ARGV[2]
for _, cp in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. cp)
  if v and string.sub(v, -string.len(suffix)) == suffix then
    table.insert(out, cp)
  else
    redis.call('SREM', KEYS[1], cp)
  end
end
return out
"""

_REFRESH_BATCH = 500  # presence keys per script call: bounds the time Redis is busy with one


@dataclass(frozen=True, slots=True)
class Claim:
    """This worker's hold on one charger (one connection)."""

    charge_point_id: str
    worker_id: str
    nonce: str

    @property
    def value(self) -> str:
        """What the presence key holds while the claim stands."""
        return f"{self.nonce} {self.worker_id}"


def worker_of(value: str | None) -> str | None:
    """The worker in a presence (or lease) value ``"{nonce or token} {worker}"``."""
    if value is None or " " not in value:
        return None
    return value.split(" ", 1)[1]


class Presence:
    """Presence and heartbeat operations for one worker (its id comes from the settings)."""

    def __init__(self, redis: Redis, settings: ClusterSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.worker_id = settings.worker_id
        self._ttl_ms = max(1, round(settings.presence_ttl_s * 1000))
        self._refresh = redis.register_script(_REFRESH)
        self._release = redis.register_script(_RELEASE)
        self._claim_if_free = redis.register_script(_CLAIM_IF_FREE)
        self._chargers_of = redis.register_script(_CHARGERS_OF)

    async def claim(self, charge_point_id: str) -> Claim:
        """Hold the charger here from now on, taking it over from any other worker."""
        claim = Claim(charge_point_id, self.worker_id, secrets.token_hex(8))
        own = self.keys.chargers(self.worker_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.presence(charge_point_id), claim.value, px=self._ttl_ms)
            pipe.sadd(own, charge_point_id)
            pipe.pexpire(own, self._ttl_ms)
            pipe.publish(self.keys.presence_channel, self._event(charge_point_id, held=True))
            await pipe.execute()
        return claim

    async def claim_if_free(self, charge_point_id: str) -> Claim | None:
        """Hold the charger here unless some worker (this one included) already does."""
        claim = Claim(charge_point_id, self.worker_id, secrets.token_hex(8))
        done = await self._claim_if_free(
            keys=[self.keys.presence(charge_point_id), self.keys.chargers(self.worker_id)],
            args=[
                claim.value,
                self._ttl_ms,
                charge_point_id,
                self.keys.presence_channel,
                self._event(charge_point_id, held=True),
            ],
        )
        return claim if int(done) else None

    async def refresh(self, claims: Collection[Claim]) -> list[Claim]:
        """Extend the claims that still stand; returns those that do not (taken over, expired)."""
        ordered = list(claims)
        lost: list[Claim] = []
        for start in range(0, len(ordered), _REFRESH_BATCH):
            batch = ordered[start : start + _REFRESH_BATCH]
            kept = await self._refresh(
                keys=[
                    self.keys.chargers(self.worker_id),
                    *(self.keys.presence(c.charge_point_id) for c in batch),
                ],
                args=[self._ttl_ms, *(c.value for c in batch)],
            )
            lost.extend(c for c, ok in zip(batch, kept, strict=True) if not int(ok))
        return lost

    async def release(self, claim: Claim) -> bool:
        """Let the charger go if the claim still stands (a newer holder is left alone)."""
        done = await self._release(
            keys=[self.keys.presence(claim.charge_point_id), self.keys.chargers(self.worker_id)],
            args=[
                claim.value,
                claim.charge_point_id,
                self.keys.presence_channel,
                self._event(claim.charge_point_id, held=False),
            ],
        )
        return bool(int(done))

    async def holder(self, charge_point_id: str) -> str | None:
        """The worker holding the charger (alive or not: see ``is_alive``), or None."""
        return worker_of(text(await self.redis.get(self.keys.presence(charge_point_id))))

    async def holders(self, charge_point_ids: Sequence[str]) -> dict[str, str | None]:
        """The worker holding each charger (alive or not), or None; one round trip."""
        if not charge_point_ids:
            return {}
        values = await self.redis.mget([self.keys.presence(cp) for cp in charge_point_ids])
        return {cp: worker_of(text(v)) for cp, v in zip(charge_point_ids, values, strict=True)}

    async def chargers_of(self, worker_id: str) -> list[str]:
        """The chargers a worker holds, sorted."""
        found = await self._chargers_of(
            keys=[self.keys.chargers(worker_id)],
            args=[self.keys.presence(""), f" {worker_id}"],
        )
        return sorted(t for t in (text(v) for v in found) if t is not None)

    async def members_of(self, worker_id: str) -> set[str]:
        """The chargers in a worker's set, unchecked (a member may be stale: see chargers_of)."""
        return {t for t in map(text, await self.redis.smembers(self.keys.chargers(worker_id))) if t}

    async def forget(self, charge_point_id: str) -> None:
        """Drop a charger from this worker's set (another worker holds it now)."""
        await self.redis.srem(self.keys.chargers(self.worker_id), charge_point_id)

    async def heartbeat(self) -> None:
        """Say this worker is alive for another ``presence_ttl_s``."""
        own = self.keys.chargers(self.worker_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.alive(self.worker_id), "1", px=self._ttl_ms)
            pipe.sadd(self.keys.workers, self.worker_id)
            pipe.pexpire(own, self._ttl_ms)
            await pipe.execute()

    async def is_alive(self, worker_id: str) -> bool:
        """Has the worker sent a heartbeat within ``presence_ttl_s``?"""
        return bool(await self.redis.exists(self.keys.alive(worker_id)))

    async def live_workers(self) -> list[str]:
        """Workers with a current heartbeat, sorted; the others are dropped from the roster."""
        roster = sorted(t for t in map(text, await self.redis.smembers(self.keys.workers)) if t)
        if not roster:
            return []
        beats = await self.redis.mget([self.keys.alive(w) for w in roster])
        dead = [w for w, beat in zip(roster, beats, strict=True) if beat is None]
        if dead:
            await self.redis.srem(self.keys.workers, *dead)
        return [w for w, beat in zip(roster, beats, strict=True) if beat is not None]

    async def retire(self) -> None:
        """A clean stop: callers see at once that this worker is gone."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.alive(self.worker_id))
            pipe.srem(self.keys.workers, self.worker_id)
            await pipe.execute()

    def _event(self, charge_point_id: str, *, held: bool) -> str:
        return json.dumps({"cp": charge_point_id, "worker": self.worker_id, "held": held})


class PresenceKeeper:
    """The worker side: claims chargers as they connect, keeps the claims and the heartbeat fresh
    (every third of the TTL), releases them as they disconnect.

    The OCPP server calls ``connected``/``disconnected``; ``on_lost`` is told (synchronously;
    take note only) of chargers whose claim another worker took over, so their stale socket can
    be closed. A claim that merely expired is taken again.
    """

    def __init__(self, presence: Presence, on_lost: Callable[[str], None] | None = None) -> None:
        self.presence = presence
        self._on_lost = on_lost
        self._claims: dict[str, Claim] = {}
        self._unclaimed: set[str] = set()  # connected here while Redis was away: claim later
        self._interval_s = presence.settings.presence_ttl_s / 3

    def holds(self, charge_point_id: str) -> bool:
        """Does this worker believe it holds the charger?"""
        return charge_point_id in self._claims

    async def connected(self, charge_point_id: str) -> None:
        """A charger's socket is now served here. Never raises for Redis: the charger is served
        here anyway, and is claimed at the next beat if Redis cannot be reached now."""
        self._unclaimed.discard(charge_point_id)
        try:
            self._claims[charge_point_id] = await self.presence.claim(charge_point_id)
        except RedisError as exc:
            self._unclaimed.add(charge_point_id)
            log.warning(
                "presence not claimed yet: %s", exc, extra={"charge_point": charge_point_id}
            )
            return
        log.info("presence claimed", extra={"charge_point": charge_point_id})

    async def disconnected(self, charge_point_id: str) -> bool:
        """A charger's socket here is gone (and no newer one here replaced it). False when another
        worker holds the charger now: its newer connection is theirs to record."""
        was_unclaimed = charge_point_id in self._unclaimed
        self._unclaimed.discard(charge_point_id)
        claim = self._claims.pop(charge_point_id, None)
        if claim is None:
            # Never claimed (Redis was away: ours), or lost to another worker (theirs).
            return was_unclaimed
        try:
            if await self.presence.release(claim):
                return True
            holder = await self.presence.holder(charge_point_id)
        except RedisError as exc:  # the claim expires on its own
            log.warning("presence release failed: %s", exc, extra={"charge_point": charge_point_id})
            return True
        if holder is None or holder == self.presence.worker_id:
            return True  # expired meanwhile: nobody else holds it
        log.info("presence already taken over", extra={"charge_point": charge_point_id})
        return False

    async def beat(self) -> None:
        """One heartbeat, the claims Redis missed, and one refresh of every claim."""
        await self.presence.heartbeat()
        for charge_point_id in sorted(self._unclaimed):
            claim = await self.presence.claim(charge_point_id)
            if charge_point_id in self._unclaimed:  # not disconnected while we claimed
                self._unclaimed.discard(charge_point_id)
                self._claims[charge_point_id] = claim
            else:
                await self.presence.release(claim)
        for claim in await self.presence.refresh(list(self._claims.values())):
            await self._settle(claim)

    async def _settle(self, claim: Claim) -> None:
        """A claim that did not refresh: expired, or taken over by another worker."""
        cp = claim.charge_point_id
        if self._claims.get(cp) is not claim:
            return  # the charger disconnected, or reconnected here with a new claim, meanwhile
        # Expired (Redis or this process was away longer than the TTL): the socket is still
        # here, so hold the charger again — unless another worker has claimed it since.
        again = await self.presence.claim_if_free(cp)
        if again is not None:
            if self._claims.get(cp) is claim:
                self._claims[cp] = again
                log.info("presence had expired: claimed again", extra={"charge_point": cp})
            else:  # disconnected (or reconnected) while we claimed: leave the key to them
                await self.presence.release(again)
            return
        if self._claims.get(cp) is not claim:
            return
        del self._claims[cp]
        await self.presence.forget(cp)
        log.warning("presence taken over by another worker", extra={"charge_point": cp})
        if self._on_lost is not None:
            try:
                self._on_lost(cp)
            except Exception:  # a callback's bug must not stop the heartbeat
                log.exception("on_lost callback failed", extra={"charge_point": cp})

    async def run(self) -> None:
        """Beat until cancelled; then retire (best effort) so callers fail fast."""
        try:
            while True:
                raise_if_cancelled()
                try:
                    await self.beat()
                except RedisError as exc:
                    # Keep trying: claims expire on their own if Redis stays away too long.
                    log.warning("presence heartbeat failed: %s", exc)
                await asyncio.sleep(self._interval_s)
        finally:
            with contextlib.suppress(RedisError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.presence.retire()


# Seconds between full reads of presence by a directory. Events keep it current in between; the
# only changes without an event (expiries) come from dead workers, whose chargers are dropped as
# soon as their heartbeat is gone (checked every third of the presence TTL).
FULL_SYNC_S = 60.0


class PresenceDirectory:
    """A local mirror of who holds which charger, so that the synchronous
    ``ChargerGateway.is_connected`` can answer without a round trip. Kept current by presence
    events; dead workers' chargers dropped every third of the presence TTL; read in full every
    ``FULL_SYNC_S`` (one SMEMBERS per live worker, and a look at the presence keys of chargers two
    workers both list)."""

    def __init__(self, presence: Presence, full_sync_s: float = FULL_SYNC_S) -> None:
        self.presence = presence
        self._holders: dict[str, str] = {}
        self._interval_s = presence.settings.presence_ttl_s / 3
        self._full_sync_s = max(full_sync_s, self._interval_s)
        self.ready = asyncio.Event()  # set once subscribed and read in full

    def holder(self, charge_point_id: str) -> str | None:
        """The live worker holding the charger, as last known."""
        return self._holders.get(charge_point_id)

    def snapshot(self) -> dict[str, str]:
        """Charger → worker, as last known."""
        return dict(self._holders)

    async def sync(self) -> None:
        """Read presence in full (live workers only)."""
        holders: dict[str, str] = {}
        listed_twice: set[str] = set()
        for worker in await self.presence.live_workers():
            for cp in await self.presence.members_of(worker):
                if cp in holders:
                    listed_twice.add(cp)
                holders[cp] = worker
        if listed_twice:  # a take-over the old holder has not pruned yet: the key decides
            ordered = sorted(listed_twice)
            for cp, holder in (await self.presence.holders(ordered)).items():
                if holder is None:
                    holders.pop(cp, None)
                else:
                    holders[cp] = holder
        self._holders = holders

    async def drop_dead(self) -> None:
        """Forget the chargers of workers whose heartbeat is gone."""
        live = set(await self.presence.live_workers())
        self._holders = {cp: w for cp, w in self._holders.items() if w in live}

    def apply(self, raw: str | bytes) -> None:
        """One presence event."""
        try:
            event = json.loads(raw)
            cp, worker, held = str(event["cp"]), str(event["worker"]), bool(event["held"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("bad presence event %r: %s", raw, exc)
            return
        if held:
            self._holders[cp] = worker
        elif self._holders.get(cp) == worker:  # a late release must not erase a newer holder
            del self._holders[cp]

    async def run(self) -> None:
        """Follow presence until cancelled."""
        while True:
            raise_if_cancelled()
            pubsub = self.presence.redis.pubsub()
            try:
                await pubsub.subscribe(self.presence.keys.presence_channel)
                # Subscribed first, then read: no claim can fall between the two.
                await self.sync()
                self.ready.set()
                loop = asyncio.get_running_loop()
                next_check = loop.time() + self._interval_s
                next_sync = loop.time() + self._full_sync_s
                while True:
                    raise_if_cancelled()
                    wait = min(BLOCK_S, max(0.0, next_check - loop.time()))
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                    if message is not None and message.get("type") == "message":
                        self.apply(message["data"])
                    now = loop.time()
                    if now >= next_sync:
                        await self.sync()
                        next_sync = next_check = now + self._full_sync_s
                    elif now >= next_check:
                        await self.drop_dead()
                        next_check = now + self._interval_s
            except RedisError as exc:
                log.warning("presence directory: %s; retrying", exc)
                await asyncio.sleep(min(1.0, self._interval_s))
            finally:
                await close_pubsub(pubsub)
