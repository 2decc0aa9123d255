"""Charger passwords (HTTP Basic auth, security profiles 1 and 2): generate, push to the charger,
store.

A new password is stored only once the charger has accepted it — otherwise the charger would be
locked out at its next reconnect. OCPP 1.6 (security whitepaper ed. 2, configuration key
``AuthorizationKey``) carries the password as the hexadecimal form of its bytes; OCPP 2.0.1 (A01,
``SecurityCtrlr.BasicAuthPassword``) carries it as a string of 16 to 40 printable characters.
After accepting, the charger reconnects with the new password (2.0.1 part 2, use case A01).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from csms.domain.commands import CommandResult, RawCall
from csms.ports import ChargerGateway
from csms.services.stations import StationService

MIN_PASSWORD = 16  # 1.6 security whitepaper and 2.0.1 part 2 A00: 16 to 40 characters
MAX_PASSWORD = 40
PASSWORD_LENGTH = 24


class CredentialError(ValueError):
    """A password cannot be set; the message says why and what to do."""


def new_password() -> str:
    """A random password of 24 URL-safe characters (about 143 bits)."""
    return secrets.token_urlsafe(PASSWORD_LENGTH)[:PASSWORD_LENGTH]


def check_password(password: str) -> None:
    """Raise ``CredentialError`` unless 16 to 40 printable ASCII characters without a colon (HTTP
    Basic auth cannot carry a colon in the user part; we keep the password printable too)."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise CredentialError(
            f"a charger password has {MIN_PASSWORD} to {MAX_PASSWORD} characters "
            f"(this one has {len(password)}); leave it blank to get a random one"
        )
    if not (password.isascii() and password.isprintable()) or " " in password:
        raise CredentialError("a charger password is printable ASCII without spaces")


def password_call(version: str, password: str) -> RawCall:
    """The call that gives a charger its new password."""
    if version == "ocpp1.6":
        return RawCall(
            "ChangeConfiguration", {"key": "AuthorizationKey", "value": password.encode().hex()}
        )
    return RawCall(
        "SetVariables",
        {
            "setVariableData": [
                {
                    "attributeValue": password,
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                }
            ]
        },
    )


def answer_status(version: str, result: CommandResult) -> str | None:
    """The charger's verdict on ``password_call`` (``Accepted``, ``Rejected``, ...)."""
    if not result.ok:
        return None
    if version == "ocpp1.6":
        return result.status
    rows: Any = result.payload.get("setVariableResult")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        status = rows[0].get("attributeStatus")
        return str(status) if status is not None else None
    return None


@dataclass(frozen=True, slots=True)
class PasswordChange:
    """What happened: the password (shown to the operator once) and how the charger took it."""

    password: str
    pushed: bool  # the charger accepted it (else it was stored only, on the operator's word)
    status: str | None


async def change_password(
    gateway: ChargerGateway,
    stations: StationService,
    charge_point_id: str,
    version: str | None,
    *,
    password: str | None = None,
    store_only: bool = False,
) -> PasswordChange:
    """Give a charger a new password: push it to the charger and store it once accepted, or
    (``store_only``: the charger is configured by hand) just store it. Raises
    ``CredentialError`` when the charger is offline or refuses; nothing is stored then."""
    password = password if password else new_password()
    check_password(password)
    if store_only:
        await stations.set_password(charge_point_id, password)
        return PasswordChange(password, pushed=False, status=None)
    if not gateway.is_connected(charge_point_id):
        raise CredentialError(
            f"{charge_point_id} is not connected: the new password cannot be given to it; "
            "configure the charger by hand and tick 'store only'"
        )
    result = await gateway.send(charge_point_id, password_call(version or "ocpp1.6", password))
    status = answer_status(version or "ocpp1.6", result)
    if status not in ("Accepted", "RebootRequired"):
        why = result.error if not result.ok else f"it answered {status or 'without a status'}"
        raise CredentialError(
            f"{charge_point_id} did not take the new password ({why}); the old one stays"
        )
    await stations.set_password(charge_point_id, password)
    return PasswordChange(password, pushed=True, status=status)
