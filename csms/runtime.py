"""The composition root of the central system: database, services and the OCPP endpoint, started
and stopped together. Built from one Settings object; nothing here runs at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.cluster.node import ClusterNode, join
from csms.cluster.sweeper import ConnectionSweeper
from csms.db.engine import create_engine, session_factory
from csms.db.migrate import upgrade_to_head
from csms.domain.clock import Clock, ScaledClock, SystemClock
from csms.ocpp.gateway import OcppGateway
from csms.ocpp.redact import RedactingRecorder
from csms.ocpp.server import OcppServer
from csms.ports import ChargerGateway
from csms.services.notifications import Notice, Notifier
from csms.services.site_state import site_ids
from csms.services.sites import SiteService
from csms.services.smart_charging import SmartCharging
from csms.services.stations import StationService
from csms.services.users import UserService
from csms.settings import ClockSettings, Settings

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0


@dataclass
class Runtime:
    """Everything a running central system holds."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    stations: StationService
    ocpp: OcppServer
    gateway: ChargerGateway
    notifier: Notifier
    smart: SmartCharging
    sites: SiteService
    users: UserService
    cluster: ClusterNode | None = None  # cluster mode (settings.cluster.redis_url set)


def make_clock(settings: ClockSettings) -> Clock:
    """The wall clock, or a replay clock when ``clock.start`` is set."""
    if settings.start is None:
        return SystemClock()
    return ScaledClock(settings.start, settings.speed, anchor=settings.anchor)


@contextlib.asynccontextmanager
async def run(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """Migrate the database, join the cluster (cluster mode), start the OCPP endpoint; on exit
    close connections, leave the cluster and flush."""
    clock = clock or make_clock(settings.clock)
    db = settings.database
    engine = create_engine(
        db.url, echo=db.echo_sql, pool_size=db.pool_size, max_overflow=db.max_overflow
    )
    try:
        await upgrade_to_head(engine)
        sessions = session_factory(engine)
        notifier = Notifier()
        stations = StationService(
            sessions,
            clock,
            allow_unknown_chargers=settings.ocpp.allow_unknown_chargers,
            accept_unknown_id_tokens=settings.ocpp.accept_unknown_id_tokens,
            notifier=notifier,
        )
        server = OcppServer(settings.ocpp, stations, clock)
        local = OcppGateway(server, RedactingRecorder(stations))  # no secrets in outbound_call
        async with _cluster(settings, local, notifier, server) as node:
            gateway: ChargerGateway = local if node is None else node.gateway
            smart = SmartCharging(
                sessions,
                clock,
                gateway,
                notifier,
                settings.smart_charging,
                leadership=None if node is None else node.leases,
            )
            if node is None:
                await stations.mark_all_disconnected()  # whatever a crash left behind
            else:
                server.hooks = node.presence
                node.leases.listen(smart.leadership_gained, smart.leadership_lost)
            runtime = Runtime(
                settings,
                engine,
                sessions,
                clock,
                stations,
                server,
                gateway,
                notifier,
                smart,
                SiteService(sessions, clock, notifier),
                UserService(sessions, clock),
                node,
            )
            async with server.running(), asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(_prune_forever(runtime)), tg.create_task(smart.run())]
                if node is not None:
                    sweeper = ConnectionSweeper(node.presence.presence, stations, clock)
                    tasks.append(tg.create_task(sweeper.run()))
                    tasks.append(tg.create_task(_lead_every_site(runtime, node)))
                try:
                    yield runtime
                finally:
                    for task in tasks:
                        task.cancel()
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _cluster(
    settings: Settings, local: OcppGateway, notifier: Notifier, server: OcppServer
) -> AsyncIterator[ClusterNode | None]:
    """Cluster mode: this worker joined (presence, routing, events, leases); else None."""
    if not settings.cluster.enabled:
        yield None
        return
    async with join(settings.cluster, local, notifier, on_charger_lost=server.drop) as node:
        yield node


async def _lead_every_site(rt: Runtime, node: ClusterNode) -> None:
    """Compete for the lease of every site, now and whenever sites change (on any worker: site
    notices reach every worker)."""
    changed = asyncio.Event()

    def on_notice(n: Notice) -> None:
        if n.kind == "site":
            changed.set()

    unsubscribe = rt.notifier.subscribe(on_notice)
    try:
        while True:
            changed.clear()
            try:
                node.leases.set_sites(await site_ids(rt.sessions))
            except Exception:  # the database may be away: the next change or minute tries again
                log.exception("reading the sites to lead failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60.0):
                    await changed.wait()
    finally:
        unsubscribe()


async def _prune_forever(rt: Runtime) -> None:
    keep = timedelta(days=rt.settings.database.message_log_retention_days)
    while True:
        try:
            removed = await rt.stations.prune_message_log(rt.clock.now() - keep)
            if removed:
                log.info("message log: removed %d frames older than %s", removed, keep)
        except Exception:  # logged: pruning must never stop the system
            log.exception("message log pruning failed")
        await asyncio.sleep(PRUNE_EVERY_S)
