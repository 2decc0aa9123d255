"""The central system as a process: TLS (security profile 2) and graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets
from ocpp.v16 import call as c16

from tests.csms.client import Client16, auth_header, boot16, connect
from tests.csms.conftest import RunCsms


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found: cannot make a test certificate")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_security_profile_2_tls_with_basic_auth(run_csms: RunCsms, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    async with run_csms(tls_cert_file=cert, tls_key_file=key) as rt:
        await rt.stations.register_charge_point("TLS-1", password="a-long-enough-password")
        ctx = ssl.create_default_context(cafile=str(cert))
        url = f"wss://127.0.0.1:{rt.ocpp.port}/ocpp/TLS-1"
        ws = await websockets.connect(
            url,
            ssl=ctx,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=auth_header("TLS-1", "a-long-enough-password"),
            proxy=None,
        )
        client = Client16("TLS-1", ws, response_timeout=5)
        task = asyncio.create_task(client.start())
        try:
            assert (await boot16(client)).status == "Accepted"
        finally:
            task.cancel()
            await ws.close()
        # Plain ws:// is not served on a TLS port.
        with pytest.raises((OSError, websockets.exceptions.InvalidMessage, asyncio.TimeoutError)):
            async with connect(rt.ocpp.port, "TLS-1", "ocpp1.6", password="a-long-enough-password"):
                pass


def test_sigterm_closes_connections_and_flushes(tmp_path: Path) -> None:
    db = tmp_path / "csms.db"
    ocpp_port, http_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "csms",
            "--host",
            "127.0.0.1",
            "--ocpp-port",
            str(ocpp_port),
            "--http-port",
            str(http_port),
            "--database-url",
            f"sqlite:///{db}",
            "--allow-unknown-chargers",
            "--log-format",
            "json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{http_port}/api/health", timeout=1).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "csms did not start"
            time.sleep(0.2)

        async def charger() -> None:
            async with connect(ocpp_port, "SIG-1", "ocpp1.6") as cp:
                await boot16(cp)
                await cp.call(c16.Heartbeat(), suppress=False)
                proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(5)  # the server closes us; the client loop ends

        asyncio.run(charger())
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells it.
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read() if proc.stdout else ""
    with sqlite3.connect(db) as conn:
        actions = [
            r[0] for r in conn.execute("SELECT action FROM message_log WHERE direction='in'")
        ]
        connected = conn.execute("SELECT connected FROM charge_point WHERE id='SIG-1'").fetchone()[
            0
        ]
    assert "BootNotification" in actions
    assert "Heartbeat" in actions
    assert connected == 0, output
    assert "Application shutdown complete" in output
