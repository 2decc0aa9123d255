"""Settings of cluster mode: N identical workers sharing one Redis (and one PostgreSQL database).

``redis_url`` unset (the default) means single-process mode: nothing in this package runs.
"""

from __future__ import annotations

import os
import socket
from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator


def default_worker_id() -> str:
    """``hostname-pid``: unique per process on a host, readable in logs and in Redis keys."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ClusterSettings(BaseModel):
    """Cluster mode: presence, command routing, live-event fan-out and site leadership in Redis."""

    # A Redis URL may carry a password: errors must not echo the input.
    model_config = ConfigDict(hide_input_in_errors=True)

    redis_url: str | None = Field(
        None,
        description="Redis URL (e.g. redis://127.0.0.1:6379/0) that turns cluster mode on; "
        "unset: single-process mode (no Redis)",
    )
    worker_id: str = Field(
        default_factory=default_worker_id,
        min_length=1,
        max_length=200,
        pattern=r"^[^\s]+$",
        description="this worker's name in the cluster, unique among live workers "
        "(default: hostname-pid)",
    )
    key_prefix: str = Field(
        "csms:",
        max_length=100,
        description="prefix of every Redis key and channel, so several systems can share a Redis",
    )
    presence_ttl_s: float = Field(
        15.0,
        gt=0,
        description="seconds a charger's presence and a worker's heartbeat live without refresh "
        "(refreshed every third of it): how long a killed worker still looks alive",
    )
    lease_ttl_s: float = Field(
        10.0,
        gt=0,
        description="seconds a site's planning lease lives without renewal (renewed every third "
        "of it): leadership of a killed worker's sites moves within about 4/3 of this",
    )
    command_timeout_s: float = Field(
        35.0,
        gt=0,
        description="seconds to wait for the answer to a command routed to another worker; keep "
        "it above ocpp.response_timeout_s so the charger's own timeout is what comes back",
    )
    fence_margin_s: float = Field(
        1.0,
        ge=0,
        description="a fencing token whose lease has less than this left fails the check made "
        "before each dispatch (the lease could lapse while the profile is on its way)",
    )
    redis_max_connections: int = Field(
        50,
        ge=8,
        description="Redis connections per worker (four stay busy with blocking reads and "
        "subscriptions); more commands at once wait for a free one",
    )
    max_inflight_commands: int = Field(
        64,
        ge=1,
        description="commands from other workers this worker runs at once",
    )

    @model_validator(mode="after")
    def _redis_url_is_one(self) -> Self:
        if self.redis_url is not None:
            scheme = urlsplit(self.redis_url).scheme
            if scheme not in ("redis", "rediss", "unix"):
                raise ValueError(
                    f"redis_url must start with redis://, rediss:// or unix:// (got "
                    f"{scheme + '://' if scheme else 'no scheme'}), e.g. redis://127.0.0.1:6379/0"
                )
        return self

    @model_validator(mode="after")
    def _renewals_fit(self) -> Self:
        if self.fence_margin_s >= self.lease_ttl_s / 2:
            # A lease is renewed every third of its life: a margin above half of it would fail
            # checks on a healthy leader.
            raise ValueError(
                f"fence_margin_s ({self.fence_margin_s}) must be below half of lease_ttl_s "
                f"({self.lease_ttl_s})"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Is cluster mode on?"""
        return self.redis_url is not None


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
