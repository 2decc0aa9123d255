"""Group commit of meter values: batches form under load, each caller learns its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from csms.domain.events import MeterSample
from csms.services.meter_batcher import MeterBatcher
from csms.services.stations import MeterCall


class SlowStore:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.fail = fail

    async def meter_values_batch(self, calls: Sequence[Any]) -> int:
        self.batches.append(len(calls))
        await asyncio.sleep(0.01)  # a commit takes time: callers pile up meanwhile
        if self.fail:
            raise RuntimeError("disk full")
        return len(calls)


def _item(i: int) -> MeterCall:
    sample = MeterSample(
        datetime(2026, 1, 1, tzinfo=UTC), "Energy.Active.Import.Register", float(i)
    )
    return MeterCall(f"cp{i}", 1, None, [sample])


async def test_concurrent_calls_share_commits() -> None:
    store = SlowStore()
    batcher = MeterBatcher(store, max_batch=50)  # type: ignore[arg-type]
    runner = asyncio.create_task(batcher.run())
    try:
        await asyncio.gather(*(batcher.submit(_item(i)) for i in range(200)))
    finally:
        runner.cancel()
    assert sum(store.batches) == 200
    assert max(store.batches) == 50
    assert len(store.batches) < 20


async def test_a_lone_call_is_not_delayed_and_errors_reach_every_caller() -> None:
    store = SlowStore(fail=True)
    batcher = MeterBatcher(store)  # type: ignore[arg-type]
    runner = asyncio.create_task(batcher.run())
    try:
        results = await asyncio.gather(
            *(batcher.submit(_item(i)) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RuntimeError) for r in results)
        store.fail = False
        await asyncio.wait_for(batcher.submit(_item(9)), timeout=1)  # the batcher kept running
    finally:
        runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
