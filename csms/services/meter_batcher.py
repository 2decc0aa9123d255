"""Group commit for meter values: many chargers' MeterValues stored in one database transaction.

Each MeterValues call waits until its samples are committed before it is answered, so nothing
acknowledged is ever lost. Batches form by themselves: while one commit runs, the next calls queue
and go together in the next one — no timer, so a lone call is not delayed.

While the database is unreachable (a PostgreSQL restart) a batch is committed again with backoff,
for up to ``csms.db.engine.RETRY_BUDGET_S``: its callers wait and are answered once it is stored.
Only then do they get the error (a CALLERROR; the charger sends the readings again). A retry is
safe: readings already stored are skipped by their unique index.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from csms.db.engine import retry_transient
from csms.services.stations import MeterCall, StationService

log = logging.getLogger(__name__)

MAX_BATCH = 500


class MeterBatcher:
    """Queues MeterValues, commits them in batches, answers each caller when its batch is stored."""

    def __init__(self, stations: StationService, max_batch: int = MAX_BATCH) -> None:
        self._stations = stations
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[MeterCall, asyncio.Future[None]]] = asyncio.Queue()

    async def submit(self, item: MeterCall) -> None:
        """Store one call's samples (returns once committed; raises if the commit failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        await future

    async def run(self) -> None:
        """Commit batches until cancelled."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            calls = [item for item, _ in batch]
            try:
                store = functools.partial(self._stations.meter_values_batch, calls)
                await retry_transient(store, "a batch of MeterValues")
            except Exception as exc:  # each caller gets the error (a CALLERROR)
                log.exception("could not store a batch of %d MeterValues", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
