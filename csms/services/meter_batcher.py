"""Group commit for meter values: many chargers' MeterValues stored in one database transaction.

Each MeterValues call waits until its samples are committed before it is answered, so nothing
acknowledged is ever lost. Batches form by themselves: while one commit runs, the next calls queue
and go together in the next one — no timer, so a lone call is not delayed.
"""

from __future__ import annotations

import asyncio
import logging

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
            try:
                await self._stations.meter_values_batch([item for item, _ in batch])
            except Exception as exc:  # each caller gets the error (a CALLERROR)
                log.exception("could not store a batch of %d MeterValues", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
