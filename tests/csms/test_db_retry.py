"""Writes survive a database that is away for a moment (a PostgreSQL restart): which errors count
as "away", the bounded retry, and its use by the meter batcher and the message log writer. The
real restart is tests/faults/test_postgres_restart.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from csms.db.engine import is_transient, retry_transient
from csms.domain.clock import SystemClock
from csms.domain.events import MeterSample
from csms.ocpp.connection import MessageLogWriter
from csms.services.meter_batcher import MeterBatcher
from csms.services.stations import MeterCall


class _PgError(Exception):
    """Stands for an asyncpg error, which carries its SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _wrapped(cause: BaseException) -> Exception:
    """As SQLAlchemy raises it: a DBAPIError whose ``orig`` is the driver's error."""
    return DBAPIError("INSERT ...", {}, cause)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "Connection reset by peer"),
        _wrapped(_PgError("57P01")),  # terminating connection due to administrator command
        _wrapped(_PgError("57P03")),  # the database system is starting up
        _wrapped(_PgError("08006")),  # connection failure
        DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
    ],
)
def test_a_database_that_is_away_is_transient(exc: Exception) -> None:
    assert is_transient(exc)


def test_the_cause_chain_is_followed() -> None:
    outer = RuntimeError("pool could not connect")
    outer.__cause__ = _wrapped(ConnectionRefusedError(111, "refused"))
    assert is_transient(outer)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        RuntimeError("disk full"),
        IntegrityError("INSERT ...", {}, _PgError("23505")),  # unique violation: a real error
        _wrapped(_PgError("42P01")),  # undefined table
    ],
)
def test_wrong_work_is_not_transient(exc: Exception) -> None:
    assert not is_transient(exc)


class Flaky:
    """Fails ``failures`` times with ``error``, then returns the number of calls."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.calls


async def test_a_transient_failure_is_retried_until_it_works() -> None:
    work = Flaky(2, ConnectionRefusedError(111, "refused"))
    assert await retry_transient(work, "test") == 3


async def test_other_errors_are_raised_at_once() -> None:
    work = Flaky(2, ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        await retry_transient(work, "test")
    assert work.calls == 1


async def test_the_retry_gives_up_after_its_budget() -> None:
    work = Flaky(1000, ConnectionRefusedError(111, "refused"))
    with pytest.raises(ConnectionRefusedError):
        await retry_transient(work, "test", budget_s=0.5)
    assert 2 <= work.calls < 10  # backoff: 0.1 + 0.2 s, then the next wait would pass 0.5 s


async def test_nested_retries_do_not_multiply() -> None:
    inner = Flaky(1000, ConnectionRefusedError(111, "refused"))

    async def outer() -> int:
        return await retry_transient(inner, "inner", budget_s=100.0)

    with pytest.raises(ConnectionRefusedError):
        await retry_transient(outer, "outer", budget_s=0.5)
    assert inner.calls < 10  # the inner call ran once per outer attempt, not for 100 s


async def test_a_task_started_inside_a_retried_unit_retries_on_its_own() -> None:
    background = Flaky(2, ConnectionRefusedError(111, "refused"))
    spawned: list[asyncio.Task[int]] = []

    async def outer() -> None:
        spawned.append(asyncio.create_task(retry_transient(background, "background")))

    await retry_transient(outer, "outer")
    assert await spawned[0] == 3


# --- the meter batcher --------------------------------------------------------------------------


class FlakyStore:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0
        self.stored: list[MeterCall] = []

    async def meter_values_batch(self, calls: Sequence[MeterCall]) -> int:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise _wrapped(_PgError("57P01"))
        self.stored.extend(calls)
        return len(calls)


def _item(i: int) -> MeterCall:
    sample = MeterSample(datetime(2026, 1, 1, tzinfo=UTC), "Energy.Active.Import.Register", i)
    return MeterCall(f"cp{i}", 1, None, [sample])


async def test_meter_values_wait_out_a_restart_and_are_answered_once_stored() -> None:
    store = FlakyStore(failures=3)
    batcher = MeterBatcher(store)  # type: ignore[arg-type]
    runner = asyncio.create_task(batcher.run())
    try:
        await asyncio.wait_for(asyncio.gather(*(batcher.submit(_item(i)) for i in range(5))), 10)
    finally:
        runner.cancel()
    assert store.attempts >= 4
    assert sorted(c.charge_point_id for c in store.stored) == [f"cp{i}" for i in range(5)]


# --- the message log writer ---------------------------------------------------------------------


class FlakySink:
    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.attempts = 0
        self.rows: list[dict[str, Any]] = []

    async def log_messages_raw(self, rows: list[dict[str, Any]]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error
        self.rows.extend(rows)


async def _log_frames(sink: FlakySink, n: int) -> MessageLogWriter:
    writer = MessageLogWriter(sink, SystemClock())
    for i in range(n):
        writer.record("cp1", "in", f'[2,"{i}","Heartbeat",{{}}]', datetime.now(UTC))
    runner = asyncio.create_task(writer.run())
    try:
        for _ in range(200):
            if len(sink.rows) >= n:
                break
            await asyncio.sleep(0.05)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    return writer


async def test_the_message_log_keeps_a_batch_while_the_database_is_away() -> None:
    sink = FlakySink(3, _wrapped(_PgError("57P01")))
    writer = await _log_frames(sink, 20)
    assert [r["unique_id"] for r in sink.rows] == [str(i) for i in range(20)]  # once, in order
    assert writer.retries == 3
    assert writer.dropped == 0


async def test_a_batch_the_database_refuses_is_written_row_by_row() -> None:
    sink = FlakySink(1, ValueError("bad row"))  # the batch fails once; each row then works
    writer = await _log_frames(sink, 5)
    assert len(sink.rows) == 5
    assert sink.attempts == 6  # the batch, then one write per row
    assert writer.retries == 0
