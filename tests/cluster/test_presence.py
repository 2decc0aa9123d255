"""Presence against the real Redis: claims, take-over, expiry, heartbeats, the directory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from csms.cluster.presence import Claim, Presence, PresenceDirectory, PresenceKeeper
from csms.cluster.settings import ClusterSettings
from tests.cluster.conftest import eventually

Make = Callable[..., ClusterSettings]


async def test_a_newer_connection_on_another_worker_takes_over(
    redis: Redis, make_settings: Make
) -> None:
    a, b = Presence(redis, make_settings("A")), Presence(redis, make_settings("B"))
    claim_a = await a.claim("cp1")
    assert await a.holder("cp1") == "A"
    assert await a.chargers_of("A") == ["cp1"]

    claim_b = await b.claim("cp1")
    assert await a.holder("cp1") == "B"
    # A can neither keep the charger alive nor delete B's claim.
    assert await a.refresh([claim_a]) == [claim_a]
    assert not await a.release(claim_a)
    assert await a.holder("cp1") == "B"
    assert await a.chargers_of("A") == []
    assert await b.chargers_of("B") == ["cp1"]
    assert await b.refresh([claim_b]) == []

    assert await b.release(claim_b)
    assert await a.holder("cp1") is None
    assert await b.chargers_of("B") == []


async def test_a_reconnect_on_the_same_worker_is_a_new_claim(
    redis: Redis, make_settings: Make
) -> None:
    a = Presence(redis, make_settings("A"))
    old = await a.claim("cp1")
    new = await a.claim("cp1")
    assert not await a.release(old)  # the old socket's cleanup leaves the new claim alone
    assert await a.holder("cp1") == "A"
    assert await a.refresh([old, new]) == [old]


async def test_refresh_extends_a_claim(redis: Redis, make_settings: Make) -> None:
    a = Presence(redis, make_settings("A", presence_ttl_s=5.0))
    claim = await a.claim("cp1")
    await asyncio.sleep(0.2)
    before = await redis.pttl(a.keys.presence("cp1"))
    assert await a.refresh([claim]) == []
    assert await redis.pttl(a.keys.presence("cp1")) > before
    assert await redis.pttl(a.keys.chargers("A")) > before  # the worker's set lives as long


async def test_a_claim_not_refreshed_expires(redis: Redis, make_settings: Make) -> None:
    a = Presence(redis, make_settings("A", presence_ttl_s=0.3))
    claim = await a.claim("cp1")
    await eventually(lambda: _gone(a, "cp1"), "the claim expires once not refreshed")
    assert await a.refresh([claim]) == [claim]  # and cannot be brought back
    assert await a.chargers_of("A") == []


async def _gone(presence: Presence, cp: str) -> bool:
    return await presence.holder(cp) is None


async def test_refresh_handles_many_claims_in_batches(redis: Redis, make_settings: Make) -> None:
    a, b = Presence(redis, make_settings("A")), Presence(redis, make_settings("B"))
    claims = [await a.claim(f"cp{i}") for i in range(1203)]
    await b.claim("cp7")
    await b.claim("cp1100")
    lost = await a.refresh(claims)
    assert sorted(c.charge_point_id for c in lost) == ["cp1100", "cp7"]
    assert len(await a.chargers_of("A")) == 1201


async def test_heartbeats_tell_live_workers_from_dead_ones(
    redis: Redis, make_settings: Make
) -> None:
    a = Presence(redis, make_settings("A", presence_ttl_s=0.3))
    b = Presence(redis, make_settings("B", presence_ttl_s=30))
    c = Presence(redis, make_settings("C", presence_ttl_s=30))
    assert not await a.is_alive("A")
    for worker in (a, b, c):
        await worker.heartbeat()
    assert await b.live_workers() == ["A", "B", "C"]
    await c.retire()  # a clean stop: gone at once
    assert not await b.is_alive("C")
    await eventually(lambda: _dead(b, "A"), "A's heartbeat expires (A stopped beating)")
    assert await b.live_workers() == ["B"]
    assert await redis.smembers(b.keys.workers) == {"B"}  # the dead are dropped from the roster


async def _dead(presence: Presence, worker: str) -> bool:
    return not await presence.is_alive(worker)


async def test_keeper_claims_refreshes_releases_and_reports_losses(
    redis: Redis, make_settings: Make
) -> None:
    lost: list[str] = []
    keeper = PresenceKeeper(Presence(redis, make_settings("A")), on_lost=lost.append)
    b = Presence(redis, make_settings("B"))
    await keeper.connected("cp1")
    await keeper.connected("cp2")
    await keeper.beat()
    assert keeper.holds("cp1")
    assert await b.is_alive("A")
    assert await b.chargers_of("A") == ["cp1", "cp2"]

    await b.claim("cp1")  # cp1 reconnected through another worker
    await keeper.beat()
    assert lost == ["cp1"]
    assert not keeper.holds("cp1")

    await keeper.disconnected("cp1")  # the stale socket closes: B's claim stays
    await keeper.disconnected("cp2")
    assert await b.holder("cp1") == "B"
    assert await b.holder("cp2") is None


async def test_keeper_run_retires_the_worker_when_stopped(
    redis: Redis, make_settings: Make
) -> None:
    keeper = PresenceKeeper(Presence(redis, make_settings("A", presence_ttl_s=30)))
    observer = Presence(redis, make_settings("B"))
    task = asyncio.create_task(keeper.run())
    await eventually(lambda: observer.is_alive("A"), "A beats")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not await observer.is_alive("A")  # without waiting out the 30 s TTL


async def test_directory_follows_claims_releases_and_dead_workers(
    redis: Redis, make_settings: Make
) -> None:
    a = Presence(redis, make_settings("A"))  # beats once, lives on
    b = Presence(redis, make_settings("B", presence_ttl_s=0.6))  # beats once, then is dead
    await a.heartbeat()
    await b.heartbeat()
    early = await a.claim("early")  # before the directory starts: found by the first read
    directory = PresenceDirectory(Presence(redis, make_settings("D", presence_ttl_s=0.6)))
    task = asyncio.create_task(directory.run())
    try:
        await directory.ready.wait()
        assert directory.holder("early") == "A"

        claim_a = await a.claim("cp1")
        await eventually(lambda: directory.holder("cp1") == "A", "claim seen")
        await b.claim("cp1")
        await eventually(lambda: directory.holder("cp1") == "B", "take-over seen")
        await a.release(claim_a)  # too late: changes nothing anywhere
        directory.apply('{"cp": "cp1", "worker": "A", "held": false}')  # even if it had been sent
        assert directory.holder("cp1") == "B"

        await a.release(early)
        await eventually(lambda: directory.holder("early") is None, "release seen")

        # B stopped beating (killed): its chargers leave the directory when its heartbeat
        # expires, while A's stay.
        await a.claim("cp2")
        await eventually(lambda: directory.holder("cp1") is None, "dead worker's chargers dropped")
        assert directory.snapshot() == {"cp2": "A"}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_charger_connected_while_redis_is_away_is_claimed_at_the_next_beat(
    redis: Redis, make_settings: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    presence = Presence(redis, make_settings("A"))
    keeper = PresenceKeeper(presence)
    real_claim = presence.claim

    async def unreachable(_cp: str) -> Claim:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(presence, "claim", unreachable)
    await keeper.connected("cp1")  # does not raise into the OCPP server
    await keeper.connected("cp2")
    assert not keeper.holds("cp1")
    monkeypatch.setattr(presence, "claim", real_claim)
    await keeper.disconnected("cp2")  # gone before Redis came back: never claimed
    await keeper.beat()
    assert keeper.holds("cp1")
    assert await presence.holder("cp1") == "A"
    assert await presence.holder("cp2") is None


async def test_a_claim_that_merely_expired_is_taken_again(
    redis: Redis, make_settings: Make
) -> None:
    lost: list[str] = []
    presence = Presence(redis, make_settings("A", presence_ttl_s=0.3))
    keeper = PresenceKeeper(presence, on_lost=lost.append)
    await keeper.connected("cp1")
    await keeper.connected("cp2")
    await eventually(lambda: _gone(presence, "cp1"), "the claims expire (the worker paused)")
    await Presence(redis, make_settings("B")).claim("cp2")  # cp2 went elsewhere meanwhile
    await keeper.beat()
    assert keeper.holds("cp1")  # still connected here: held again
    assert await presence.holder("cp1") == "A"
    assert not keeper.holds("cp2")
    assert lost == ["cp2"]
    assert await presence.holder("cp2") == "B"


async def test_a_full_read_resolves_a_charger_two_workers_list_by_its_key(
    redis: Redis, make_settings: Make
) -> None:
    a, b = Presence(redis, make_settings("A")), Presence(redis, make_settings("B"))
    await a.heartbeat()
    await b.heartbeat()
    await a.claim("cp1")
    await b.claim("cp1")  # taken over; A has not pruned its set yet
    await a.claim("cp2")
    assert await a.members_of("A") == {"cp1", "cp2"}
    directory = PresenceDirectory(Presence(redis, make_settings("D")))
    await directory.sync()
    assert directory.snapshot() == {"cp1": "B", "cp2": "A"}
    # The old holder's keeper drops it from its set once it sees the take-over.
    keeper = PresenceKeeper(a)
    keeper._claims["cp1"] = Claim("cp1", "A", "stale")
    await keeper._settle(keeper._claims["cp1"])
    assert await a.members_of("A") == {"cp2"}
