"""The connection sweeper (real Redis, SQLite): chargers recorded as connected that no worker
holds are marked disconnected after two sweeps — unless they were seen again meanwhile — and the
chargers a live worker holds are left alone. Also the disconnect hook: a worker whose charger
moved to another worker does not record its old socket's close."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from csms.cluster.presence import Presence, PresenceKeeper
from csms.cluster.settings import ClusterSettings
from csms.cluster.sweeper import ConnectionSweeper
from csms.db.engine import create_engine, session_factory
from csms.db.migrate import upgrade_to_head
from csms.db.models import ChargePoint
from csms.domain.clock import ManualClock
from csms.services.notifications import Notice, Notifier
from csms.services.stations import StationService

T0 = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


@pytest.fixture
async def stations(tmp_path: Path) -> AsyncIterator[tuple[StationService, ManualClock, Notifier]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'csms.db'}")
    await upgrade_to_head(engine)
    clock, notifier = ManualClock(T0), Notifier()
    try:
        yield StationService(session_factory(engine), clock, notifier=notifier), clock, notifier
    finally:
        await engine.dispose()


async def _connected(service: StationService) -> dict[str, bool]:
    async with service._sessions() as s:
        return {
            cp.id: cp.connected
            for cp in [await s.get(ChargePoint, i) for i in ("held", "gone", "back")]
            if cp is not None
        }


async def test_a_charger_nobody_holds_is_marked_disconnected_at_the_second_sweep(
    redis: Redis,
    make_settings: Callable[..., ClusterSettings],
    stations: tuple[StationService, ManualClock, Notifier],
) -> None:
    service, clock, notifier = stations
    heard: list[Notice] = []
    notifier.subscribe(heard.append)
    for cp in ("held", "gone", "back"):
        await service.register_charge_point(cp)
        await service.connected(cp, "ocpp1.6", None)
    presence = Presence(redis, make_settings("w1"))
    await presence.claim("held")
    sweeper = ConnectionSweeper(presence, service, clock)

    clock.set(T0 + timedelta(seconds=1))
    assert await sweeper.sweep() == []  # "gone" and "back" unheld once: not yet
    clock.set(T0 + timedelta(seconds=5))
    await presence.claim("back")  # it reconnected to some worker ...
    await service.connected("back", "ocpp1.6", None)  # ... which recorded it (seen after)
    clock.set(T0 + timedelta(seconds=10))
    heard.clear()
    assert await sweeper.sweep() == ["gone"]
    assert await _connected(service) == {"held": True, "gone": False, "back": True}
    assert [(n.kind, n.charge_point_id) for n in heard] == [("disconnected", "gone")]
    assert sweeper.marked == 1


async def test_a_charger_seen_after_it_was_first_found_unheld_stays_connected(
    redis: Redis,
    make_settings: Callable[..., ClusterSettings],
    stations: tuple[StationService, ManualClock, Notifier],
) -> None:
    service, clock, _ = stations
    await service.register_charge_point("back")
    await service.connected("back", "ocpp1.6", None)
    sweeper = ConnectionSweeper(Presence(redis, make_settings("w1")), service, clock)
    clock.set(T0 + timedelta(seconds=1))
    assert await sweeper.sweep() == []
    # Connected again (its presence claim not visible to this sweep: a race) after the first
    # sweep found it unheld: its newer last_seen keeps it connected.
    clock.set(T0 + timedelta(seconds=3))
    await service.connected("back", "ocpp1.6", None)
    assert await sweeper.sweep() == []
    assert await _connected(service) == {"back": True}


async def test_the_old_worker_does_not_record_the_close_of_a_socket_it_lost(
    redis: Redis, make_settings: Callable[..., ClusterSettings]
) -> None:
    a = PresenceKeeper(Presence(redis, make_settings("A")))
    b = PresenceKeeper(Presence(redis, make_settings("B")))
    await a.connected("cp1")
    await b.connected("cp1")  # the charger reconnected through the load balancer to B
    assert not await a.disconnected("cp1")  # A's stale socket closes: B's connection stands
    assert await b.disconnected("cp1")
    await a.connected("cp2")
    assert await a.disconnected("cp2")  # an ordinary disconnect
