"""wss://: the simulator checks the central system's certificate against a CA file (or the system's
trust store). The CA and a server certificate signed by it are made at test time with the
``openssl`` command; the server is the minimal ``ocpp`` test server behind TLS on a free port."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from charge_point_sim import ChargerSpec
from charge_point_sim.cli import main
from charge_point_sim.clock import ScaledClock
from charge_point_sim.errors import SimulatorError
from charge_point_sim.runner import ChargerConfig, ChargerRun, run_charger, tls_context
from charge_point_sim.station import Station
from tests.charge_point_sim.ocpp_server import ocpp_server

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and a certificate for 127.0.0.1 / localhost signed by it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found: cannot make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = d / "ca.pem", d / "ca.key"
    cert, key, csr, ext = d / "server.pem", d / "server.key", d / "server.csr", d / "ext.cnf"
    _openssl(
        "req", "-x509", *EC, "-days", "1", "-subj", "/CN=Simulator test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(ca_key), "-out", str(ca),
    )  # fmt: skip
    _openssl("req", "-new", *EC, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-out", str(cert), "-extfile", str(ext),
    )  # fmt: skip
    return Pki(ca, cert, key)


def _charger() -> tuple[ChargerRun, ScaledClock]:
    clock = ScaledClock(datetime.now(UTC), 600.0)
    spec = ChargerSpec.uniform(1, 11000.0)
    return ChargerRun(ChargerConfig("TLS1", "2.0.1", spec), Station(spec, clock.now())), clock


async def test_a_charger_boots_over_wss_with_the_ca_file(pki: Pki) -> None:
    run, clock = _charger()
    async with ocpp_server(pki.server_context()) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        tls = tls_context(server.url, str(pki.ca))
        task = asyncio.create_task(run_charger(run, server.url, clock, [], None, tls=tls))
        try:
            csms = await server.charger("TLS1")
            await csms.wait_for("BootNotification")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert run.ever_connected
    assert run.error is None


async def test_without_the_ca_file_the_system_trust_store_refuses_a_private_ca(pki: Pki) -> None:
    run, clock = _charger()
    async with ocpp_server(pki.server_context()) as server:
        # until = now: give up after the first failed attempt.
        async with asyncio.timeout(10):
            await run_charger(run, server.url, clock, [], clock.now(), tls=tls_context(server.url))
        assert not server.cps
    assert not run.ever_connected
    assert run.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in run.error


def test_tls_context_rules(tmp_path: Path) -> None:
    assert tls_context("ws://127.0.0.1:9000/ocpp") is None
    with pytest.raises(SimulatorError, match="wss://"):
        tls_context("ws://127.0.0.1:9000/ocpp", "ca.pem")
    with pytest.raises(SimulatorError, match="CA file"):
        tls_context("wss://127.0.0.1:9000/ocpp", str(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(SimulatorError, match="CA file"):
        tls_context("wss://127.0.0.1:9000/ocpp", str(tmp_path / "junk.pem"))
    ctx = tls_context("wss://example.org/ocpp")
    assert ctx is not None
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


async def test_the_cli_takes_the_ca_file_from_the_site_file(pki: Pki, tmp_path: Path) -> None:
    shutil.copy(pki.ca, tmp_path / "ca.pem")
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"ca_file": "ca.pem", "chargers": [{"id": "W", "count": 2}]}))
    report = tmp_path / "report.json"
    async with ocpp_server(pki.server_context()) as server:
        args = ["run", "--url", server.url, "--site", str(site), "--duration", "120"]
        code = await asyncio.to_thread(
            main, [*args, "--speed", "600", "--quiet", "--report", str(report)]
        )
        assert set(server.cps) == {"W1", "W2"}
    assert code == 0
    assert [c["connected"] for c in json.loads(report.read_text())["chargers"]] == [True, True]


def test_the_cli_refuses_a_ca_file_for_ws(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--url", "ws://127.0.0.1:9/ocpp", "--ca-file", "ca.pem", "--quiet"])
    assert code == 2
    assert "--ca-file needs a wss:// URL" in capsys.readouterr().err
