"""Things that happened to chargers and sessions, published to whoever listens (the planning loop,
later the console's live views). Listeners are called synchronously and must only take note
(e.g. set a flag); a failing listener is logged and never disturbs the publisher."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

log = logging.getLogger(__name__)

NoticeKind = Literal[
    "connected",
    "disconnected",
    "booted",
    "capabilities",
    "session_started",
    "session_ended",
    "needs",
    "meter",
    "site",
    "profiles_reported",
    "replan",  # cluster mode: a worker asks the site's leader to plan it (data: {"reason"})
]


@dataclass(frozen=True, slots=True)
class Notice:
    """One thing that happened. ``site_id`` is set for site-wide notices (cap or config change);
    ``data`` carries what a charger reported when that is the news (``profiles_reported``: one
    2.0.1 ReportChargingProfiles, camelCase as on the wire)."""

    kind: NoticeKind
    charge_point_id: str = ""
    evse_id: int = 0
    transaction_id: int | None = None
    power_w: float | None = None
    energy_wh: float | None = None
    at: datetime | None = None
    site_id: str | None = None
    data: dict[str, Any] | None = None


Listener = Callable[[Notice], None]


class Notifier:
    """Fan-out of notices to listeners."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Start calling ``listener``; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, notice: Notice) -> None:
        """Tell every listener."""
        for listener in list(self._listeners):
            try:
                listener(notice)
            except Exception:  # a listener's bug must not break OCPP handling
                log.exception("notification listener failed on %s", notice.kind)
