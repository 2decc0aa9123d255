"""The seam between application logic and chargers: services send commands through a gateway and
never touch websockets. The single-process gateway is csms.ocpp.gateway.OcppGateway; a multi-worker
one can route the same calls across processes."""

from __future__ import annotations

from typing import Protocol

from csms.domain.commands import Command, CommandResult


class ChargerGateway(Protocol):
    """Send commands to connected chargers."""

    def is_connected(self, charge_point_id: str) -> bool:
        """Is the charger connected (to this gateway)?"""
        ...

    async def send(self, charge_point_id: str, command: Command) -> CommandResult:
        """Send one command, wait for the answer (with the configured timeout), record it."""
        ...
