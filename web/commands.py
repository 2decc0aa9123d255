"""The operator commands a charger can be sent, by name: the console's buttons and the JSON API's
``POST /api/charge-points/{id}/commands`` map onto the same domain commands."""

from __future__ import annotations

from typing import Final, Literal

from csms.domain.commands import (
    Command,
    RawCall,
    Reset,
    StartCharging,
    TriggerMessage,
    UnlockConnector,
)

TRIGGERS: Final = ("StatusNotification", "MeterValues", "Heartbeat", "BootNotification")
Action = Literal["reset", "hard-reset", "unlock", "trigger", "clear-profile", "start"]
ACTIONS: Final = ("reset", "hard-reset", "unlock", "trigger", "clear-profile", "start")


def command_for(action: str, evse_id: int, message: str, id_tag: str) -> Command:
    """The command behind a button (ValueError for an unknown one)."""
    if action == "reset":
        return Reset(hard=False)
    if action == "hard-reset":
        return Reset(hard=True)
    if action == "unlock":
        return UnlockConnector(connector_id=1, evse_id=max(evse_id, 1))
    if action == "trigger":
        if message not in TRIGGERS:
            raise ValueError(f"unknown message {message!r}; one of {', '.join(TRIGGERS)}")
        return TriggerMessage(message, evse_id or None)
    if action == "clear-profile":
        # no criteria: clears every profile the central system installed (both versions)
        return RawCall("ClearChargingProfile", {})
    if action == "start":
        return StartCharging(id_tag or "OPERATOR", evse_id or None)
    raise ValueError(f"unknown command {action!r}; one of {', '.join(ACTIONS)}")
