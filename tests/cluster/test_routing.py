"""Command routing between two workers in one process, each with a fake local gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from csms.cluster.codec import dumps, encode_command
from csms.cluster.leadership import Leases
from csms.cluster.presence import Presence, PresenceDirectory
from csms.cluster.routing import ClusterGateway, CommandServer
from csms.cluster.settings import ClusterSettings
from csms.domain.commands import RawCall, Reset, StopCharging, TriggerMessage
from csms.domain.leadership import Fence
from tests.cluster.conftest import FakeGateway, eventually

Make = Callable[..., ClusterSettings]


@dataclass
class Worker:
    """One worker's routing pieces (its server is started by the test when wanted)."""

    settings: ClusterSettings
    presence: Presence
    local: FakeGateway
    gateway: ClusterGateway
    server: CommandServer
    leases: Leases
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start_server(self) -> None:
        self.tasks.append(asyncio.create_task(self.server.run()))

    async def start_reader(self) -> None:
        self.tasks.append(asyncio.create_task(self.gateway.run()))
        await asyncio.sleep(0)  # let it start

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


@pytest.fixture
async def workers(
    redis: Redis, make_settings: Make
) -> AsyncIterator[Callable[..., Awaitable[Worker]]]:
    made: list[Worker] = []

    def make(worker_id: str, **changes: object) -> Worker:
        settings = make_settings(worker_id, **changes)
        presence = Presence(redis, settings)
        local = FakeGateway()
        leases = Leases(redis, settings)
        worker = Worker(
            settings,
            presence,
            local,
            ClusterGateway(local, presence, check_fence=leases.check),
            CommandServer(redis, settings, local, check_fence=leases.check),
            leases,
        )
        made.append(worker)
        return worker

    async def make_running(worker_id: str, **changes: object) -> Worker:
        worker = make(worker_id, **changes)
        await worker.start_reader()
        return worker

    yield make_running
    for worker in made:
        await worker.stop()


async def hold(worker: Worker, cp: str) -> None:
    """The charger's socket is on ``worker``."""
    worker.local.connected.add(cp)
    await worker.presence.heartbeat()
    await worker.presence.claim(cp)


async def test_a_command_is_routed_to_the_holder_and_answered(
    workers: Callable[..., Awaitable[Worker]],
) -> None:
    a, b = await workers("A"), await workers("B")
    await a.presence.heartbeat()
    await hold(b, "cp1")
    b.start_server()

    command = RawCall("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {"x": [1.5]}})
    result = await a.gateway.send("cp1", command)

    assert result.ok, result.error
    assert result.status == "Accepted"
    assert result.payload == {"cp": "cp1", "command": encode_command(command)}
    assert b.local.sent == [("cp1", command)]
    assert a.local.sent == []
    await eventually(lambda: b.server.served == 1, "B counts the reply")


async def test_a_charger_held_here_goes_to_the_local_gateway(
    redis: Redis, workers: Callable[..., Awaitable[Worker]]
) -> None:
    a = await workers("A")
    await hold(a, "cp1")
    result = await a.gateway.send("cp1", Reset())
    assert result.ok
    assert a.local.sent == [("cp1", Reset())]
    assert await redis.exists(a.gateway.keys.requests("A")) == 0


async def test_a_charger_nobody_holds_is_not_connected(
    workers: Callable[..., Awaitable[Worker]],
) -> None:
    a = await workers("A")
    result = await a.gateway.send("cp1", Reset())
    assert not result.ok
    assert result.error == "charger is not connected to any worker"
    assert a.local.sent == []


async def test_a_dead_holder_is_refused_at_once(
    redis: Redis, workers: Callable[..., Awaitable[Worker]]
) -> None:
    a, b = await workers("A", command_timeout_s=60.0), await workers("B")
    await b.presence.claim("cp1")  # the claim is there, but B's heartbeat is not
    result = await a.gateway.send("cp1", Reset())
    assert not result.ok
    assert result.error == "worker B holding the charger is not alive"
    assert await redis.llen(a.gateway.keys.requests("B")) == 0  # nothing queued for the dead


async def test_a_holder_dying_while_the_caller_waits_is_noticed_before_the_timeout(
    workers: Callable[..., Awaitable[Worker]],
) -> None:
    # A command timeout far above the heartbeat TTL: the answer says the worker stopped, which
    # only the liveness check gives (the timeout would say "no answer within").
    a = await workers("A", command_timeout_s=120.0)
    b = await workers("B", presence_ttl_s=0.5)
    await hold(b, "cp1")
    b.local.delay_s = 3600  # B takes the command and never answers: it hangs, then dies
    b.start_server()
    result = await a.gateway.send("cp1", Reset())
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("worker B stopped before answering")
    assert "may have reached the charger" in result.error  # B had popped it


async def test_an_unpicked_command_times_out_and_is_withdrawn_unsent(
    redis: Redis, workers: Callable[..., Awaitable[Worker]]
) -> None:
    a, b = await workers("A", command_timeout_s=0.5), await workers("B")
    await hold(b, "cp1")  # alive, but its server is not running
    result = await a.gateway.send("cp1", Reset())
    assert not result.ok
    assert result.error == "no answer from worker B within 0.5 s (not sent)"
    assert await redis.llen(a.gateway.keys.requests("B")) == 0
    b.start_server()
    await asyncio.sleep(0.3)
    assert b.local.sent == []  # the withdrawn command never reached the charger


async def test_a_late_reply_is_never_taken_for_another_requests(
    redis: Redis, workers: Callable[..., Awaitable[Worker]]
) -> None:
    a, b = await workers("A"), await workers("B")
    await hold(b, "cp1")
    b.start_server()
    slow, fast, later = TriggerMessage("slow"), TriggerMessage("fast"), TriggerMessage("later")
    slow_answer, fast_answer = asyncio.Event(), asyncio.Event()
    b.local.gates = [slow_answer, fast_answer]  # B's charger answers when the test says so

    first = await a.gateway.send("cp1", slow, timeout_s=0.3)
    assert not first.ok
    assert first.error is not None
    assert "may have reached the charger" in first.error

    # Another request is waiting when the late answer comes, on the same reply list.
    second_sent = asyncio.create_task(a.gateway.send("cp1", fast))
    await eventually(lambda: len(b.local.sent) == 2, "B is running the second command")
    slow_answer.set()
    await eventually(lambda: a.gateway.late_replies == 1, "the late reply is read and dropped")
    assert not second_sent.done()
    fast_answer.set()
    second = await second_sent
    assert second.ok
    assert second.payload["command"] == encode_command(fast)

    third = await a.gateway.send("cp1", later)
    assert third.payload["command"] == encode_command(later)
    assert a.gateway.late_replies == 1
    assert await redis.llen(a.gateway.keys.replies("A")) == 0


async def test_unreadable_and_unknown_replies_are_dropped(
    workers: Callable[..., Awaitable[Worker]],
) -> None:
    a = await workers("A")
    a.gateway.take_reply("garbage")
    a.gateway.take_reply('{"id": "r1", "result": {"ok": "yes"}}')
    assert a.gateway.late_replies == 0
    a.gateway.take_reply('{"id": "nobody-waits", "result": {"ok": true}}')
    assert a.gateway.late_replies == 1


async def test_many_commands_in_flight_share_one_reply_reader(
    redis: Redis, workers: Callable[..., Awaitable[Worker]]
) -> None:
    # More than the client's connection pool (100): a blocking pop per request would run out.
    a, b = await workers("A"), await workers("B")
    await hold(b, "cp1")
    b.start_server()
    commands = [TriggerMessage(f"m{i}") for i in range(300)]
    results = await asyncio.gather(*(a.gateway.send("cp1", c) for c in commands))
    assert all(r.ok for r in results), {r.error for r in results if not r.ok}
    assert [r.payload["command"] for r in results] == [encode_command(c) for c in commands]


async def test_a_gateway_whose_reader_is_not_running_says_so(
    redis: Redis, make_settings: Make, workers: Callable[..., Awaitable[Worker]]
) -> None:
    b = await workers("B")
    await hold(b, "cp1")
    presence = Presence(redis, make_settings("A"))
    result = await ClusterGateway(FakeGateway(), presence).send("cp1", Reset())
    assert result.error == "cluster gateway is not running: start ClusterGateway.run()"


async def test_a_cancelled_caller_takes_its_command_back(
    redis: Redis, workers: Callable[..., Awaitable[Worker]]
) -> None:
    a, b = await workers("A", command_timeout_s=30.0), await workers("B")
    await hold(b, "cp1")
    queue = a.gateway.keys.requests("B")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):  # what SmartCharging's wait_for does
            await a.gateway.send("cp1", Reset())
    assert await redis.llen(queue) == 0
    b.start_server()
    await asyncio.sleep(0.3)
    assert b.local.sent == []


async def test_a_request_past_its_deadline_is_dropped_unsent(
    redis: Redis, workers: Callable[..., Awaitable[Worker]]
) -> None:
    b = await workers("B")
    await hold(b, "cp1")
    request = {
        "id": "r1",
        "from": "A",
        "cp": "cp1",
        "command": encode_command(Reset()),
        "deadline": time.time() - 1,
        "fence": None,
    }
    await b.server.handle(dumps(request))
    assert b.local.sent == []
    assert await redis.exists(b.gateway.keys.replies("A")) == 0  # no answer either


async def test_an_unreadable_request_is_dropped(workers: Callable[..., Awaitable[Worker]]) -> None:
    b = await workers("B")
    for raw in (
        "not json",
        "[]",
        '{"id": "r", "cp": "cp1"}',
        '{"id": 1, "cp": "c", "deadline": 1e12, "command": {"type": "Reset"}}',
    ):
        await b.server.handle(raw)
    assert b.local.sent == []


async def test_a_stale_fence_stops_the_command_at_the_holder(
    workers: Callable[..., Awaitable[Worker]],
) -> None:
    a, b = await workers("A"), await workers("B")
    await a.presence.heartbeat()
    await hold(b, "cp1")
    b.start_server()
    lease = await a.leases.acquire("site")
    assert lease is not None

    ok = await a.gateway.send("cp1", StopCharging("7"), fence=Fence("site", lease.token, "A"))
    assert ok.ok

    await a.leases.release(lease)
    taken = await b.leases.acquire("site")  # another worker leads the site now
    assert taken is not None
    stale = await a.gateway.send("cp1", StopCharging("8"), fence=Fence("site", lease.token, "A"))
    assert not stale.ok
    assert stale.error is not None
    assert "stale fencing token" in stale.error
    assert b.local.sent == [("cp1", StopCharging("7"))]  # the stale one never reached it


async def test_a_stale_fence_stops_a_local_command_too(
    workers: Callable[..., Awaitable[Worker]],
) -> None:
    a, b = await workers("A"), await workers("B")
    await hold(a, "cp1")
    assert await b.leases.acquire("site") is not None
    result = await a.gateway.send("cp1", Reset(), fence=Fence("site", 1, "A"))
    assert not result.ok
    assert a.local.sent == []


async def test_is_connected_knows_remote_chargers_through_the_directory(
    redis: Redis, make_settings: Make, workers: Callable[..., Awaitable[Worker]]
) -> None:
    b = await workers("B")
    settings = make_settings("A")
    presence = Presence(redis, settings)
    directory = PresenceDirectory(presence)
    local = FakeGateway(connected={"here"})
    gateway = ClusterGateway(local, presence, directory)
    task = asyncio.create_task(directory.run())
    try:
        await directory.ready.wait()
        assert gateway.is_connected("here")
        assert not gateway.is_connected("cp1")
        await hold(b, "cp1")
        await eventually(lambda: gateway.is_connected("cp1"), "B's charger seen from A")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
