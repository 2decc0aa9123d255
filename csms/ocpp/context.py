"""What every connection's handlers need, passed down from the server (no globals)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from csms.domain.clock import Clock
from csms.services.meter_batcher import MeterBatcher
from csms.services.stations import StationService


@dataclass
class ConnectionContext:
    """Shared services plus this connection's own state."""

    service: StationService
    meters: MeterBatcher
    clock: Clock
    heartbeat_interval_s: int
    booted: asyncio.Event = field(default_factory=asyncio.Event)
    boot_call_id: str | None = None

    def sent(self, frame: str) -> None:
        """Called after each frame we send: the boot is done once its answer has left.

        The CSMS must not send its own requests before the BootNotification answer (1.6 §4.2,
        2.0.1 B01), and the ocpp package sends that answer only after the handler returns.
        """
        if self.boot_call_id is not None and frame.startswith(f'[3,"{self.boot_call_id}"'):
            self.booted.set()
