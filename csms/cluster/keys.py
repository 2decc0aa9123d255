"""Every Redis key and channel of the cluster, in one place (all under the settings' prefix), and
two small helpers for redis-py replies and subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

# Blocking reads (BLPOP, pub/sub polls) wake at least this often. It must stay well below the
# client's socket timeout (redis-py 8 defaults to 5 s): a block that outlasts it ends in a
# timeout error and a reconnect instead of an empty answer.
BLOCK_S = 1.0


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix."""

    prefix: str

    def presence(self, charge_point_id: str) -> str:
        """Which worker holds the charger's socket (string, with expiry)."""
        return f"{self.prefix}presence:{charge_point_id}"

    @property
    def presence_channel(self) -> str:
        """Claims and releases, for directories that mirror presence."""
        return f"{self.prefix}presence-events"

    @property
    def workers(self) -> str:
        """Ids of workers that have announced themselves (live or not: check ``alive``)."""
        return f"{self.prefix}workers"

    def alive(self, worker_id: str) -> str:
        """A worker's heartbeat (string, with expiry)."""
        return f"{self.prefix}worker:{worker_id}:alive"

    def chargers(self, worker_id: str) -> str:
        """Chargers a worker has claimed (a set; members are checked against presence)."""
        return f"{self.prefix}worker:{worker_id}:chargers"

    def requests(self, worker_id: str) -> str:
        """Commands waiting for a worker (a list)."""
        return f"{self.prefix}worker:{worker_id}:requests"

    def replies(self, worker_id: str) -> str:
        """Answers to the commands a worker routed elsewhere (a list, with expiry)."""
        return f"{self.prefix}worker:{worker_id}:replies"

    @property
    def events_channel(self) -> str:
        """Live notices of every worker."""
        return f"{self.prefix}events"

    def lease(self, site_id: str) -> str:
        """A site's planning lease: ``token/worker`` (string, with expiry)."""
        return f"{self.prefix}lease:{site_id}"

    def fence(self, site_id: str) -> str:
        """A site's fencing counter (never expires, only grows)."""
        return f"{self.prefix}fence:{site_id}"


def text(value: bytes | str | None) -> str | None:
    """A reply as text, whether or not the client decodes responses."""
    if isinstance(value, bytes):
        return value.decode()
    return value


async def close_pubsub(pubsub: PubSub) -> None:
    """Close a subscription's connection, ignoring a Redis that is already gone."""
    with contextlib.suppress(RedisError, OSError):
        # redis-py leaves PubSub.aclose unannotated: called through Any, not silenced.
        await cast(Any, pubsub).aclose()


def raise_if_cancelled() -> None:
    """Re-raise a cancellation redis-py swallowed. Seen with redis-py 8.1 on Python 3.11: a task
    cancelled during a blocking read got a ``TimeoutError`` (a ``RedisError``) some seconds later
    instead of ``CancelledError``, so a loop that retries on Redis errors outlived its own
    cancellation and a TaskGroup never finished. Loops call this on every turn."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
