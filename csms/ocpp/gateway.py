"""The single-process gateway: commands go to the connection this process holds."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from decimal import Decimal
from typing import Any, Protocol

from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from websockets.exceptions import ConnectionClosed

from csms.domain.commands import Command, CommandResult
from csms.domain.leadership import Fence
from csms.ocpp.commands import CommandMappingError, to_call_16, to_call_201
from csms.ocpp.server import OcppServer

log = logging.getLogger(__name__)


class CommandRecorder(Protocol):
    """Where outbound calls and their results are recorded (the station service)."""

    async def record_command(
        self, charge_point_id: str, action: str, request: dict[str, Any], result: CommandResult
    ) -> None:
        """Append one outbound call."""
        ...


class OcppGateway:
    """Sends domain commands as OCPP calls (one at a time per charger; the ocpp package queues)."""

    def __init__(self, server: OcppServer, recorder: CommandRecorder) -> None:
        self._server = server
        self._recorder = recorder

    def is_connected(self, charge_point_id: str) -> bool:
        """Is the charger connected to this process?"""
        return charge_point_id in self._server.connections

    async def send(
        self, charge_point_id: str, command: Command, *, fence: Fence | None = None
    ) -> CommandResult:
        """Send, wait for the answer or the timeout, record, return (never raises for the charger's
        errors: they come back in the result). ``fence`` is not checked here: in a single process
        nobody else dispatches, and in a cluster ``ClusterGateway`` checks it before this call."""
        cp = self._server.connections.get(charge_point_id)
        action: str = type(command).__name__
        payload: dict[str, Any] = {}
        if cp is None:
            result = CommandResult(ok=False, error="charger is not connected")
        else:
            version = "ocpp1.6" if cp._ocpp_version == "1.6" else "ocpp2.0.1"
            try:
                action, payload = (
                    to_call_16(command) if version == "ocpp1.6" else to_call_201(command)
                )
                result = await self._call(cp, version, action, payload)
            except CommandMappingError as exc:
                result = CommandResult(ok=False, error=str(exc))
        log.info(
            "%s → %s",
            action,
            result.status or result.error,
            extra={"charge_point": charge_point_id},
        )
        await self._recorder.record_command(charge_point_id, action, payload, result)
        return result

    async def _answer_or_close(self, cp: Any, request: Any) -> Any:
        """The answer to ``request``, or ConnectionClosed as soon as the socket closes: the ocpp
        package would otherwise wait out its whole response timeout for an answer that cannot
        come, holding up whoever waits for it (a whole site's dispatch)."""
        ws = cp._connection._ws
        call = asyncio.ensure_future(cp.call(request, suppress=False))
        closed = asyncio.ensure_future(ws.wait_closed())
        try:
            await asyncio.wait({call, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if not call.done():
            call.cancel()
            raise ConnectionClosed(None, None)
        return call.result()

    async def _call(
        self, cp: Any, version: str, action: str, payload: dict[str, Any]
    ) -> CommandResult:
        module = call16 if version == "ocpp1.6" else call201
        cls = getattr(module, action, None)
        if cls is None:
            return CommandResult(ok=False, error=f"{action} does not exist in {version}")
        try:
            request = cls(**camel_to_snake_case(payload))
        except TypeError as exc:
            return CommandResult(ok=False, error=f"bad {action} payload: {exc}")
        t0 = time.perf_counter()
        try:
            response = await self._answer_or_close(cp, request)
        except OCPPError as exc:
            return CommandResult(
                ok=False,
                error=f"{exc.code}: {exc.description}",
                latency_s=time.perf_counter() - t0,
            )
        except ConnectionClosed:
            return CommandResult(
                ok=False,
                error="connection lost before the answer",
                latency_s=time.perf_counter() - t0,
            )
        except TimeoutError:
            return CommandResult(
                ok=False,
                error=f"no answer within {cp._response_timeout} s",
                latency_s=time.perf_counter() - t0,
            )
        answer = _plain(
            snake_to_camel_case(
                {k: v for k, v in dataclasses.asdict(response).items() if v is not None}
            )
        )
        status = answer.get("status")
        return CommandResult(
            ok=True,
            status=str(status) if status is not None else None,
            payload=answer,
            latency_s=time.perf_counter() - t0,
        )


def _plain(value: Any) -> Any:
    """JSON-ready: the ocpp package parses decimals as ``Decimal`` (1.6 limits); store floats."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
