"""One worker's membership of the cluster: every building block, started and stopped together.

What the composition root (csms.runtime) needs in cluster mode::

    async with join(settings.cluster, OcppGateway(...), notifier, sites=site_ids) as node:
        gateway = node.gateway           # a ChargerGateway for SmartCharging, the API, the console
        # OCPP server hooks: await node.presence.connected(id) / .disconnected(id)
        # sites as they change: node.leases.set_sites(ids); plan only if node.leases.is_leader(site)
        # dispatch: fence = node.leases.fence(site)  (None: not the leader, send nothing)
        #           await node.gateway.send(cp, command, fence=fence)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis

from csms.cluster.events import EventBridge
from csms.cluster.leadership import GainCallback, LeaseKeeper, Leases, LossCallback
from csms.cluster.presence import Presence, PresenceDirectory, PresenceKeeper
from csms.cluster.routing import ClusterGateway, CommandServer
from csms.cluster.settings import ClusterSettings, redacted
from csms.ports import ChargerGateway
from csms.services.notifications import Notifier

log = logging.getLogger(__name__)

_READY_WITHIN_S = 30.0  # to subscribe and read presence once Redis has answered a ping


def connect(settings: ClusterSettings) -> Redis:
    """A client for the cluster's Redis (connects on first use)."""
    if settings.redis_url is None:
        raise ValueError("cluster.redis_url is not set: single-process mode has no Redis")
    # A blocking pool: with many commands in flight, callers wait for a free connection instead
    # of failing ("Too many connections"). Blocking reads last at most keys.BLOCK_S, well
    # inside the socket timeout, so a Redis that stops answering is noticed within it.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.command_timeout_s,
        decode_responses=True,
        socket_timeout=10.0,
        socket_connect_timeout=5.0,
        health_check_interval=30,
    )
    return Redis.from_pool(pool)


async def _count(workers: Awaitable[list[str]]) -> int:
    return len(await workers)


@dataclass
class ClusterNode:
    """Everything one worker holds in cluster mode."""

    settings: ClusterSettings
    redis: Redis
    presence: PresenceKeeper
    directory: PresenceDirectory
    gateway: ClusterGateway
    server: CommandServer
    events: EventBridge
    leases: LeaseKeeper


@contextlib.asynccontextmanager
async def join(
    settings: ClusterSettings,
    local: ChargerGateway,
    notifier: Notifier,
    *,
    sites: Iterable[str] = (),
    on_gain: GainCallback | None = None,
    on_loss: LossCallback | None = None,
    on_charger_lost: Callable[[str], None] | None = None,
    redis: Redis | None = None,
) -> AsyncIterator[ClusterNode]:
    """Announce this worker, follow presence and events, serve routed commands, keep the site
    leases; on exit release the leases and retire (other workers take over at once)."""
    own_client = redis is None
    client = connect(settings) if redis is None else redis
    try:
        await client.ping()  # fail at start-up, with the URL's error, not on the first command
        async with _running(
            client, settings, local, notifier, sites, on_gain, on_loss, on_charger_lost
        ) as node:
            yield node
    finally:
        if own_client:
            await client.aclose()


@contextlib.asynccontextmanager
async def _running(
    client: Redis,
    settings: ClusterSettings,
    local: ChargerGateway,
    notifier: Notifier,
    sites: Iterable[str],
    on_gain: GainCallback | None,
    on_loss: LossCallback | None,
    on_charger_lost: Callable[[str], None] | None,
) -> AsyncIterator[ClusterNode]:
    presence = Presence(client, settings)
    leases = Leases(client, settings)
    keeper = PresenceKeeper(presence, on_lost=on_charger_lost)
    directory = PresenceDirectory(presence)
    node = ClusterNode(
        settings=settings,
        redis=client,
        presence=keeper,
        directory=directory,
        gateway=ClusterGateway(local, presence, directory, check_fence=leases.check),
        server=CommandServer(client, settings, local, check_fence=leases.check),
        events=EventBridge(client, settings, notifier),
        leases=LeaseKeeper(
            leases,
            sites,
            on_gain=on_gain,
            on_loss=on_loss,
            live_workers=lambda: _count(presence.live_workers()),
        ),
    )
    try:
        await keeper.beat()  # alive before anyone can route to us
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(keeper.run()),
                tg.create_task(directory.run()),
                tg.create_task(node.gateway.run()),
                tg.create_task(node.server.run()),
                tg.create_task(node.events.run()),
                tg.create_task(node.leases.run()),
            ]
            try:
                async with asyncio.timeout(_READY_WITHIN_S):
                    await directory.ready.wait()
                    await node.events.ready.wait()
                log.info("joined the cluster as %s", settings.worker_id)
                yield node
            finally:
                # Leases are released (LeaseKeeper.run does so when cancelled) and the heartbeat
                # retired on the way out: other workers take over at once, not after a TTL.
                for task in tasks:
                    task.cancel()
    finally:
        node.events.close()


def redis_problem(settings: ClusterSettings, timeout_s: float = 5.0) -> str | None:
    """Why the cluster's Redis cannot be used (checked at start, for a one-line error), or
    None. Synchronous: called before the event loop starts."""
    import redis

    if settings.redis_url is None:
        return None
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"cannot reach Redis at {redacted(settings.redis_url)}: {exc}"
    finally:
        client.close()
    return None
