"""Live notices of every worker on every worker, through Redis pub/sub.

Each worker publishes the notices of its own chargers, tagged with its id, on one channel, and
republishes into its local ``Notifier`` what the others published. Two guards keep a notice from
going round: a worker ignores what it published itself (pub/sub sends it back to the publisher),
and it does not publish again what it is relaying (the listener it put on the local notifier sees
the relayed notice too, synchronously, while ``relaying`` is set).

Best effort, like the in-process notifier: a notice published while Redis is away is dropped
(after a bounded queue), and listeners must re-read state rather than count on every notice.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from csms.cluster.codec import CodecError, decode_notice, dumps, encode_notice, loads
from csms.cluster.keys import BLOCK_S, Keys, close_pubsub, raise_if_cancelled
from csms.cluster.settings import ClusterSettings
from csms.services.notifications import Notice, Notifier

log = logging.getLogger(__name__)

_QUEUE_LIMIT = 10_000  # notices waiting to be published before the oldest are dropped
_BATCH = 200  # notices per pipeline


class EventBridge:
    """Bridges one worker's ``Notifier`` to the cluster's event channel."""

    def __init__(self, redis: Redis, settings: ClusterSettings, notifier: Notifier) -> None:
        self.redis = redis
        self.notifier = notifier
        self.worker_id = settings.worker_id
        self.channel = Keys(settings.key_prefix).events_channel
        self.relaying = False  # True while a remote notice is being delivered locally
        self.ready = asyncio.Event()  # set once subscribed: remote notices arrive from then on
        self.published = 0
        self.relayed = 0
        self.dropped = 0
        self._queue: asyncio.Queue[Notice] = asyncio.Queue(_QUEUE_LIMIT)
        self._unsubscribe = notifier.subscribe(self._take)
        self._subscribed = True

    def close(self) -> None:
        """Stop taking local notices (idempotent)."""
        if self._subscribed:
            self._subscribed = False
            self._unsubscribe()

    def _take(self, notice: Notice) -> None:
        if self.relaying:
            return  # came from another worker: publishing it again would loop
        if self._queue.full():
            self._queue.get_nowait()  # the newest notices matter most to a live view
            self.dropped += 1
        self._queue.put_nowait(notice)

    async def run(self) -> None:
        """Publish and receive until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._publish_forever())
                tg.create_task(self._receive_forever())
        finally:
            self.close()

    async def _publish_forever(self) -> None:
        while True:
            raise_if_cancelled()
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            messages = []
            for notice in batch:
                try:
                    body = encode_notice(notice)
                    messages.append(dumps({"origin": self.worker_id, "notice": body}))
                except CodecError as exc:
                    log.warning("notice %s not published: %s", notice.kind, exc)
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for message in messages:
                        pipe.publish(self.channel, message)
                    await pipe.execute()
                self.published += len(messages)
            except RedisError as exc:
                self.dropped += len(messages)
                log.warning("%d notices not published: %s", len(messages), exc)
                await asyncio.sleep(1.0)

    async def _receive_forever(self) -> None:
        while True:
            raise_if_cancelled()
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self.ready.set()
                while True:
                    raise_if_cancelled()
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=BLOCK_S
                    )
                    if message is not None and message.get("type") == "message":
                        self.deliver(message["data"])
            except RedisError as exc:
                self.ready.clear()
                log.warning("event channel: %s; resubscribing", exc)
                await asyncio.sleep(1.0)
            finally:
                await close_pubsub(pubsub)

    def deliver(self, raw: str | bytes) -> None:
        """One message from the channel: into the local notifier unless it is our own."""
        try:
            message = loads(raw)
            origin = message.get("origin")
            if origin == self.worker_id:
                return
            notice = decode_notice(message.get("notice"))
        except CodecError as exc:
            log.warning("bad event message dropped: %s", exc)
            return
        self.relaying = True
        try:
            self.notifier.publish(notice)
        finally:
            self.relaying = False
        self.relayed += 1
