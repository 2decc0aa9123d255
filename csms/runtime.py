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

from csms.db.engine import create_engine, session_factory
from csms.db.migrate import upgrade_to_head
from csms.domain.clock import Clock, ScaledClock, SystemClock
from csms.ocpp.gateway import OcppGateway
from csms.ocpp.redact import RedactingRecorder
from csms.ocpp.server import OcppServer
from csms.ports import ChargerGateway
from csms.services.notifications import Notifier
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


def make_clock(settings: ClockSettings) -> Clock:
    """The wall clock, or a replay clock when ``clock.start`` is set."""
    if settings.start is None:
        return SystemClock()
    return ScaledClock(settings.start, settings.speed, anchor=settings.anchor)


@contextlib.asynccontextmanager
async def run(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """Migrate the database, start the OCPP endpoint; on exit close connections and flush."""
    clock = clock or make_clock(settings.clock)
    engine = create_engine(settings.database.url, echo=settings.database.echo_sql)
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
        await stations.mark_all_disconnected()  # whatever a crash left behind
        server = OcppServer(settings.ocpp, stations, clock)
        gateway = OcppGateway(server, RedactingRecorder(stations))  # no secrets in outbound_call
        smart = SmartCharging(sessions, clock, gateway, notifier, settings.smart_charging)
        sites = SiteService(sessions, clock, notifier)
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
            sites,
            UserService(sessions, clock),
        )
        async with server.running(), asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_prune_forever(runtime)), tg.create_task(smart.run())]
            try:
                yield runtime
            finally:
                for task in tasks:
                    task.cancel()
    finally:
        await engine.dispose()


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
