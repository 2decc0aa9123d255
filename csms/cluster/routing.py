"""Commands from any worker to the worker that holds the charger's socket.

``ClusterGateway`` implements ``csms.ports.ChargerGateway``. A command for a charger held here
goes to the local gateway; for a charger held elsewhere it is pushed, as JSON with a random request
id, onto the holder's request list — in one atomic step with the check that the holder's heartbeat
is current, so a dead worker is refused at once. The holder's ``CommandServer`` runs it and pushes
the answer onto the caller's reply list, which one task per worker (``ClusterGateway.run``) reads
and hands to the waiting request by id. A reply whose request is no longer waiting (timed out,
cancelled, or from before a restart) is dropped: it can never be taken for another request's.
One reply reader per worker, rather than one blocking pop per request, keeps the number of Redis
connections fixed however many commands are in flight.

Delivery is at most once, never twice: a request is popped by one ``CommandServer`` and not
retried across workers. On timeout or cancellation the caller takes its request back off the list
if it is still there; only then can it say for sure the command was not sent. A request whose
deadline has passed when it is popped is dropped unsent (deadlines are wall-clock times: worker
clocks are assumed NTP-synchronised to well under the command timeout).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from csms.cluster.codec import (
    CodecError,
    decode_command,
    decode_result,
    dumps,
    encode_command,
    encode_result,
    loads,
)
from csms.cluster.keys import BLOCK_S, Keys, raise_if_cancelled
from csms.cluster.presence import Presence, PresenceDirectory
from csms.cluster.settings import ClusterSettings
from csms.domain.commands import Command, CommandResult
from csms.domain.leadership import Fence
from csms.ports import ChargerGateway

log = logging.getLogger(__name__)

FenceCheck = Callable[[Fence], Awaitable[bool]]  # Leases.check

# KEYS[1]: the holder's heartbeat, KEYS[2]: its request list. ARGV: request, list ttl ms.
# The list expires if nobody pushes to it for a while: a dead worker's queue does not linger.
_PUSH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# How often a waiting caller checks that the holder is still alive, at most.
_LIVENESS_CHECK_S = 1.0
# Request and reply lists expire this long after the command timeout, counted from their last
# push: what a dead worker leaves behind does not linger.
_REPLY_GRACE_S = 10.0


def _failed(error: str, t0: float | None = None) -> CommandResult:
    return CommandResult(
        ok=False, error=error, latency_s=0.0 if t0 is None else time.perf_counter() - t0
    )


class ClusterGateway:
    """A ``ChargerGateway`` for a cluster: local chargers through ``local``, the others through
    the worker that holds them."""

    def __init__(
        self,
        local: ChargerGateway,
        presence: Presence,
        directory: PresenceDirectory | None = None,
        *,
        check_fence: FenceCheck | None = None,
    ) -> None:
        self.local = local
        self.presence = presence
        self.directory = directory
        self.redis: Redis = presence.redis
        self.settings: ClusterSettings = presence.settings
        self.keys = Keys(self.settings.key_prefix)
        self.worker_id = self.settings.worker_id
        self._check_fence = check_fence
        self._push = self.redis.register_script(_PUSH)
        self._pending: dict[str, asyncio.Future[CommandResult]] = {}
        self._reading = False
        self.late_replies = 0  # replies that came after their request gave up (dropped)

    async def run(self) -> None:
        """Read this worker's replies until cancelled (needed for commands routed elsewhere)."""
        replies = self.keys.replies(self.worker_id)
        self._reading = True
        try:
            while True:
                raise_if_cancelled()
                try:
                    popped = await self.redis.blpop([replies], timeout=BLOCK_S)
                except RedisError as exc:
                    log.warning("reply list unreachable: %s", exc)
                    await asyncio.sleep(1.0)
                    continue
                if popped is not None:
                    self.take_reply(popped[1])
        finally:
            self._reading = False

    def take_reply(self, raw: bytes | str) -> None:
        """One reply: to the request waiting for it, if any still is."""
        try:
            message = loads(raw)
            request_id = message.get("id")
            result = decode_result(message.get("result"))
        except CodecError as exc:
            log.warning("unreadable reply dropped: %s", exc)
            return
        waiter = self._pending.get(request_id) if isinstance(request_id, str) else None
        if waiter is None or waiter.done():
            self.late_replies += 1
            log.info("late reply to %s dropped", request_id)
            return
        waiter.set_result(result)

    def is_connected(self, charge_point_id: str) -> bool:
        """Connected here, or to a live worker as far as the directory knows."""
        if self.local.is_connected(charge_point_id):
            return True
        if self.directory is None:
            return False
        holder = self.directory.holder(charge_point_id)
        return holder is not None and holder != self.worker_id

    async def send(
        self,
        charge_point_id: str,
        command: Command,
        *,
        fence: Fence | None = None,
        timeout_s: float | None = None,
    ) -> CommandResult:
        """Send through whichever worker holds the charger; never raises for routing failures
        (they come back as ``ok=False``). With ``fence``, the command is sent only if the lease
        is still current right before it goes to the charger. ``timeout_s`` (default
        ``command_timeout_s``) bounds the wait for another worker's answer."""
        try:
            holder = await self.presence.holder(charge_point_id)
        except RedisError as exc:
            # Redis away: chargers held here can still be served (fenced sends cannot).
            if self.local.is_connected(charge_point_id) and fence is None:
                return await self.local.send(charge_point_id, command)
            return _failed(f"cluster unavailable: {exc}")
        if holder == self.worker_id or (
            holder is None and self.local.is_connected(charge_point_id)
        ):
            return await self._send_here(charge_point_id, command, fence)
        if holder is None:
            return _failed("charger is not connected to any worker")
        timeout = self.settings.command_timeout_s if timeout_s is None else timeout_s
        return await self._route(holder, charge_point_id, command, fence, timeout)

    async def _send_here(
        self, charge_point_id: str, command: Command, fence: Fence | None
    ) -> CommandResult:
        if fence is not None:
            refused = await fence_refusal(self._check_fence, fence)
            if refused is not None:
                return refused
        return await self.local.send(charge_point_id, command)

    async def _route(
        self,
        holder: str,
        charge_point_id: str,
        command: Command,
        fence: Fence | None,
        timeout_s: float,
    ) -> CommandResult:
        t0 = time.perf_counter()
        if not self._reading:
            return _failed("cluster gateway is not running: start ClusterGateway.run()")
        request_id = secrets.token_hex(12)
        try:
            raw = dumps(
                {
                    "id": request_id,
                    "from": self.worker_id,
                    "cp": charge_point_id,
                    "command": encode_command(command),
                    "deadline": time.time() + timeout_s,
                    "fence": None
                    if fence is None
                    else {"site": fence.site_id, "token": fence.token, "worker": fence.worker_id},
                }
            )
        except CodecError as exc:
            return _failed(f"cannot route {type(command).__name__}: {exc}")
        queue = self.keys.requests(holder)
        extra = {"charge_point": charge_point_id}
        waiter: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = waiter
        try:
            pushed = await self._push(
                keys=[self.keys.alive(holder), queue],
                args=[raw, round((timeout_s + _REPLY_GRACE_S) * 1000)],
            )
            if not int(pushed):
                log.warning("not routed: worker %s is not alive", holder, extra=extra)
                return _failed(f"worker {holder} holding the charger is not alive", t0)
            result = await self._await_reply(holder, queue, raw, waiter, t0, timeout_s)
        except asyncio.CancelledError:
            # The caller gave up (asyncio.wait_for): the command must not go out later.
            await self._withdraw(queue, raw)
            raise
        except RedisError as exc:
            log.warning("routing to %s failed: %s", holder, exc, extra=extra)
            return _failed(f"cluster unavailable: {exc}", t0)
        finally:
            del self._pending[request_id]
        log.debug(
            "%s routed through %s: %s in %.1f ms",
            type(command).__name__,
            holder,
            result.status or result.error,
            (time.perf_counter() - t0) * 1000,
            extra=extra,
        )
        return result

    async def _await_reply(
        self,
        holder: str,
        queue: str,
        raw: str,
        waiter: asyncio.Future[CommandResult],
        t0: float,
        timeout_s: float,
    ) -> CommandResult:
        check_every = min(_LIVENESS_CHECK_S, self.settings.presence_ttl_s / 3)
        while (remaining := timeout_s - (time.perf_counter() - t0)) > 0:
            raise_if_cancelled()
            done, _ = await asyncio.wait({waiter}, timeout=min(remaining, check_every))
            if done:
                return waiter.result()
            if not await self.presence.is_alive(holder):
                sent = not await self._withdraw(queue, raw)
                return _failed(
                    f"worker {holder} stopped before answering"
                    + (" (the command may have reached the charger)" if sent else " (not sent)"),
                    t0,
                )
        sent = not await self._withdraw(queue, raw)
        return _failed(
            f"no answer from worker {holder} within {timeout_s} s"
            + (" (the command may have reached the charger)" if sent else " (not sent)"),
            t0,
        )

    async def _withdraw(self, queue: str, raw: str) -> bool:
        """Take the request back if no worker has popped it yet."""
        try:
            return bool(await self.redis.lrem(queue, 1, raw))
        except RedisError:
            return False


async def fence_refusal(check: FenceCheck | None, fence: Fence) -> CommandResult | None:
    """None if the fence holds, else why the command is refused."""
    if check is None:
        return _failed("fenced command but no fence check configured")
    try:
        if await check(fence):
            return None
    except RedisError as exc:
        return _failed(f"fence not checked, not sent: {exc}")
    return _failed(
        f"stale fencing token {fence.token} for site {fence.site_id}: the lease expired or "
        "another worker leads the site"
    )


class CommandServer:
    """The worker side: pops the requests routed to this worker, runs them on the local gateway
    (at most ``max_inflight_commands`` at once) and replies."""

    def __init__(
        self,
        redis: Redis,
        settings: ClusterSettings,
        local: ChargerGateway,
        *,
        check_fence: FenceCheck | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.local = local
        self.keys = Keys(settings.key_prefix)
        self.queue = self.keys.requests(settings.worker_id)
        self._check_fence = check_fence
        self._reply_ttl_ms = round((settings.command_timeout_s + _REPLY_GRACE_S) * 1000)
        self.served = 0  # requests answered (for tests and metrics)

    async def run(self) -> None:
        """Serve until cancelled (requests being run are cancelled with it)."""
        slots = asyncio.Semaphore(self.settings.max_inflight_commands)
        async with asyncio.TaskGroup() as tg:
            while True:
                raise_if_cancelled()
                await slots.acquire()
                try:
                    popped = await self.redis.blpop([self.queue], timeout=BLOCK_S)
                except RedisError as exc:
                    slots.release()
                    log.warning("command queue unreachable: %s", exc)
                    await asyncio.sleep(1.0)
                    continue
                if popped is None:
                    slots.release()
                    continue
                tg.create_task(self._serve(popped[1], slots))

    async def _serve(self, raw: bytes | str, slots: asyncio.Semaphore) -> None:
        try:
            await self.handle(raw)
        finally:
            slots.release()

    async def handle(self, raw: bytes | str) -> None:
        """Run one request and reply (a request that cannot be read is logged and dropped)."""
        try:
            request = loads(raw)
            request_id, caller = request["id"], request["from"]
            charge_point_id = request["cp"]
            deadline = float(request["deadline"])
            command = decode_command(request["command"])
            fence = _fence(request.get("fence"))
            if not all(isinstance(v, str) for v in (request_id, caller, charge_point_id)):
                raise CodecError("id, from and cp must be strings")
        except (CodecError, KeyError, TypeError, ValueError) as exc:
            log.error("unreadable command request dropped: %s", exc)
            return
        extra = {"charge_point": charge_point_id}
        if time.time() > deadline:
            log.warning("command from %s dropped unsent: its caller gave up", caller, extra=extra)
            return
        result = None if fence is None else await fence_refusal(self._check_fence, fence)
        if result is not None:
            log.warning("%s refused: %s", type(command).__name__, result.error, extra=extra)
        else:
            try:
                result = await self.local.send(charge_point_id, command)
            except Exception as exc:  # a gateway bug must reach the caller as an answer
                log.exception("local gateway failed", extra=extra)
                result = _failed(f"worker {self.settings.worker_id} failed: {exc}")
        await self._reply(caller, request_id, result, extra)

    async def _reply(
        self, caller: str, request_id: str, result: CommandResult, extra: dict[str, Any]
    ) -> None:
        key = self.keys.replies(caller)
        try:
            body = dumps({"id": request_id, "result": encode_result(result)})
        except CodecError as exc:  # e.g. an answer payload JSON cannot carry
            failed = _failed(f"answer could not be sent back: {exc}")
            body = dumps({"id": request_id, "result": encode_result(failed)})
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, body)
                pipe.pexpire(key, self._reply_ttl_ms)
                await pipe.execute()
            self.served += 1
        except RedisError as exc:
            log.warning("reply lost: %s", exc, extra=extra)


def _fence(data: Any) -> Fence | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise CodecError("fence must be an object")
    site, token, worker = data.get("site"), data.get("token"), data.get("worker")
    if (
        not isinstance(site, str)
        or not isinstance(worker, str)
        or not isinstance(token, int)
        or isinstance(token, bool)
    ):
        raise CodecError("fence needs a site and a worker (strings) and a token (integer)")
    return Fence(site, token, worker)
