"""The seam between application logic and chargers: services send commands through a gateway and
never touch websockets. The single-process gateway is csms.ocpp.gateway.OcppGateway; a multi-worker
one can route the same calls across processes."""

from __future__ import annotations

from typing import Protocol

from csms.domain.commands import Command, CommandResult
from csms.domain.leadership import Fence


class ChargerGateway(Protocol):
    """Send commands to connected chargers."""

    def is_connected(self, charge_point_id: str) -> bool:
        """Is the charger connected (to this gateway)?"""
        ...

    async def send(
        self, charge_point_id: str, command: Command, *, fence: Fence | None = None
    ) -> CommandResult:
        """Send one command, wait for the answer (with the configured timeout), record it. With
        ``fence``, a gateway that can check it (cluster mode) sends only while the fence holds."""
        ...


class Leadership(Protocol):
    """Which sites this process plans and dispatches for (csms.domain.leadership.SoleLeader in a
    single process, csms.cluster.leadership.LeaseKeeper in a cluster)."""

    def is_leader(self, site_id: str) -> bool:
        """Does this process lead the site now?"""
        ...

    def fence(self, site_id: str) -> Fence | None:
        """What to dispatch the site's profiles under, while leading it; None: not leading."""
        ...
