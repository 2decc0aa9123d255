"""Fixtures for the cluster tests: the real Redis (``CSMS_TEST_REDIS``, default the local one),
a random key prefix per test whose keys are deleted afterwards, and a fake local gateway.

Tests that need Redis are skipped, with the reason, when it cannot be reached."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from csms.cluster.codec import encode_command
from csms.cluster.node import connect
from csms.cluster.settings import ClusterSettings
from csms.domain.commands import Command, CommandResult
from csms.domain.leadership import Fence

REDIS_URL = os.environ.get("CSMS_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """A client of the test Redis (skips the test if there is none)."""
    client = connect(ClusterSettings(redis_url=REDIS_URL))  # as a worker would
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL} (set CSMS_TEST_REDIS): {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = f"test-cluster-{secrets.token_hex(6)}:"
    yield value
    keys = [key async for key in redis.scan_iter(match=f"{value}*", count=1000)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
def make_settings(prefix: str) -> Callable[..., ClusterSettings]:
    """Settings for worker ``worker_id`` under the test's prefix. TTLs are long by default so that
    nothing expires on a loaded machine unless a test asks for a short one, to see it expire."""

    def make(worker_id: str, **changes: Any) -> ClusterSettings:
        values: dict[str, Any] = {
            "redis_url": REDIS_URL,
            "worker_id": worker_id,
            "key_prefix": prefix,
            "presence_ttl_s": 30.0,
            "lease_ttl_s": 30.0,
            "command_timeout_s": 10.0,
            "fence_margin_s": 0.05,
        }
        values.update(changes)
        return ClusterSettings(**values)

    return make


class FakeGateway:
    """A local gateway without chargers behind it: records what it is asked to send and answers
    with the command it got (so a test can tell whose answer it holds)."""

    def __init__(self, connected: Iterable[str] = ()) -> None:
        self.connected = set(connected)
        self.sent: list[tuple[str, Command]] = []
        self.delay_s = 0.0
        self.gates: list[asyncio.Event] = []  # each send takes the first and waits for it
        self.finished = 0

    def is_connected(self, charge_point_id: str) -> bool:
        return charge_point_id in self.connected

    async def send(
        self, charge_point_id: str, command: Command, *, fence: Fence | None = None
    ) -> CommandResult:
        self.sent.append((charge_point_id, command))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.gates:
            await self.gates.pop(0).wait()
        self.finished += 1
        if charge_point_id not in self.connected:
            return CommandResult(ok=False, error="charger is not connected")
        return CommandResult(
            ok=True,
            status="Accepted",
            payload={"cp": charge_point_id, "command": encode_command(command)},
            latency_s=0.001,
        )


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within_s: float = 20.0
) -> float:
    """Wait until ``condition`` holds; the seconds it took (a figure to print, never to assert).
    The bound only keeps a broken test from hanging: it is generous on purpose (the machine may
    be loaded) and no test asserts how fast anything is."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    give_up = started + within_s
    while True:
        value = condition()
        if not isinstance(value, bool):
            value = await value
        if value:
            return loop.time() - started
        if loop.time() > give_up:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)
