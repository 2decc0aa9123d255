"""The per-connection message rate limit: the token bucket on its own (pure, over a test clock), the
default against what legitimate chargers, the simulator and the benchmarks send, and the limit on
a real websocket: a flooding charger gets its excess CALLs refused and cannot starve another."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import websockets
from hypothesis import given
from hypothesis import strategies as st
from ocpp.v16 import call as c16
from sqlmodel import func, select

from csms.db.models import MessageLog
from csms.domain.clock import ManualClock, ScaledClock
from csms.domain.commands import Reset
from csms.domain.rate_limit import TokenBucket
from csms.settings import OcppSettings
from tests.csms.client import boot16, connect
from tests.csms.conftest import RunCsms

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
OPEN = {"allow_unknown_chargers": True, "accept_unknown_id_tokens": True}


# --- the bucket ----------------------------------------------------------------------------------


def test_a_full_bucket_takes_a_burst_then_refuses() -> None:
    clock = ManualClock(T0)
    bucket = TokenBucket(2.0, 5, clock)
    assert [bucket.take() for _ in range(6)] == [True] * 5 + [False]
    assert bucket.refused == 1
    assert not bucket.take()
    assert bucket.refused == 2


def test_tokens_come_back_at_the_rate() -> None:
    clock = ManualClock(T0)
    bucket = TokenBucket(4.0, 5, clock)
    for _ in range(5):
        assert bucket.take()
    clock.advance(0.5)  # 2 tokens
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.advance(0.1)  # 0.4 of a token: not a whole one
    assert not bucket.take()
    clock.advance(0.15)  # 0.4 + 0.6 = 1
    assert bucket.take()


def test_a_long_silence_saves_up_no_more_than_the_burst() -> None:
    clock = ManualClock(T0)
    bucket = TokenBucket(10.0, 3, clock)
    clock.advance(3600)
    assert bucket.tokens == 3.0
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_wait_says_when_the_next_message_goes_through() -> None:
    clock = ManualClock(T0)
    bucket = TokenBucket(4.0, 1, clock)
    assert bucket.wait_s() == 0.0
    assert bucket.take()
    assert bucket.wait_s() == pytest.approx(0.25)
    clock.advance(0.1)
    assert bucket.wait_s() == pytest.approx(0.15)
    clock.advance(0.15)
    assert bucket.wait_s() == pytest.approx(0.0)
    assert bucket.take()


def test_rate_zero_means_no_limit() -> None:
    clock = ManualClock(T0)
    bucket = TokenBucket(0.0, 1, clock)
    assert not bucket.enabled
    assert all(bucket.take() for _ in range(10_000))
    assert bucket.refused == 0
    assert bucket.wait_s() == 0.0


def test_a_clock_set_back_adds_no_tokens() -> None:
    clock = ManualClock(T0)
    bucket = TokenBucket(1.0, 2, clock)
    assert bucket.take()
    assert bucket.take()
    clock.set(T0 - timedelta(hours=1))
    assert not bucket.take()
    clock.advance(1.0)  # counted from the time it was set back to
    assert bucket.take()
    assert not bucket.take()


@pytest.mark.parametrize(
    ("rate", "burst"),
    [(-1.0, 10), (math.nan, 10), (math.inf, 10), (1.0, 0), (1.0, -5)],
)
def test_nonsense_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate, burst, ManualClock(T0))


@given(
    rate=st.floats(0.1, 100.0),
    burst=st.integers(1, 200),
    steps=st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(0, 50)), max_size=40),
)
def test_never_more_than_the_burst_plus_the_rate_times_the_time(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    """Over any stretch from a full bucket: taken <= burst + rate x elapsed."""
    clock = ManualClock(T0)
    bucket = TokenBucket(rate, burst, clock)
    taken = elapsed = 0.0
    for wait, tries in steps:
        clock.advance(wait)
        elapsed += wait
        taken += sum(bucket.take() for _ in range(tries))
        assert taken <= burst + rate * elapsed + 1e-6


@given(rate=st.floats(0.1, 100.0), burst=st.integers(1, 200), n=st.integers(1, 2000))
def test_a_charger_that_keeps_to_the_rate_is_never_refused(rate: float, burst: int, n: int) -> None:
    clock = ManualClock(T0)
    bucket = TokenBucket(rate, burst, clock)
    interval = math.ceil(1e6 / rate) / 1e6  # the clock counts whole microseconds
    for _ in range(n):
        assert bucket.take()
        clock.advance(interval)


# --- the default against legitimate traffic --------------------------------------------------------


def default_bucket(clock: Any) -> TokenBucket:
    s = OcppSettings()
    return TokenBucket(s.max_messages_per_s, s.message_burst, clock)


def test_the_default_takes_a_boot_and_an_offline_queue_at_once() -> None:
    """Boot, a StatusNotification for each of 10 connectors, then 80 queued transaction messages
    sent back to back (OCPP 1.6 §3.7: queued while offline, delivered on reconnect)."""
    clock = ManualClock(T0)
    bucket = default_bucket(clock)
    for _ in range(1 + 10 + 80):
        assert bucket.take()
        clock.advance(0.002)


@pytest.mark.parametrize(
    ("period_s", "minutes"),
    [
        (2.0, 10),  # benchmarks.ocpp_load's default: MeterValues every 2 s per connection
        (1000 / 1500, 10),  # its fastest documented case: 1500/s over 1000 connections
        (0.25, 10),  # its smoke test: every 0.25 s
        (1 / 19, 10),  # anything under the default rate, for as long as it lasts
    ],
)
def test_the_default_never_refuses_the_load_benchmark(period_s: float, minutes: int) -> None:
    clock = ManualClock(T0)
    bucket = default_bucket(clock)
    for _ in range(int(minutes * 60 / period_s)):
        assert bucket.take()
        clock.advance(period_s)


@pytest.mark.parametrize("speed", [60.0, 600.0, 1920.0, 7680.0])
def test_the_default_never_refuses_a_replay(speed: float) -> None:
    """The simulator in a replay (the demo at 60x, the end-to-end tests at 600x, the fastest ACN
    replay at 1920x): meter values every 60 clock seconds, a heartbeat every 300. On the central
    system's replay clock the rate is what the charger does in its own time, whatever the speed."""
    wall = [1_000_000.0]
    clock = ScaledClock(T0, speed, wall=lambda: wall[0])
    bucket = default_bucket(clock)
    sent = 0
    for second in range(0, 6 * 3600, 60):  # six replayed hours
        for _ in range(1 + (second % 300 == 0) + 2):  # MeterValues, Heartbeat, 2 StatusNotif.
            assert bucket.take()
            sent += 1
        wall[0] += 60 / speed
    assert sent > 1000


def test_the_wall_clock_rate_of_a_fast_replay_would_be_refused() -> None:
    """Why the bucket runs on the central system's clock: 32 messages per real second, the
    fastest ACN replay's rate, would be refused on the wall clock (and is not above)."""
    clock = ManualClock(T0)
    bucket = default_bucket(clock)
    refused = 0
    for _ in range(32 * 60):
        refused += not bucket.take()
        clock.advance(1 / 32)
    assert refused > 0


# --- on a real websocket ---------------------------------------------------------------------------


async def _flood(ws: Any, frames: list[str]) -> list[list[Any]]:
    """Send every frame without waiting; return the replies to the CALLs among them, in order."""
    for frame in frames:
        await ws.send(frame)
    calls = sum(frame.startswith("[2") for frame in frames)
    return [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(calls)]


async def _logged(rt: Any, cp_id: str) -> int:
    await rt.ocpp.writer.flush()
    async with rt.sessions() as s:
        query = select(func.count()).select_from(MessageLog)
        return int((await s.exec(query.where(MessageLog.charge_point_id == cp_id))).one())


async def test_a_flood_is_refused_past_the_burst_and_others_are_not_affected(
    run_csms: RunCsms,
) -> None:
    async with (
        run_csms(**OPEN, max_messages_per_s=5, message_burst=10) as rt,
        connect(rt.ocpp.port, "GOOD", "ocpp1.6") as good,
        websockets.connect(
            f"ws://127.0.0.1:{rt.ocpp.port}/ocpp/FLOOD",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            proxy=None,
        ) as ws,
    ):
        await boot16(good)  # the good charger's boot comes out of its own bucket
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        frames = [json.dumps([2, f"hb-{i}", "Heartbeat", {}]) for i in range(60)]
        # Answers to calls never made, and garbage, in the middle: dropped when over the limit.
        frames[30:30] = [json.dumps([3, "never", {}]), "not json at all"]
        replies = await _flood(ws, frames)
        elapsed = loop.time() - t0
        assert [r[1] for r in replies] == [f"hb-{i}" for i in range(60)]  # each CALL answered once
        taken = [r for r in replies if r[0] == 3]
        refused = [r for r in replies if r[0] == 4]
        assert 10 <= len(taken) <= 10 + 5 * elapsed + 1
        assert len(taken) + len(refused) == 60
        for r in refused:
            assert r[2] == "GenericError"
            assert r[3].startswith("rate limit: at most 5 messages/s (burst 10)")
            assert r[4] == {}
        # Nothing came back for the answer and the garbage (refused: not even parsed).
        # Others have their own bucket: the good charger is served at once, up to its own burst.
        for _ in range(8):
            assert (await good.call(c16.Heartbeat(), suppress=False)).current_time
        # Refused frames are counted, not logged: what was taken is in the log (in and out).
        logged = await _logged(rt, "FLOOD")
        assert 2 * len(taken) <= logged <= 2 * len(taken) + 3
        assert rt.ocpp.connections["FLOOD"]._connection.limit.refused >= 60 - len(taken)
        # A token later the flooding charger is served again.
        await asyncio.sleep(0.25)
        again = await _flood(ws, [json.dumps([2, "later", "Heartbeat", {}])])
        assert again[0][:2] == [3, "later"]


async def test_the_answer_to_our_own_call_passes_an_empty_bucket(run_csms: RunCsms) -> None:
    """Answers to our pending call are not counted: we decide how many of those there are."""
    async with (
        run_csms(**OPEN, max_messages_per_s=0.5, message_burst=2) as rt,
        websockets.connect(
            f"ws://127.0.0.1:{rt.ocpp.port}/ocpp/BUSY",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            proxy=None,
        ) as ws,
    ):
        replies = await _flood(ws, [json.dumps([2, f"h{i}", "Heartbeat", {}]) for i in range(4)])
        assert [r[0] for r in replies] == [3, 3, 4, 4]  # the bucket is empty now
        sent = asyncio.create_task(rt.gateway.send("BUSY", Reset(hard=False)))
        request = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert request[2] == "Reset"
        await ws.send(json.dumps([3, request[1], {"status": "Accepted"}]))
        result = await asyncio.wait_for(sent, 5)
        assert (result.ok, result.status) == (True, "Accepted")
        # ... while a stray answer is still over the limit, and a CALL still refused.
        assert (await _flood(ws, [json.dumps([2, "h9", "Heartbeat", {}])]))[0][0] == 4


async def test_a_flooding_charger_cannot_starve_another(run_csms: RunCsms) -> None:
    """One charger pipelines frames as fast as it can while another goes on with its session: the
    other's calls are all answered, and the flood's excess is refused."""
    async with (
        run_csms(**OPEN) as rt,  # the default limit
        connect(rt.ocpp.port, "GOOD", "ocpp1.6") as good,
        websockets.connect(
            f"ws://127.0.0.1:{rt.ocpp.port}/ocpp/FLOOD",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            proxy=None,
        ) as ws,
    ):
        await boot16(good)
        flood_frames = [json.dumps([2, f"f{i}", "Heartbeat", {}]) for i in range(3000)]
        flooding = asyncio.create_task(_flood(ws, flood_frames))
        for i in range(20):
            await good.call(
                c16.StatusNotification(connector_id=1, error_code="NoError", status="Available"),
                suppress=False,
            )
            assert (await good.call(c16.Heartbeat(), suppress=False)).current_time, i
        replies = await asyncio.wait_for(flooding, 60)
        refused = sum(r[0] == 4 for r in replies)
        assert refused >= 3000 - 100 - 20 * 60  # at most the burst plus 20/s for a minute
        assert all(r[2] == "GenericError" for r in replies if r[0] == 4)
        assert "GOOD" in rt.ocpp.connections
