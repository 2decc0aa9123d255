"""Fan-out of live notices across workers, without echoes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from csms.cluster.events import EventBridge
from csms.cluster.keys import Keys
from csms.cluster.settings import ClusterSettings
from csms.services.notifications import Notice, Notifier
from tests.cluster.conftest import eventually

Make = Callable[..., ClusterSettings]


@pytest.fixture
async def bridges(
    redis: Redis, make_settings: Make
) -> AsyncIterator[Callable[[str], tuple[Notifier, EventBridge, list[Notice]]]]:
    tasks: list[asyncio.Task[None]] = []

    def make(worker_id: str) -> tuple[Notifier, EventBridge, list[Notice]]:
        notifier = Notifier()
        seen: list[Notice] = []
        notifier.subscribe(seen.append)
        bridge = EventBridge(redis, make_settings(worker_id), notifier)
        tasks.append(asyncio.create_task(bridge.run()))
        return notifier, bridge, seen

    yield make
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_notices_reach_every_other_worker_once_and_never_come_back(
    redis: Redis, prefix: str, bridges: Callable[[str], tuple[Notifier, EventBridge, list[Notice]]]
) -> None:
    notifier_a, bridge_a, seen_a = bridges("A")
    notifier_b, bridge_b, seen_b = bridges("B")
    _, bridge_c, seen_c = bridges("C")
    wire = redis.pubsub()
    await wire.subscribe(Keys(prefix).events_channel)
    for bridge in (bridge_a, bridge_b, bridge_c):
        await bridge.ready.wait()

    meter = Notice(
        "meter", "cp1", 1, 7, power_w=7400.0, energy_wh=12.5, at=datetime.now(UTC), data={"x": 1}
    )
    notifier_a.publish(meter)
    await eventually(lambda: seen_b == [meter] and seen_c == [meter], "B and C get A's notice")

    # B answers with a notice of its own. Anything B or C had published again of A's notice
    # would have gone out before it (each bridge publishes in order): once A has B's notice,
    # an echo would be in too.
    site = Notice("site", site_id="s1")
    notifier_b.publish(site)
    await eventually(lambda: site in seen_a and site in seen_c, "A and C get B's notice")
    assert seen_a == [meter, site]  # its own (local listener), then B's: no echo of its own
    assert seen_b == [meter, site]
    assert seen_c == [meter, site]
    assert (bridge_a.published, bridge_b.published, bridge_c.published) == (1, 1, 0)
    assert (bridge_a.relayed, bridge_b.relayed, bridge_c.relayed) == (1, 1, 2)

    # (a None from get_message may be a skipped subscribe confirmation: read for a while)
    on_wire = []
    loop = asyncio.get_running_loop()
    stop = loop.time() + 0.5
    while loop.time() < stop:
        message = await wire.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            on_wire.append(message["data"])
    assert len(on_wire) == 2  # one per notice: nobody republished
    await wire.aclose()


async def test_listeners_can_tell_relayed_notices(
    bridges: Callable[[str], tuple[Notifier, EventBridge, list[Notice]]],
) -> None:
    notifier_a, bridge_a, _ = bridges("A")
    notifier_b, bridge_b, seen_b = bridges("B")
    relayed: list[bool] = []
    notifier_b.subscribe(lambda _notice: relayed.append(bridge_b.relaying))
    await bridge_a.ready.wait()
    await bridge_b.ready.wait()
    notifier_b.publish(Notice("connected", "local"))
    notifier_a.publish(Notice("connected", "remote"))
    await eventually(lambda: len(seen_b) == 2, "both notices seen on B")
    assert relayed == [False, True]


def test_bad_messages_are_dropped(make_settings: Make, redis: Redis) -> None:
    notifier = Notifier()
    seen: list[Notice] = []
    notifier.subscribe(seen.append)
    bridge = EventBridge(redis, make_settings("A"), notifier)
    for raw in ("nope", "[]", '{"origin": "B", "notice": {"kind": "boom"}}', '{"origin": "B"}'):
        bridge.deliver(raw)
    bridge.deliver('{"origin": "A", "notice": {"kind": "site"}}')  # our own: not again
    bridge.deliver('{"origin": "B", "notice": {"kind": "site"}}')
    assert seen == [Notice("site")]
    bridge.close()
    bridge.close()  # idempotent
    notifier.publish(Notice("site"))
    assert bridge.published == 0
