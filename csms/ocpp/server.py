"""The OCPP-J websocket endpoint: ``ws(s)://HOST:PORT/ocpp/{charge_point_id}``.

Handshake rules: the path names the charger; the subprotocol must be ``ocpp2.0.1`` or ``ocpp1.6``
(anything else is refused with HTTP 400 before the upgrade). Then the security profile in force
(``OcppSettings.effective_security_profile``), all before the upgrade:

- 1 (ws://) and 2 (wss://): HTTP Basic auth with the charger id as user name, checked against the
  stored hash (401 otherwise). Failed logins are throttled per charger id and per remote address
  (csms.domain.login_throttle): while locked out, attempts get 429 with Retry-After and the
  password is not even looked at.
- 3 (wss:// with client certificates): TLS only completes for a charger whose certificate the
  client CA signed; its subject's commonName must be the charger id (403 otherwise).

A second connection for the same id replaces the first, which is closed; no state lives in the
connection. Secrets stay out of the message log, the command log and websockets' debug lines
(csms.ocpp.redact).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Collection, Mapping
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote

from ocpp.v16.enums import Action as Action16
from ocpp.v201.enums import Action as Action201
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from csms.domain.clock import Clock, SystemClock
from csms.domain.login_throttle import (
    LoginGuard,
    address_key,
    retry_after_header,
)
from csms.ocpp.connection import LoggedConnection, MessageLogWriter
from csms.ocpp.context import ConnectionContext
from csms.ocpp.redact import RedactingLogger, RedactingSink
from csms.ocpp.v16 import CentralSystem16
from csms.ocpp.v201 import CentralSystem201
from csms.services.meter_batcher import MeterBatcher
from csms.services.stations import StationService
from csms.settings import OcppSettings

log = logging.getLogger(__name__)

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")  # our preference when a charger offers both
PATH_PREFIX = "/ocpp/"
MAX_ID_LENGTH = 64  # OCPP 2.0.1 identity is at most 48; 1.6 chargeBoxIdentity 20; leave room

ChargePointConnection = CentralSystem16 | CentralSystem201
KNOWN_ACTIONS = {
    "ocpp1.6": frozenset(a.value for a in Action16),
    "ocpp2.0.1": frozenset(a.value for a in Action201),
}


def charge_point_id_from_path(path: str) -> str | None:
    """The id in ``/ocpp/{id}`` (URL-decoded), or None if the path is not of that form."""
    path = path.split("?", 1)[0]
    if not path.startswith(PATH_PREFIX):
        return None
    cp_id = unquote(path[len(PATH_PREFIX) :].rstrip("/"))
    if not cp_id or "/" in cp_id or len(cp_id) > MAX_ID_LENGTH or not cp_id.isprintable():
        return None
    return cp_id


def offered_subprotocols(headers: Headers) -> list[str]:
    """Subprotocols the client offered, in its order."""
    out: list[str] = []
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


def basic_auth(headers: Headers, charge_point_id: str) -> str | None:
    """The password from an HTTP Basic header whose user is the charger id, else None."""
    value = headers.get("Authorization")
    if not value or not value.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or user != charge_point_id:
        return None
    return password


def certificate_common_names(peercert: Mapping[str, Any] | None) -> list[str]:
    """The commonName values of a certificate's subject, as ``ssl`` decodes it
    (``getpeercert()``: ``{"subject": ((("commonName", "CP-1"),), ...), ...}``)."""
    if not peercert:
        return []
    return [
        str(attribute[1])
        for rdn in peercert.get("subject", ())
        for attribute in rdn
        if len(attribute) == 2 and attribute[0] == "commonName"
    ]


def certificate_problem(peercert: Mapping[str, Any] | None, charge_point_id: str) -> str | None:
    """Why this (already verified) client certificate is not this charger's, or None.

    OCPP 2.0.1 part 2, A00.FR.405 (the 1.6 security whitepaper, edition 2, has the same rule for
    profile 3): the CSMS SHALL verify that the certificate belongs to this Charging Station by
    checking that the commonName RDN of its subject contains the station's unique serial number.
    Our charger id is that identity, so the subject must hold exactly one commonName, equal to the
    id in the URL: a certificate for another charger (or for several) does not get in.
    """
    names = certificate_common_names(peercert)
    if not names:
        return "no client certificate (or one without a commonName)"
    if names != [charge_point_id]:
        return f"client certificate is for commonName {', '.join(map(repr, names))}"
    return None


def login_guard(settings: OcppSettings, clock: Clock) -> LoginGuard:
    """The Basic-auth throttle the settings ask for."""
    return LoginGuard.from_limits(
        per_identity=settings.auth_max_failures,
        per_address=settings.auth_max_failures_per_address,
        window_s=settings.auth_failure_window_s,
        lockout_s=settings.auth_lockout_s,
        max_lockout_s=settings.auth_max_lockout_s,
        clock=clock,
    )


class ConnectionHooks(Protocol):
    """Told of every charger connection this process serves (cluster mode: presence in Redis,
    csms.cluster.presence.PresenceKeeper)."""

    async def connected(self, charge_point_id: str) -> None:
        """A charger's socket is served here from now on."""
        ...

    async def disconnected(self, charge_point_id: str) -> bool:
        """Its socket here closed; False when another process serves the charger now (then its
        state is that process's to record)."""
        ...


class OcppServer:
    """Accepts charger connections and keeps the registry of who is connected where."""

    def __init__(
        self,
        settings: OcppSettings,
        service: StationService,
        clock: Clock,
        guard: LoginGuard | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.clock = clock
        self.profile = settings.effective_security_profile
        # Wall-clock time, not ``clock``: an attacker guesses in real time, also while the system
        # replays a day at 60x.
        self.guard = guard or login_guard(settings, SystemClock())
        self.writer = MessageLogWriter(RedactingSink(service), clock)
        self.meters = MeterBatcher(service)
        self.connections: dict[str, ChargePointConnection] = {}
        self._sockets: dict[str, ServerConnection] = {}
        self._server: Server | None = None
        self.trusted = frozenset(settings.proxy_addresses)
        self.hooks: ConnectionHooks | None = None  # set before running, in cluster mode
        self._taken_over: set[ServerConnection] = set()

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None
        sock = next(iter(self._server.sockets))
        return int(sock.getsockname()[1])

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[OcppServer]:
        """Serve until the block exits; then close every connection and flush the message log."""
        ssl_context = self._ssl_context()
        async with asyncio.TaskGroup() as tg:
            writer_task = tg.create_task(self.writer.run())
            meters_task = tg.create_task(self.meters.run())
            async with serve(
                self._handle,
                self.settings.host,
                self.settings.port,
                subprotocols=list(SUBPROTOCOLS),  # type: ignore[arg-type]
                select_subprotocol=self._select_subprotocol,
                process_request=self._process_request,
                max_size=self.settings.max_frame_bytes,
                ssl=ssl_context,
                logger=RedactingLogger(logging.getLogger("websockets.server")),
            ) as server:
                self._server = server
                log.info(
                    "OCPP endpoint listening on port %d (security profile %d)",
                    self.port,
                    self.profile,
                )
                try:
                    yield self
                finally:
                    server.close()
                    await server.wait_closed()
            meters_task.cancel()
            writer_task.cancel()

    def _ssl_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if s.tls_cert_file is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security whitepaper: TLS 1.2 or higher
        ctx.load_cert_chain(s.tls_cert_file, s.tls_key_file)
        if self.profile == 3:
            assert s.tls_client_ca_file is not None  # OcppSettings checked it
            # Profile 3 (2.0.1 A00.FR.407): without a valid certificate whose path leads to
            # our CA, the connection is terminated — here, in the TLS handshake itself.
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=s.tls_client_ca_file)
        return ctx

    def _select_subprotocol(self, _conn: ServerConnection, offered: Any) -> Any:
        for proto in SUBPROTOCOLS:
            if proto in offered:
                return proto
        return None

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        cp_id = charge_point_id_from_path(request.path)
        if cp_id is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "use ws://host:port/ocpp/{id}\n")
        offered = offered_subprotocols(request.headers)
        if not any(p in SUBPROTOCOLS for p in offered):
            return connection.respond(
                HTTPStatus.BAD_REQUEST,
                f"unsupported subprotocol {offered or 'none'}: offer one of "
                f"{', '.join(SUBPROTOCOLS)}\n",
            )
        if self.profile == 3:
            return await self._check_certificate(connection, cp_id)
        return await self._check_password(connection, request, cp_id)

    async def _check_certificate(self, connection: ServerConnection, cp_id: str) -> Response | None:
        """Profile 3: the certificate TLS verified must be this charger's."""
        peercert = connection.transport.get_extra_info("peercert")
        problem = certificate_problem(peercert, cp_id)
        if problem is None and not await self.service.may_connect_with_certificate(cp_id):
            problem = "charger is not registered"
        if problem is None:
            return None
        log.warning(
            "refused charger: %s (from %s)",
            problem,
            _host(connection, self.trusted),
            extra={"charge_point": cp_id},
        )
        return connection.respond(HTTPStatus.FORBIDDEN, "certificate not accepted\n")

    async def _check_password(
        self, connection: ServerConnection, request: Request, cp_id: str
    ) -> Response | None:
        """Profiles 1 and 2: HTTP Basic auth, throttled."""
        address = address_key(_host(connection, self.trusted))
        wait = self.guard.retry_after(cp_id, address)
        if wait is not None:
            # Refused before the password is looked at: no scrypt for an attacker to make us do.
            log.debug(
                "refused charger: locked out after failed logins (from %s)",
                _host(connection, self.trusted),
                extra={"charge_point": cp_id},
            )
            return self._too_many(connection, wait)
        password = basic_auth(request.headers, cp_id)
        if await self.service.check_credentials(cp_id, password):
            if password is not None:
                self.guard.succeeded(cp_id)
            return None
        log.warning(
            "refused charger: unknown or wrong password (from %s)",
            _host(connection, self.trusted),
            extra={"charge_point": cp_id},
        )
        # Only a password that was tried counts: no credentials at all guesses nothing (and a
        # client may first try without, then answer the 401 challenge).
        lockout = self.guard.failed(cp_id, address) if password is not None else None
        if lockout is not None:
            log.warning(
                "charger logins locked out for %.0f s after repeated failures (from %s)",
                lockout,
                _host(connection, self.trusted),
                extra={"charge_point": cp_id},
            )
            return self._too_many(connection, lockout)
        response = connection.respond(HTTPStatus.UNAUTHORIZED, "authentication failed\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
        return response

    @staticmethod
    def _too_many(connection: ServerConnection, wait_s: float) -> Response:
        retry = retry_after_header(wait_s)
        response = connection.respond(
            HTTPStatus.TOO_MANY_REQUESTS, f"too many failed logins: try again in {retry} s\n"
        )
        response.headers["Retry-After"] = retry
        return response

    async def _handle(self, ws: ServerConnection) -> None:
        cp_id = charge_point_id_from_path(ws.request.path if ws.request else "") or ""
        version = ws.subprotocol or ""
        # Under profile 3 the certificate is the credential: a Basic password is not kept.
        password = (
            basic_auth(ws.request.headers, cp_id) if ws.request and self.profile != 3 else None
        )
        # Register the new socket before closing the old one, so that the old handler's cleanup
        # sees it is no longer current and does not mark the charger offline.
        previous = self._sockets.get(cp_id)
        self._sockets[cp_id] = ws
        if previous is not None:
            log.info("second connection replaces the first", extra={"charge_point": cp_id})
            # A charger reconnects because it thinks the old socket is dead: a closing handshake
            # on it would wait out its timeout (10 s) before the new one is served. Drop it.
            previous.transport.abort()
        ctx = ConnectionContext(
            service=self.service,
            meters=self.meters,
            clock=self.clock,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
        )
        conn = LoggedConnection(
            ws,
            cp_id,
            version,
            self.writer,
            self.clock,
            after_send=ctx.sent,
            known_actions=KNOWN_ACTIONS[version],
            max_messages_per_s=self.settings.max_messages_per_s,
            message_burst=self.settings.message_burst,
        )
        cp: ChargePointConnection = (
            CentralSystem16(cp_id, conn, ctx)
            if version == "ocpp1.6"
            else CentralSystem201(cp_id, conn, ctx)
        )
        cp._response_timeout = self.settings.response_timeout_s
        self.connections[cp_id] = cp
        try:
            if self.hooks is not None:
                # Claimed before the "connected" notice goes out: a leader on another worker that
                # reacts to it must find the charger's socket here.
                await self.hooks.connected(cp_id)
            await self.service.connected(cp_id, version, password)
            log.info("charger connected", extra={"charge_point": cp_id, "ocpp_version": version})
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._after_boot(cp))
                await cp.start()
        except* ConnectionClosed:
            pass
        except* Exception:  # a handler bug must not take the server down
            log.exception("connection handler failed", extra={"charge_point": cp_id})
        finally:
            if self._sockets.get(cp_id) is ws:
                del self._sockets[cp_id]
                del self.connections[cp_id]
                ours = ws not in self._taken_over
                if ours and self.hooks is not None:
                    ours = await self.hooks.disconnected(cp_id)
                if ours:
                    await self.service.disconnected(cp_id)
            self._taken_over.discard(ws)
            log.info("charger disconnected", extra={"charge_point": cp_id})

    def drop(self, charge_point_id: str) -> None:
        """Close a charger's socket here because another process serves it now (its newer
        connection reached another worker): nothing is recorded for it here."""
        ws = self._sockets.get(charge_point_id)
        if ws is None:
            return
        log.warning(
            "charger now served by another worker: closing its old socket here",
            extra={"charge_point": charge_point_id},
        )
        self._taken_over.add(ws)
        ws.transport.abort()

    async def _after_boot(self, cp: ChargePointConnection) -> None:
        """Once the charger has booted, read its smart-charging capabilities (own task: calls
        from inside an ``@on`` handler would deadlock the receive loop)."""
        await cp.ctx.booted.wait()
        try:
            caps = await cp.read_capabilities()
        except Exception as exc:  # noqa: BLE001 - a charger may not answer: record and go on
            log.warning("could not read capabilities: %s", exc, extra={"charge_point": cp.id})
            caps = {"error": f"{type(exc).__name__}: {exc}"}
        await self.service.save_capabilities(cp.id, caps)


def _host(connection: ServerConnection, trusted: Collection[str] = ()) -> str | None:
    """The remote host of a connection (None if the socket is already gone): the peer, or, when
    the peer is a trusted proxy, the last address in X-Forwarded-For that the proxy added."""
    peer = connection.remote_address
    host = str(peer[0]) if isinstance(peer, tuple) and peer else None
    if host is None or not trusted or _plain(host) not in trusted or connection.request is None:
        return host
    forwarded = connection.request.headers.get_all("X-Forwarded-For")
    hops = [h.strip() for line in forwarded for h in line.split(",") if h.strip()]
    # The rightmost hop not ours is the one our proxy saw; hops further left are the client's
    # say-so (RFC 7239 §7.4: only what trusted proxies added can be believed).
    for hop in reversed(hops):
        if _plain(hop) not in trusted:
            return hop
    return host


def _plain(host: str) -> str:
    """An IPv4-mapped IPv6 address as IPv4 (how a dual-stack socket reports a IPv4 peer)."""
    return host.removeprefix("::ffff:")
