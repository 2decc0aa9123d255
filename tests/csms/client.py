"""A small OCPP test client built on the ocpp package (the full simulator is its own package)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201


class Client16(Cp16):  # type: ignore[misc]
    """A 1.6 charge point that answers what the CSMS asks at boot."""

    @on("GetConfiguration")
    async def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> Any:
        return result16.GetConfiguration(
            configuration_key=[
                {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "3"},
                {"key": "ChargingScheduleMaxPeriods", "readonly": True, "value": "24"},
            ],
            unknown_key=["MaxChargingProfilesInstalled"],
        )

    @on("RemoteStartTransaction")
    async def on_remote_start(self, id_tag: str, **_: Any) -> Any:
        return result16.RemoteStartTransaction(status="Accepted" if id_tag != "NO" else "Rejected")

    @on("RemoteStopTransaction")
    async def on_remote_stop(self, transaction_id: int, **_: Any) -> Any:
        return result16.RemoteStopTransaction(status="Accepted")

    @on("Reset")
    async def on_reset(self, type: str, **_: Any) -> Any:
        return result16.Reset(status="Accepted")

    @on("TriggerMessage")
    async def on_trigger(self, requested_message: str, **_: Any) -> Any:
        return result16.TriggerMessage(status="Accepted")

    @on("GetCompositeSchedule")
    async def on_composite(self, connector_id: int, duration: int, **_: Any) -> Any:
        await asyncio.sleep(self.slow_answer_s)
        return result16.GetCompositeSchedule(status="Rejected")

    slow_answer_s = 0.0


class Client201(Cp201):  # type: ignore[misc]
    """A 2.0.1 station that answers GetVariables."""

    @on("RequestStartTransaction")
    async def on_request_start(
        self, id_token: dict[str, Any], remote_start_id: int, **_: Any
    ) -> Any:
        return result201.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    async def on_request_stop(self, transaction_id: str, **_: Any) -> Any:
        return result201.RequestStopTransaction(status="Accepted")

    @on("Reset")
    async def on_reset(self, type: str, **_: Any) -> Any:
        return result201.Reset(status="Scheduled")

    @on("GetVariables")
    async def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        return result201.GetVariables(
            get_variable_result=[
                {
                    "attribute_status": "Accepted",
                    "attribute_value": "A,W" if d["variable"]["name"] == "RateUnit" else "5",
                    "component": d["component"],
                    "variable": d["variable"],
                }
                for d in get_variable_data
            ]
        )


def auth_header(cp_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextlib.asynccontextmanager
async def connect(
    port: int, cp_id: str, version: str, password: str | None = None
) -> AsyncIterator[Any]:
    """Connect, run the client's receive loop in the background, yield the client."""
    headers = auth_header(cp_id, password) if password is not None else {}
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/ocpp/{cp_id}",
        subprotocols=[version],  # type: ignore[list-item]
        additional_headers=headers,
        proxy=None,
        open_timeout=5,
    )
    client = (Client16 if version == "ocpp1.6" else Client201)(cp_id, ws, response_timeout=5)
    task = asyncio.create_task(client.start())
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await ws.close()


async def boot16(client: Client16) -> Any:
    return await client.call(
        call16.BootNotification(charge_point_vendor="Acme", charge_point_model="AC22"),
        suppress=False,
    )


async def boot201(client: Client201) -> Any:
    return await client.call(
        call201.BootNotification(
            charging_station={"vendor_name": "Acme", "model": "AC22"}, reason="PowerUp"
        ),
        suppress=False,
    )
