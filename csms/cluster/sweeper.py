"""Chargers recorded as connected that no worker serves any more.

A single process marks every charger disconnected when it starts. A cluster worker cannot: the
others serve chargers. And a worker killed with SIGKILL never records its chargers' disconnects.
Its chargers normally reconnect through the load balancer within seconds and are recorded
connected again by their new worker; one that does not come back would stay "connected" in the
database for ever. Every worker therefore sweeps, every third of the presence TTL: a charger
recorded as connected whose presence has been missing from Redis at two sweeps in a row is
marked disconnected — unless it was seen after the first of them (it connected again meanwhile:
a worker claims presence before it records the connection, so a newer connection always has a
newer ``last_seen``). Sweeps by several workers at once agree (the update is conditional).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from redis.exceptions import RedisError

from csms.cluster.keys import raise_if_cancelled
from csms.cluster.presence import Presence
from csms.domain.clock import Clock
from csms.services.stations import StationService

log = logging.getLogger(__name__)


class ConnectionSweeper:
    """Marks disconnected the chargers that no worker has held for a whole sweep interval."""

    def __init__(self, presence: Presence, stations: StationService, clock: Clock) -> None:
        self.presence = presence
        self.stations = stations
        self.clock = clock
        self.interval_s = presence.settings.presence_ttl_s / 3
        self._unheld_since: dict[str, datetime] = {}  # first sweep that found it unheld
        self.marked = 0

    async def sweep(self) -> list[str]:
        """One sweep; returns the chargers marked disconnected."""
        now = self.clock.now()
        recorded = await self.stations.connected_ids()
        holders = await self.presence.holders(recorded)
        unheld = {cp for cp, worker in holders.items() if worker is None}
        due = {cp: t for cp, t in self._unheld_since.items() if cp in unheld}
        self._unheld_since = {cp: self._unheld_since.get(cp, now) for cp in unheld - set(due)}
        if not due:
            return []
        marked = await self.stations.mark_disconnected(due)
        if marked:
            self.marked += len(marked)
            log.info(
                "marked %d chargers disconnected that no worker serves: %s",
                len(marked),
                ", ".join(marked[:20]) + (" ..." if len(marked) > 20 else ""),
            )
        return marked

    async def run(self) -> None:
        """Sweep until cancelled."""
        while True:
            raise_if_cancelled()
            try:
                await self.sweep()
            except (RedisError, OSError) as exc:
                log.warning("connection sweep skipped: %s", exc)
            except Exception:  # a database hiccup must not stop the sweeps
                log.exception("connection sweep failed")
            await asyncio.sleep(self.interval_s)
