"""OCPP security profiles 1, 2 and 3 on real sockets (loopback), the Basic-auth throttle on the
handshake, the settings that must fit together, and secrets kept out of the stored logs.

The test PKI (two CAs, a server certificate, charger certificates) is made at test time with the
``openssl`` command, as in tests/charge_point_sim/test_tls.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import websockets
from pydantic import ValidationError
from sqlmodel import select
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidMessage, InvalidStatus

from csms.__main__ import main as csms_main
from csms.db.models import MessageLog, OutboundCall
from csms.domain.commands import RawCall
from csms.ocpp.redact import REDACTED, redact
from csms.ocpp.server import certificate_common_names, certificate_problem
from csms.settings import OcppSettings
from tests.csms.client import Client16, Client201, auth_header, boot16, boot201, connect
from tests.csms.conftest import RunCsms

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
PASSWORD = "a-long-enough-password"


@dataclass(frozen=True)
class Pki:
    """A CA with a server certificate and charger certificates, and another CA."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path

    def charger(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) of a charger certificate made by the fixture."""
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"

    def client_context(self, charger: str | None = None) -> ssl.SSLContext:
        """A charger's TLS context: trusts our CA; presents ``charger``'s certificate if given."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if charger is not None:
            ctx.load_cert_chain(*self.charger(charger))
        return ctx


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    _openssl(
        "req", "-x509", *EC, "-days", "1", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def _leaf(d: Path, name: str, subject: str, ca: tuple[Path, Path], ext: str) -> None:
    csr, extfile = d / f"{name}.csr", d / f"{name}.ext"
    extfile.write_text(
        f"{ext}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("req", "-new", *EC, "-subj", subject, "-keyout", str(d / f"{name}.key"),
             "-out", str(csr))  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "1", "-out", str(d / f"{name}.pem"), "-extfile", str(extfile),
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA "Test CSO CA" signs the server and chargers SP3-1, SP3-2 and a certificate with two
    commonNames; "Other CA" signs another SP3-1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found: cannot make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ca, other = _ca(d, "Test CSO CA"), _ca(d, "Other CA")
    server = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
    client = "extendedKeyUsage=clientAuth"
    _leaf(d, "server", "/CN=localhost", ca, server)
    _leaf(d, "SP3-1", "/O=Test CSO/CN=SP3-1", ca, client)
    _leaf(d, "SP3-2", "/O=Test CSO/CN=SP3-2", ca, client)
    _leaf(d, "two-names", "/CN=SP3-1/CN=SP3-2", ca, client)
    _leaf(d, "foreign", "/O=Test CSO/CN=SP3-1", other, client)
    return Pki(d, ca[0], d / "server.pem", d / "server.key")


@contextlib.asynccontextmanager
async def charger(
    url: str,
    cp_id: str,
    *,
    version: str = "ocpp1.6",
    tls: ssl.SSLContext | None = None,
    password: str | None = None,
) -> AsyncIterator[Any]:
    """An OCPP client connected to ``url``/``cp_id`` with its receive loop running."""
    ws: ClientConnection = await websockets.connect(
        f"{url}/ocpp/{cp_id}",
        ssl=tls,
        subprotocols=[version],  # type: ignore[list-item]
        additional_headers=auth_header(cp_id, password) if password is not None else {},
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


async def refused_with(url: str, cp_id: str, **kwargs: Any) -> InvalidStatus:
    """The HTTP refusal of a handshake that must not be accepted."""
    with pytest.raises(InvalidStatus) as info:
        async with charger(url, cp_id, **kwargs):
            pass
    return info.value


async def handshake_fails(url: str, cp_id: str, **kwargs: Any) -> BaseException:
    """A handshake that must fail below HTTP (TLS refused, or no HTTP answer at all)."""
    # TLS 1.3: the client's side of the handshake completes, then the server drops the
    # connection before any HTTP answer (InvalidMessage); TLS 1.2: ssl.SSLError, an OSError. An
    # HTTP answer (InvalidStatus) would mean TLS let the charger through to process_request.
    with pytest.raises((InvalidMessage, OSError)) as info:
        async with asyncio.timeout(10), charger(url, cp_id, **kwargs):
            pass
    return info.value


# --- profile 1 -------------------------------------------------------------------------------


async def test_profile_1_basic_auth_over_ws(run_csms: RunCsms) -> None:
    async with run_csms(security_profile=1) as rt:
        await rt.stations.register_charge_point("SP1-1", password=PASSWORD)
        url = f"ws://127.0.0.1:{rt.ocpp.port}"
        async with charger(url, "SP1-1", password=PASSWORD) as cp:
            assert (await boot16(cp)).status == "Accepted"
        for password in ("wrong-password", None):
            refusal = await refused_with(url, "SP1-1", password=password)
            assert refusal.response.status_code == 401
            assert refusal.response.headers["WWW-Authenticate"].startswith("Basic")
        # The right password for another charger id is no good either.
        assert (
            await refused_with(url, "NOT-REGISTERED", password=PASSWORD)
        ).response.status_code == 401


# --- profile 2 -------------------------------------------------------------------------------


async def test_profile_2_tls_with_basic_auth(run_csms: RunCsms, pki: Pki) -> None:
    async with run_csms(tls_cert_file=pki.server_cert, tls_key_file=pki.server_key) as rt:
        assert rt.ocpp.profile == 2  # implied by the certificate
        await rt.stations.register_charge_point("SP2-1", password=PASSWORD)
        url = f"wss://127.0.0.1:{rt.ocpp.port}"
        async with charger(
            url, "SP2-1", version="ocpp2.0.1", tls=pki.client_context(), password=PASSWORD
        ) as cp:
            assert (await boot201(cp)).status == "Accepted"
        refusal = await refused_with(url, "SP2-1", tls=pki.client_context(), password="wrong")
        assert refusal.response.status_code == 401
        # Plain ws:// is not served on a TLS port, and the password never crosses in clear.
        await handshake_fails(f"ws://127.0.0.1:{rt.ocpp.port}", "SP2-1", password=PASSWORD)


# --- profile 3 -------------------------------------------------------------------------------


async def test_profile_3_client_certificates(
    run_csms: RunCsms, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    async with run_csms(
        security_profile=3,
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca,
    ) as rt:
        await rt.stations.register_charge_point("SP3-1", password=PASSWORD)
        await rt.stations.register_charge_point("SP3-2")
        url = f"wss://127.0.0.1:{rt.ocpp.port}"
        # The right certificate is enough: no Basic auth under profile 3.
        async with charger(url, "SP3-1", tls=pki.client_context("SP3-1")) as cp:
            assert (await boot16(cp)).status == "Accepted"
        async with charger(
            url, "SP3-2", version="ocpp2.0.1", tls=pki.client_context("SP3-2")
        ) as cp:
            assert (await boot201(cp)).status == "Accepted"

        # Another charger's certificate, even with this charger's password: 403, logged.
        caplog.clear()
        refusal = await refused_with(
            url, "SP3-1", tls=pki.client_context("SP3-2"), password=PASSWORD
        )
        assert refusal.response.status_code == 403
        refused = [r for r in caplog.records if r.getMessage().startswith("refused charger")]
        assert [getattr(r, "charge_point", None) for r in refused] == ["SP3-1"]
        assert "'SP3-2'" in refused[0].getMessage()
        # A certificate naming two chargers is nobody's.
        refusal = await refused_with(url, "SP3-1", tls=pki.client_context("two-names"))
        assert refusal.response.status_code == 403

        # No certificate, a certificate from another CA, or plain ws://: TLS itself refuses.
        await handshake_fails(url, "SP3-1", tls=pki.client_context())
        foreign = ssl.create_default_context(cafile=str(pki.ca))
        foreign.load_cert_chain(*pki.charger("foreign"))
        await handshake_fails(url, "SP3-1", tls=foreign)
        await handshake_fails(f"ws://127.0.0.1:{rt.ocpp.port}", "SP3-1", password=PASSWORD)

        # A certificate of ours for a charger that is not registered: 403 (self-registration off).
        await rt.stations.register_charge_point("SP3-2")  # still fine
        async with rt.sessions.begin() as s:
            from csms.db.models import ChargePoint

            row = await s.get(ChargePoint, "SP3-2")
            assert row is not None
            await s.delete(row)
        refusal = await refused_with(url, "SP3-2", tls=pki.client_context("SP3-2"))
        assert refusal.response.status_code == 403
    assert rt.ocpp.profile == 3


def test_the_certificate_must_name_exactly_this_charger() -> None:
    subject = ((("organizationName", "Test CSO"),), (("commonName", "CP-1"),))
    assert certificate_common_names({"subject": subject}) == ["CP-1"]
    assert certificate_problem({"subject": subject}, "CP-1") is None
    assert certificate_problem({"subject": subject}, "cp-1") is not None  # exact, as the URL
    assert certificate_problem({"subject": subject}, "CP-10") is not None
    two = ((("commonName", "CP-1"),), (("commonName", "CP-2"),))
    assert certificate_problem({"subject": two}, "CP-1") is not None
    assert certificate_problem({}, "CP-1") is not None
    assert certificate_problem(None, "CP-1") is not None
    assert certificate_problem({"subject": ((("organizationName", "CP-1"),),)}, "CP-1") is not None


# --- settings: the profiles and the files must fit together -----------------------------------


def test_settings_that_do_not_fit_together_are_refused_with_every_reason(pki: Pki) -> None:
    cert, key, ca = pki.server_cert, pki.server_key, pki.ca
    cases: list[tuple[dict[str, Any], list[str]]] = [
        (
            {"security_profile": 1, "tls_cert_file": cert, "tls_key_file": key},
            ["profile 1 is plain"],
        ),
        ({"security_profile": 2}, ["security_profile 2 is wss://"]),
        (
            {
                "security_profile": 2,
                "tls_cert_file": cert,
                "tls_key_file": key,
                "tls_client_ca_file": ca,
            },
            ["which is security_profile 3"],
        ),
        (
            {"security_profile": 3},
            ["security_profile 3 is wss://", "set tls_client_ca_file"],
        ),
        ({"tls_client_ca_file": ca}, ["tls_client_ca_file needs TLS"]),
        ({"tls_key_file": key}, ["tls_key_file is set without tls_cert_file"]),
        (
            {"tls_cert_file": pki.dir / "missing.pem"},
            ["cannot load the certificate", "No such file"],
        ),
        (
            {"tls_cert_file": cert, "tls_key_file": pki.charger("SP3-1")[1]},
            ["cannot load the certificate"],
        ),
        (
            {"tls_cert_file": cert, "tls_key_file": key, "tls_client_ca_file": key},
            ["client CA file"],
        ),
        (
            {"auth_lockout_s": 100, "auth_max_lockout_s": 10},
            ["auth_max_lockout_s must be at least"],
        ),
        ({"security_profile": 4}, ["less than or equal to 3"]),
    ]
    for fields, reasons in cases:
        with pytest.raises(ValidationError) as info:
            OcppSettings(**fields)
        for reason in reasons:
            assert reason in str(info.value), (fields, str(info.value))
    assert OcppSettings().effective_security_profile == 1
    assert OcppSettings(tls_cert_file=cert, tls_key_file=key).effective_security_profile == 2
    both = OcppSettings(tls_cert_file=cert, tls_key_file=key, tls_client_ca_file=ca)
    assert both.effective_security_profile == 3


def test_the_entry_point_says_what_is_wrong_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("CSMS_OCPP__SECURITY_PROFILE", "3")
    monkeypatch.setenv("CSMS_OCPP__TLS_CERT_FILE", str(tmp_path / "nowhere.pem"))
    code = csms_main(["--database-url", f"sqlite:///{tmp_path / 'x.db'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ")
    assert "security_profile 3 checks the chargers' certificates: set tls_client_ca_file" in err
    assert "nowhere.pem" in err
    assert "Traceback" not in err


# --- the Basic-auth throttle on the handshake ------------------------------------------------


async def test_repeated_wrong_passwords_lock_the_charger_out_without_checking_passwords(
    run_csms: RunCsms, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with run_csms(auth_max_failures=3, auth_lockout_s=30, auth_max_lockout_s=60) as rt:
        await rt.stations.register_charge_point("BF-1", password=PASSWORD)
        await rt.stations.register_charge_point("BF-2", password=PASSWORD)
        checks: list[str] = []
        real_check = rt.stations.check_credentials

        async def counting(cp_id: str, password: str | None) -> bool:
            checks.append(cp_id)
            return await real_check(cp_id, password)

        monkeypatch.setattr(rt.stations, "check_credentials", counting)
        url = f"ws://127.0.0.1:{rt.ocpp.port}"
        statuses = [
            (await refused_with(url, "BF-1", password=f"guess-{i}")).response.status_code
            for i in range(3)
        ]
        assert statuses == [401, 401, 429]  # the third failure starts the lockout
        # Locked out: even the right password is refused, and no password is checked.
        refusal = await refused_with(url, "BF-1", password=PASSWORD)
        assert refusal.response.status_code == 429
        assert 29 <= int(refusal.response.headers["Retry-After"]) <= 30
        assert checks == ["BF-1"] * 3
        # Another charger from the same address is not affected (the per-address limit is 100).
        async with connect(rt.ocpp.port, "BF-2", "ocpp1.6", password=PASSWORD) as cp:
            assert (await boot16(cp)).status == "Accepted"
        # No credentials at all guess nothing and do not count.
        assert (await refused_with(url, "BF-2")).response.status_code == 401
        assert rt.ocpp.guard.by_identity.retry_after("BF-2") is None


# --- secrets stay out of the stored message log and command log ------------------------------


def test_redact_replaces_both_versions_password_settings_and_nothing_else() -> None:
    change = {"key": "AuthorizationKey", "value": "0001020304050607FFFF"}
    assert redact(change) == {"key": "AuthorizationKey", "value": REDACTED}
    assert change["value"] == "0001020304050607FFFF"  # a copy: the caller's payload is untouched
    config = {
        "configurationKey": [
            {"key": "AuthorizationKey", "readonly": False, "value": "s3cret"},
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        ]
    }
    assert redact(config)["configurationKey"][0]["value"] == REDACTED
    assert redact(config)["configurationKey"][1]["value"] == "300"
    set_vars = {
        "setVariableData": [
            {
                "attributeValue": "s3cret-password",
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
            },
            {
                "attributeValue": "60",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            },
        ]
    }
    out = redact(set_vars)["setVariableData"]
    assert [d["attributeValue"] for d in out] == [REDACTED, "60"]
    report = {
        "reportData": [
            {
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "variableAttribute": [{"type": "Actual", "value": "s3cret"}, {"type": "Target"}],
            }
        ]
    }
    assert redact(report)["reportData"][0]["variableAttribute"] == [
        {"type": "Actual", "value": REDACTED},
        {"type": "Target"},
    ]
    assert redact({"raw": '[2,"1","ChangeConfiguration",{"key":"AuthorizationKey"'})["raw"] != (
        '[2,"1","ChangeConfiguration",{"key":"AuthorizationKey"'
    )
    meter = {"connectorId": 1, "meterValue": [{"sampledValue": [{"value": "12"}]}]}
    assert redact(meter) == meter
    # Other shapes under the same names pass unchanged (GetConfiguration's request has a list).
    odd = {"key": ["AuthorizationKey", "HeartbeatInterval"], "variable": {"name": ["x"]}}
    assert redact(odd) == odd
    assert redact({"raw": "not json"}) == {"raw": "not json"}


async def test_passwords_the_csms_sends_are_redacted_in_the_stored_logs(
    run_csms: RunCsms, caplog: pytest.LogCaptureFixture
) -> None:
    secret_16, secret_201 = "new-16-secret-0123456789", "new-201-secret-0123456789"
    async with run_csms(allow_unknown_chargers=True) as rt:
        async with (
            connect(rt.ocpp.port, "RD-16", "ocpp1.6") as cp16,
            connect(rt.ocpp.port, "RD-201", "ocpp2.0.1") as cp201,
        ):
            await boot16(cp16)
            await boot201(cp201)
            await rt.gateway.send(
                "RD-16",
                RawCall("ChangeConfiguration", {"key": "AuthorizationKey", "value": secret_16}),
            )
            await rt.gateway.send(
                "RD-201",
                RawCall(
                    "SetVariables",
                    {
                        "setVariableData": [
                            {
                                "attributeValue": secret_201,
                                "component": {"name": "SecurityCtrlr"},
                                "variable": {"name": "BasicAuthPassword"},
                            }
                        ]
                    },
                ),
            )
        await rt.ocpp.writer.flush()
        async with rt.sessions() as s:
            frames = (await s.exec(select(MessageLog))).all()
            calls = (await s.exec(select(OutboundCall))).all()
    stored = json.dumps([f.payload for f in frames] + [[c.request, c.response] for c in calls])
    actions = {f.action for f in frames}
    assert {"ChangeConfiguration", "SetVariables"} <= actions
    assert {c.action for c in calls} >= {"ChangeConfiguration", "SetVariables"}
    assert secret_16 not in stored
    assert secret_201 not in stored
    assert stored.count(REDACTED) >= 4  # each in the message log and in the command log
    # Every frame was written (redaction must never cost a frame).
    # (The test chargers' own ocpp package logs that they have no handler: not ours.)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name != "ocpp"]
    assert "GetConfiguration" in actions
