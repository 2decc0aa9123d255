"""Reference server 2 of the OCPP load benchmark: the ``ocpp`` package alone.

``python -m benchmarks.ocpp_bare_server --port PORT`` runs one ``ocpp`` ChargePoint per connection
(1.6 or 2.0.1, by subprotocol) that answers BootNotification, Heartbeat, StatusNotification and
MeterValues — with the package's JSON-schema validation of every call and reply — and stores
nothing. What the library costs, without persistence. Stops on SIGTERM or SIGINT.
"""

# The ocpp package ships no types: its @on decorator is untyped.
# mypy: allow-untyped-decorators

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v16.enums import RegistrationStatus
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from ocpp.v201.enums import RegistrationStatusEnumType
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from benchmarks.ocpp_raw_server import HEARTBEAT_INTERVAL_S, serve_until_stopped, server_args

PATH_PREFIX = "/ocpp/"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Bare16(ChargePoint16):  # type: ignore[misc]
    """Answers a 1.6 charge point, stores nothing."""

    @on(Action16.boot_notification)
    async def on_boot(self, **_: Any) -> Any:
        return result16.BootNotification(
            current_time=_now(), interval=HEARTBEAT_INTERVAL_S, status=RegistrationStatus.accepted
        )

    @on(Action16.heartbeat)
    async def on_heartbeat(self, **_: Any) -> Any:
        return result16.Heartbeat(current_time=_now())

    @on(Action16.status_notification)
    async def on_status(self, **_: Any) -> Any:
        return result16.StatusNotification()

    @on(Action16.meter_values)
    async def on_meter_values(self, **_: Any) -> Any:
        return result16.MeterValues()


class Bare201(ChargePoint201):  # type: ignore[misc]
    """Answers a 2.0.1 charging station, stores nothing."""

    @on(Action201.boot_notification)
    async def on_boot(self, **_: Any) -> Any:
        return result201.BootNotification(
            current_time=_now(),
            interval=HEARTBEAT_INTERVAL_S,
            status=RegistrationStatusEnumType.accepted,
        )

    @on(Action201.heartbeat)
    async def on_heartbeat(self, **_: Any) -> Any:
        return result201.Heartbeat(current_time=_now())

    @on(Action201.status_notification)
    async def on_status(self, **_: Any) -> Any:
        return result201.StatusNotification()

    @on(Action201.meter_values)
    async def on_meter_values(self, **_: Any) -> Any:
        return result201.MeterValues()


async def bare_handler(ws: ServerConnection) -> None:
    """One ChargePoint for the connection, by subprotocol."""
    path = ws.request.path if ws.request is not None else ""
    cp_id = path[len(PATH_PREFIX) :] if path.startswith(PATH_PREFIX) else path.strip("/")
    cp: Any = Bare16(cp_id, ws) if ws.subprotocol == "ocpp1.6" else Bare201(cp_id, ws)
    with contextlib.suppress(ConnectionClosed):
        await cp.start()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = server_args("python -m benchmarks.ocpp_bare_server", __doc__.split("\n\n")[0], argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_stopped(bare_handler, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
