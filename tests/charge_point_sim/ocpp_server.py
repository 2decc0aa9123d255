"""A minimal central system for protocol tests, built on the ``ocpp`` package (not our csms).

It accepts every boot, authorization and transaction, records every message it receives (and the
order of every frame), and lets a test send calls to a connected charger. With an SSL context it
serves ``wss://``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call_result as r16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call_result as r201
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

HEARTBEAT_S = 30


def _now() -> str:
    return datetime.now(UTC).isoformat()


class _Recorder:
    messages: list[tuple[str, dict[str, Any]]]
    # Every frame received, in order: (message type, the action of a CALL, else the message id).
    frames: list[tuple[int, str]]

    def saw(self, raw: str) -> None:
        msg = json.loads(raw)
        self.frames.append((msg[0], msg[2] if msg[0] == 2 else msg[1]))

    def got(self, action: str, payload: dict[str, Any]) -> None:
        self.messages.append((action, payload))

    def of(self, action: str) -> list[dict[str, Any]]:
        return [p for a, p in self.messages if a == action]

    async def wait_for(
        self,
        action: str,
        pred: Callable[[dict[str, Any]], bool] = lambda _: True,
        timeout: float = 5,
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for p in self.of(action):
                    if pred(p):
                        return p
                await asyncio.sleep(0.01)


class Csms16(Cp16, _Recorder):
    def __init__(self, cp_id: str, conn: Any) -> None:
        super().__init__(cp_id, conn, response_timeout=5)
        self.messages = []
        self.frames = []
        self._tx = itertools.count(1)

    async def route_message(self, raw_msg: str) -> None:
        self.saw(raw_msg)
        await super().route_message(raw_msg)

    @on("BootNotification")
    def boot(self, **kw: Any) -> Any:
        self.got("BootNotification", kw)
        return r16.BootNotification(current_time=_now(), interval=HEARTBEAT_S, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self, **kw: Any) -> Any:
        self.got("Heartbeat", kw)
        return r16.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def status(self, **kw: Any) -> Any:
        self.got("StatusNotification", kw)
        return r16.StatusNotification()

    @on("Authorize")
    def authorize(self, **kw: Any) -> Any:
        self.got("Authorize", kw)
        return r16.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction")
    def start_tx(self, **kw: Any) -> Any:
        tx = next(self._tx)
        self.got("StartTransaction", {**kw, "transaction_id": tx})
        return r16.StartTransaction(transaction_id=tx, id_tag_info={"status": "Accepted"})

    @on("StopTransaction")
    def stop_tx(self, **kw: Any) -> Any:
        self.got("StopTransaction", kw)
        return r16.StopTransaction()

    @on("MeterValues")
    def meter_values(self, **kw: Any) -> Any:
        self.got("MeterValues", kw)
        return r16.MeterValues()


class Csms201(Cp201, _Recorder):
    def __init__(self, cp_id: str, conn: Any, needs_status: str = "Accepted") -> None:
        super().__init__(cp_id, conn, response_timeout=5)
        self.messages = []
        self.frames = []
        self.needs_status = needs_status

    async def route_message(self, raw_msg: str) -> None:
        self.saw(raw_msg)
        await super().route_message(raw_msg)

    @on("NotifyEVChargingNeeds")
    def needs(self, **kw: Any) -> Any:
        self.got("NotifyEVChargingNeeds", kw)
        return r201.NotifyEVChargingNeeds(status=self.needs_status)

    @on("ReportChargingProfiles")
    def report_profiles(self, **kw: Any) -> Any:
        self.got("ReportChargingProfiles", kw)
        return r201.ReportChargingProfiles()

    @on("BootNotification")
    def boot(self, **kw: Any) -> Any:
        self.got("BootNotification", kw)
        return r201.BootNotification(current_time=_now(), interval=HEARTBEAT_S, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self, **kw: Any) -> Any:
        self.got("Heartbeat", kw)
        return r201.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def status(self, **kw: Any) -> Any:
        self.got("StatusNotification", kw)
        return r201.StatusNotification()

    @on("Authorize")
    def authorize(self, **kw: Any) -> Any:
        self.got("Authorize", kw)
        return r201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def transaction_event(self, **kw: Any) -> Any:
        self.got("TransactionEvent", kw)
        return r201.TransactionEvent()

    @on("MeterValues")
    def meter_values(self, **kw: Any) -> Any:
        self.got("MeterValues", kw)
        return r201.MeterValues()


class Server:
    """The chargers connected so far, by id."""

    def __init__(self) -> None:
        self.cps: dict[str, Csms16 | Csms201] = {}
        self.headers: dict[str, str | None] = {}
        self.url = ""
        # Chargers whose connections are refused (HTTP 503) until removed from the set.
        self.refuse: set[str] = set()
        self.connections: dict[str, int] = {}
        # When (time.monotonic()) each charger's connections were accepted.
        self.connected_at: dict[str, list[float]] = {}
        # What NotifyEVChargingNeeds is answered.
        self.needs_status = "Accepted"

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        cp_id = request.path.rsplit("/", 1)[-1]
        if cp_id in self.refuse:
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "down\n")
        return None

    async def drop(self, cp_id: str) -> None:
        """Close the charger's connection from the server side."""
        await self.cps[cp_id]._connection.close()

    async def handler(self, ws: ServerConnection) -> None:
        cp_id = ws.request.path.rsplit("/", 1)[-1] if ws.request is not None else "?"
        if ws.request is not None:
            self.headers[cp_id] = ws.request.headers.get("Authorization")
        cp: Csms16 | Csms201 = (
            Csms16(cp_id, ws)
            if ws.subprotocol == "ocpp1.6"
            else Csms201(cp_id, ws, self.needs_status)
        )
        old = self.cps.get(cp_id)
        if old is not None:  # a reconnect: one record of everything the charger sent
            cp.messages = old.messages
            cp.frames = old.frames
            if isinstance(cp, Csms16) and isinstance(old, Csms16):
                cp._tx = old._tx
        self.connections[cp_id] = self.connections.get(cp_id, 0) + 1
        self.connected_at.setdefault(cp_id, []).append(time.monotonic())
        self.cps[cp_id] = cp
        with suppress(ConnectionClosed):
            await cp.start()

    async def charger(self, cp_id: str, timeout: float = 5) -> Any:
        async with asyncio.timeout(timeout):
            while cp_id not in self.cps:
                await asyncio.sleep(0.01)
        return self.cps[cp_id]


@asynccontextmanager
async def ocpp_server(tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """The server on a free loopback port (``wss://`` with ``tls``)."""
    server = Server()
    async with serve(
        server.handler,
        "127.0.0.1",
        0,
        process_request=server.process_request,
        subprotocols=["ocpp1.6", "ocpp2.0.1"],  # type: ignore[list-item]
        ssl=tls,
    ) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        server.url = f"{'ws' if tls is None else 'wss'}://127.0.0.1:{port}/ocpp"
        yield server
