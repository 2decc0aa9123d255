"""Site leases with fencing tokens, and the keeper that holds them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from csms.cluster.leadership import Lease, LeaseKeeper, Leases
from csms.cluster.settings import ClusterSettings
from tests.cluster.conftest import eventually

Make = Callable[..., ClusterSettings]


async def test_acquire_renew_release(redis: Redis, make_settings: Make) -> None:
    a, b = Leases(redis, make_settings("A")), Leases(redis, make_settings("B"))
    first = await a.acquire("s1")
    assert first is not None
    assert await a.current("s1") == first
    assert await a.acquire("s1") is None  # held, even by the asker
    assert await b.acquire("s1") is None
    assert await a.renew(first)
    assert await a.check_fence("s1", first.token)
    assert await a.release(first)
    assert await a.current("s1") is None
    second = await b.acquire("s1")  # at once, not after the TTL
    assert second is not None
    assert second.token > first.token
    assert not await a.release(first)  # not A's any more: B's lease stays
    assert await b.current("s1") == second


async def test_sites_are_independent(redis: Redis, make_settings: Make) -> None:
    a, b = Leases(redis, make_settings("A")), Leases(redis, make_settings("B"))
    assert await a.acquire("s1") is not None
    assert await b.acquire("s2") is not None


async def test_only_one_of_many_concurrent_contenders_leads(
    redis: Redis, make_settings: Make
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    contenders = [Leases(redis, make_settings(f"w{i}")) for i in range(25)]
    tokens: list[int] = []
    for round_ in range(40):
        site = f"s{rng.randrange(3)}"
        # Release what is held on the site (by its holder) half of the time first.
        current = await contenders[0].current(site)
        if current is not None and rng.random() < 0.5:
            holder = next(c for c in contenders if c.worker_id == current.worker_id)
            assert await holder.release(current)
        group = rng.sample(contenders, rng.randrange(2, len(contenders)))
        won = [lease for lease in await asyncio.gather(*(c.acquire(site) for c in group)) if lease]
        assert len(won) <= 1, f"seed {seed}, round {round_}: {won}"
        if current is None or won:
            assert len(won) == 1, f"seed {seed}, round {round_}: the free lease went to nobody"
            tokens.append(won[0].token)
            assert await contenders[0].current(site) == won[0]
    assert tokens, f"seed {seed}"


async def test_tokens_only_grow(redis: Redis, make_settings: Make) -> None:
    workers = [Leases(redis, make_settings(f"w{i}")) for i in range(4)]
    tokens = []
    for i in range(20):
        lease = await workers[i % 4].acquire("s1")
        assert lease is not None
        tokens.append(lease.token)
        await workers[i % 4].release(lease)
    assert tokens == sorted(set(tokens))


async def test_renew_by_a_non_holder_fails(redis: Redis, make_settings: Make) -> None:
    a, b = Leases(redis, make_settings("A")), Leases(redis, make_settings("B"))
    lease = await a.acquire("s1")
    assert lease is not None
    assert not await b.renew(Lease("s1", lease.token, "B"))  # B, with A's token
    assert not await a.renew(Lease("s1", lease.token + 1, "A"))  # A, with a token not issued
    assert not await b.check_fence("s1", lease.token)  # the token is A's, not B's
    assert await b.check_fence("s1", lease.token, "A")  # checked for A (by the socket holder)
    assert not await b.release(Lease("s1", lease.token, "B"))
    assert await a.current("s1") == lease


async def test_an_expired_lease_moves_and_the_old_token_is_fenced_off(
    redis: Redis, make_settings: Make
) -> None:
    a = Leases(redis, make_settings("A", lease_ttl_s=0.3))
    b = Leases(redis, make_settings("B"))
    old = await a.acquire("s1")
    assert old is not None
    # A pauses (no renewals); B keeps trying.
    await eventually(lambda: _acquired(b, "s1"), "B takes the lease once A's expires")
    new = await b.current("s1")
    assert new is not None
    assert new.worker_id == "B"
    assert new.token > old.token
    # A wakes up believing it leads: its token no longer passes, nor can it renew.
    assert not await a.check_fence("s1", old.token)
    assert not await a.renew(old)
    assert await b.check_fence("s1", new.token)


async def _acquired(leases: Leases, site: str) -> bool:
    return await leases.acquire(site) is not None


async def test_a_lease_about_to_lapse_fails_the_fence(redis: Redis, make_settings: Make) -> None:
    a = Leases(redis, make_settings("A", lease_ttl_s=3.0, fence_margin_s=1.4))
    lease = await a.acquire("s1")
    assert lease is not None
    assert await a.check_fence("s1", lease.token)
    key = a.keys.lease("s1")
    await eventually(lambda: _pttl_below(redis, key, 1400), "less than the margin left")
    assert not await a.check_fence("s1", lease.token)
    assert await a.renew(lease)
    assert await a.check_fence("s1", lease.token)


async def _pttl_below(redis: Redis, key: str, ms: int) -> bool:
    return await redis.pttl(key) < ms


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int | None]] = []

    def gain(self, site: str, token: int) -> None:
        self.events.append(("gain", site, token))

    def loss(self, site: str) -> None:
        self.events.append(("loss", site, None))


def keeper(redis: Redis, settings: ClusterSettings, sites: list[str], rec: Recorder) -> LeaseKeeper:
    return LeaseKeeper(Leases(redis, settings), sites, on_gain=rec.gain, on_loss=rec.loss)


async def test_keepers_share_out_sites_with_one_leader_each(
    redis: Redis, make_settings: Make
) -> None:
    sites = ["s1", "s2", "s3"]
    recorders = [Recorder() for _ in range(6)]
    keepers = [keeper(redis, make_settings(f"w{i}"), sites, rec) for i, rec in enumerate(recorders)]
    rng = random.Random()
    for _ in range(15):
        order = rng.sample(keepers, len(keepers))
        await asyncio.gather(*(k.tick() for k in order))
        for site in sites:
            leaders = [k for k in keepers if k.is_leader(site)]
            assert len(leaders) == 1, (site, [k.leases.worker_id for k in leaders])
            current = await keepers[0].leases.current(site)
            assert current is not None
            assert current.worker_id == leaders[0].leases.worker_id
            assert leaders[0].token(site) == current.token
        await asyncio.sleep(0.05)
    # Renewed all along: each site was gained once, by one keeper, and never lost.
    gains = [e for rec in recorders for e in rec.events]
    assert sorted(site for _, site, _ in gains) == sites
    assert all(kind == "gain" for kind, _, _ in gains)


async def test_keeper_loses_a_lease_taken_over_while_it_was_paused(
    redis: Redis, make_settings: Make
) -> None:
    rec_a, rec_b = Recorder(), Recorder()
    a = keeper(redis, make_settings("A", lease_ttl_s=1.0), ["s1"], rec_a)
    b = keeper(redis, make_settings("B"), ["s1"], rec_b)
    await a.tick()
    assert a.is_leader("s1")
    old = a.fence("s1")
    assert old is not None

    async def b_leads() -> bool:
        await b.tick()
        return b.is_leader("s1")

    await eventually(b_leads, "B leads once A's lease expired")  # A is paused: no ticks
    # By its own clock A's lease may have expired: it no longer claims to lead, before any tick.
    assert not a.is_leader("s1")
    assert a.token("s1") is None
    assert not await a.leases.check(old)
    await a.tick()  # A wakes: renew fails, the loss is reported, B stays
    assert rec_a.events == [("gain", "s1", old.token), ("loss", "s1", None)]
    assert b.is_leader("s1")
    assert rec_b.events[0][:2] == ("gain", "s1")


async def test_keeper_releases_sites_it_no_longer_manages_and_on_stop(
    redis: Redis, make_settings: Make
) -> None:
    rec = Recorder()
    a = keeper(redis, make_settings("A"), ["s1", "s2"], rec)  # 30 s leases
    other = Leases(redis, make_settings("B"))
    await a.tick()
    assert a.leading() == {"s1", "s2"}
    a.set_sites(["s2"])
    await a.tick()
    assert a.leading() == {"s2"}
    assert await other.acquire("s1") is not None  # released: no need to wait 30 s

    task = asyncio.create_task(a.run())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert a.leading() == set()
    assert await other.acquire("s2") is not None
    assert [e[0] for e in rec.events] == ["gain", "gain", "loss", "loss"]


async def test_keeper_stops_leading_when_redis_is_unreachable_past_the_lease(
    redis: Redis, make_settings: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    rec = Recorder()
    leases = Leases(redis, make_settings("A", lease_ttl_s=10))
    a = LeaseKeeper(leases, ["s1"], on_gain=rec.gain, on_loss=rec.loss, clock=lambda: now[0])
    await a.tick()
    assert a.is_leader("s1")

    async def unreachable(_lease: Lease) -> bool:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(leases, "renew", unreachable)
    now[0] += 5  # within the lease: still leading
    await a.tick()
    assert a.is_leader("s1")
    now[0] += 5  # the lease may have expired in Redis by now
    assert not a.is_leader("s1")
    await a.tick()
    assert [e[0] for e in rec.events] == ["gain", "loss"]


async def test_sites_are_shared_out_among_live_workers_and_move_when_one_stops(
    redis: Redis, make_settings: Make
) -> None:
    sites = [f"s{i}" for i in range(1, 6)]
    live = {"A", "B"}

    async def count() -> int:
        return len(live)

    def make(worker: str) -> LeaseKeeper:
        return LeaseKeeper(
            Leases(redis, make_settings(worker, lease_ttl_s=30.0)), sites, live_workers=count
        )

    a, b = make("A"), make("B")
    await a.tick()  # A starts first: its share is 3 of the 5 ...
    assert len(a.leading()) == 3
    await b.tick()  # ... and B takes the other 2 at once (under its share)
    assert len(b.leading()) == 2
    for _ in range(3):
        await asyncio.gather(a.tick(), b.tick())
        assert a.leading() | b.leading() == set(sites)
        assert not a.leading() & b.leading()
        assert sorted(map(len, (a.leading(), b.leading()))) == [2, 3]

    # B stops (released: a clean stop); A, at its share, takes B's sites one tick later (nobody
    # under their share wanted them), even while B still counts as live.
    await b.release_all()
    await a.tick()
    assert len(a.leading()) == 3
    await a.tick()
    assert a.leading() == set(sites)


async def test_a_worker_over_its_share_hands_sites_on_when_another_joins(
    redis: Redis, make_settings: Make
) -> None:
    sites = [f"s{i}" for i in range(1, 5)]
    live = {"A"}

    async def count() -> int:
        return len(live)

    a = LeaseKeeper(Leases(redis, make_settings("A")), sites, live_workers=count)
    b = LeaseKeeper(Leases(redis, make_settings("B")), sites, live_workers=count)
    await a.tick()
    assert a.leading() == set(sites)
    live.add("B")  # B joins: the share is 2 each
    for _ in range(20):
        await a.tick()
        await b.tick()
        assert not a.leading() & b.leading()
    assert len(a.leading()) == len(b.leading()) == 2
