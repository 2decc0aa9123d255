"""A running central system with one site, one connected 1.6 charger and one session, and an
HTTP client on its app (ASGI, in process)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI
from ocpp.routing import on
from ocpp.v16 import call as c16
from ocpp.v16 import call_result as r16

from csms.runtime import Runtime
from tests.csms.client import Client16, boot16
from tests.csms.conftest import make_settings
from web.app import create_app


class Obedient16(Client16):  # type: ignore[misc]
    """A 1.6 charger that accepts charging profiles and the console's commands."""

    @on("SetChargingProfile")
    async def on_set_profile(self, **_: Any) -> Any:
        return r16.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    async def on_clear_profile(self, **_: Any) -> Any:
        return r16.ClearChargingProfile(status="Accepted")

    @on("UnlockConnector")
    async def on_unlock(self, connector_id: int, **_: Any) -> Any:
        return r16.UnlockConnector(status="Unlocked")

    configuration: dict[str, str]  # what ChangeConfiguration set (per instance)
    refuse_configuration = False

    @on("ChangeConfiguration")
    async def on_change_configuration(self, key: str, value: str, **_: Any) -> Any:
        if self.refuse_configuration:
            return r16.ChangeConfiguration(status="Rejected")
        self.__dict__.setdefault("configuration", {})[key] = value
        return r16.ChangeConfiguration(status="Accepted")

    composite: dict[str, Any] | None = None  # a test sets the schedule to answer with

    @on("GetCompositeSchedule")
    async def on_composite(self, connector_id: int, duration: int, **_: Any) -> Any:
        if self.composite is None:
            return r16.GetCompositeSchedule(status="Rejected")
        return r16.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, **self.composite
        )


@contextlib.asynccontextmanager
async def connect(port: int, cp_id: str) -> AsyncIterator[Obedient16]:
    """Connect an obedient 1.6 charger and run its receive loop."""
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/ocpp/{cp_id}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        proxy=None,
        open_timeout=5,
    )
    client = Obedient16(cp_id, ws, response_timeout=5)
    task = asyncio.create_task(client.start())
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await ws.close()


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OPERATOR = ("olga", "operator-password")
VIEWER = ("viktor", "viewer-password")


async def sign_in(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    """Sign in through the form, as a browser would (the form's CSRF token included)."""
    page = await http.get("/console/login")
    token = CSRF.search(page.text)
    assert token is not None, page.text
    return await http.post(
        "/console/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
    )


async def csrf_of(http: httpx.AsyncClient) -> str:
    """The signed-in session's CSRF token, read from a page."""
    page = await http.get("/console/chargers")
    token = CSRF.search(page.text)
    assert token is not None, page.text
    return token.group(1)


@dataclass
class Console:
    """The app, its runtime, a signed-in operator's client (sending the CSRF header like HTMX),
    the charger's OCPP client and its session."""

    app: FastAPI
    rt: Runtime
    http: httpx.AsyncClient
    cp: Any
    transaction_id: int

    def client(self) -> httpx.AsyncClient:
        """Another client on the same app, signed in as nobody."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="https://test"
        )


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    """Site S1 (22 kW) with charger W-1 charging (a session started, 1 kWh metered)."""
    settings = make_settings(f"sqlite:///{tmp_path / 'csms.db'}", accept_unknown_id_tokens=True)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        # https: the session cookie is Secure (web.cookie_secure)
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://test") as http,
    ):
        rt: Runtime = app.state.runtime
        await rt.users.create(*OPERATOR, "operator")
        await rt.users.create(*VIEWER, "viewer")
        assert (await sign_in(http, *OPERATOR)).status_code == 303
        http.headers["X-CSRF-Token"] = await csrf_of(http)
        await rt.sites.upsert("S1", {"capacity_kw": 22.0, "timezone": "Europe/Berlin"})
        await rt.stations.register_charge_point("W-1", site_id="S1", max_power_w=11000)
        async with connect(rt.ocpp.port, "W-1") as cp:
            await boot16(cp)
            now = rt.clock.now()
            r = await cp.call(
                c16.StartTransaction(
                    connector_id=1, id_tag="CARD", meter_start=0, timestamp=now.isoformat()
                ),
                suppress=False,
            )
            await cp.call(
                c16.MeterValues(
                    connector_id=1,
                    transaction_id=r.transaction_id,
                    meter_value=[
                        {"timestamp": now.isoformat(), "sampledValue": [{"value": "1000"}]}
                    ],
                ),
                suppress=False,
            )
            await rt.smart.replan("S1", "test")
            yield Console(app, rt, http, cp, r.transaction_id)
