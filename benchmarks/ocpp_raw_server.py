"""Reference server 3 of the OCPP load benchmark: the websocket transport alone.

``python -m benchmarks.ocpp_raw_server --port PORT`` answers every CALL at once with ``[3, id, {}]``
(a BootNotification with a valid Accepted reply), validating nothing and storing nothing: the
limit of the transport (websockets + JSON) on this machine. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

SUBPROTOCOLS = (Subprotocol("ocpp2.0.1"), Subprotocol("ocpp1.6"))
HEARTBEAT_INTERVAL_S = 300


def select_subprotocol(
    _conn: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """Our preference among what the client offered (as the central system does)."""
    for proto in SUBPROTOCOLS:
        if proto in offered:
            return proto
    return None


def boot_reply() -> dict[str, Any]:
    """An Accepted BootNotification reply (the same fields in 1.6 and 2.0.1)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"currentTime": now, "interval": HEARTBEAT_INTERVAL_S, "status": "Accepted"}


async def raw_handler(ws: ServerConnection) -> None:
    """Answer every CALL at once; ignore anything else."""
    try:
        async for raw in ws:
            try:
                msg = json.loads(raw)
                kind, unique_id, action = msg[0], msg[1], msg[2]
            except (ValueError, TypeError, IndexError, KeyError):
                continue
            if kind != 2:
                continue
            payload = boot_reply() if action == "BootNotification" else {}
            await ws.send(json.dumps([3, unique_id, payload]))
    except ConnectionClosed:
        pass


def server_args(prog: str, description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """--host and --port."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    return p.parse_args(argv)


async def serve_until_stopped(
    handler: Callable[[ServerConnection], Awaitable[None]], host: str, port: int
) -> None:
    """Serve OCPP-J (subprotocols ocpp2.0.1 and ocpp1.6) until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        handler,
        host,
        port,
        subprotocols=list(SUBPROTOCOLS),
        select_subprotocol=select_subprotocol,
    ):
        print(f"listening on {host}:{port}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = server_args("python -m benchmarks.ocpp_raw_server", __doc__.split("\n\n")[0], argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_until_stopped(raw_handler, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
