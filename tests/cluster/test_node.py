"""Two workers joined to the cluster through ``join()``: routing, events and leadership together."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from redis.asyncio import Redis

from csms.cluster.node import ClusterNode, join
from csms.cluster.settings import ClusterSettings
from csms.domain.commands import Reset, StopCharging
from csms.services.notifications import Notice, Notifier
from tests.cluster.conftest import FakeGateway, eventually

Make = Callable[..., ClusterSettings]


async def test_two_workers_route_share_events_and_hand_over_leadership(
    redis: Redis, make_settings: Make
) -> None:
    notifiers = {"A": Notifier(), "B": Notifier()}
    seen: dict[str, list[Notice]] = {"A": [], "B": []}
    for name, notifier in notifiers.items():
        notifier.subscribe(seen[name].append)
    locals_ = {"A": FakeGateway(), "B": FakeGateway({"cp1"})}
    gained: list[tuple[str, str]] = []

    async with contextlib.AsyncExitStack() as stack:
        nodes: dict[str, ClusterNode] = {}
        exits: dict[str, contextlib.AsyncExitStack] = {}
        for name in ("A", "B"):
            settings = make_settings(name, lease_ttl_s=0.9, presence_ttl_s=3.0)
            exits[name] = await stack.enter_async_context(contextlib.AsyncExitStack())
            nodes[name] = await exits[name].enter_async_context(
                join(
                    settings,
                    locals_[name],
                    notifiers[name],
                    sites=["s1"],
                    on_gain=lambda site, _token, name=name: gained.append((name, site)),
                )
            )
        a, b = nodes["A"], nodes["B"]

        # Presence and routing: cp1 connects to B; A sees it and reaches it through B.
        await b.presence.connected("cp1")
        await eventually(lambda: a.gateway.is_connected("cp1"), "A sees B's charger")
        result = await a.gateway.send("cp1", Reset(hard=True))
        assert result.ok, result.error
        assert locals_["B"].sent == [("cp1", Reset(hard=True))]
        assert locals_["A"].sent == []

        # Events: B's notice reaches A's notifier.
        notifiers["B"].publish(Notice("session_started", "cp1", 1, 5))
        await eventually(lambda: Notice("session_started", "cp1", 1, 5) in seen["A"], "fan-out")

        # Leadership: exactly one leads; its fenced dispatch goes through.
        await eventually(lambda: len(gained) == 1, "someone leads s1")
        leader, follower = (a, b) if gained[0][0] == "A" else (b, a)
        assert leader.leases.is_leader("s1")
        assert not follower.leases.is_leader("s1")
        fence = leader.leases.fence("s1")
        assert fence is not None
        sent = await leader.gateway.send("cp1", StopCharging("5"), fence=fence)
        assert sent.ok, sent.error

        # The leader leaves cleanly: it releases the lease, the other takes over.
        await exits[leader.settings.worker_id].aclose()
        await eventually(lambda: follower.leases.is_leader("s1"), "the follower takes over")
        assert not await follower.leases.leases.check(fence)  # the old fence is dead
        assert [who for who, _ in gained] == [
            leader.settings.worker_id,
            follower.settings.worker_id,
        ]
        if leader is b:
            # B retired on the way out: A is told at once, not after a timeout.
            gone = await a.gateway.send("cp1", Reset())
            assert gone.error == "worker B holding the charger is not alive"
        stale = await follower.gateway.send("cp1", StopCharging("6"), fence=fence)
        assert not stale.ok
