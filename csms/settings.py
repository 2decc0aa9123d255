"""Settings of the central system: one object, built at the entry point and passed down.

Every field can be set from the environment with the prefix ``CSMS_`` and ``__`` between section and
field, e.g. ``CSMS_OCPP__PORT=9100`` or ``CSMS_DATABASE__URL=postgresql://postgres@127.0.0.1/test``.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path
from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from csms.cluster.settings import ClusterSettings


class OcppSettings(BaseModel):
    """The OCPP-J websocket endpoint."""

    host: str = Field("0.0.0.0", description="address the OCPP endpoint listens on")
    port: int = Field(9000, ge=0, le=65535, description="OCPP websocket port (0: any free port)")
    allow_unknown_chargers: bool = Field(
        False,
        description="accept chargers that are not registered and register them on first connect "
        "(their password, if any, becomes theirs); off in production",
    )
    accept_unknown_id_tokens: bool = Field(
        False,
        description="treat id tokens that are not registered as Accepted (free charging); "
        "off: they are Invalid",
    )
    heartbeat_interval_s: int = Field(300, ge=10, description="interval given in BootNotification")
    response_timeout_s: float = Field(30.0, gt=0, description="timeout of every outbound call")
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate: enables wss:// (security profiles 2 and 3)"
    )
    tls_key_file: Path | None = Field(None, description="PEM private key for tls_cert_file")
    tls_client_ca_file: Path | None = Field(
        None,
        description="PEM CA bundle that signs the chargers' certificates: every charger must "
        "present one signed by it whose commonName is its id (security profile 3)",
    )
    security_profile: int | None = Field(
        None,
        ge=1,
        le=3,
        description="OCPP security profile the endpoint enforces: 1 ws:// + Basic auth, 2 wss:// "
        "+ Basic auth, 3 wss:// + client certificates; checked against the files given; unset: "
        "3 with tls_client_ca_file, 2 with tls_cert_file, else 1",
    )
    auth_max_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="failed Basic-auth logins of one charger id within auth_failure_window_s "
        "before it is locked out",
    )
    auth_max_failures_per_address: int = Field(
        100,
        ge=0,
        description="the same from one remote address (0: no limit); chargers behind one NAT "
        "or proxy share an address",
    )
    auth_failure_window_s: float = Field(
        300.0, gt=0, description="seconds over which failed charger logins are counted"
    )
    auth_lockout_s: float = Field(
        60.0, gt=0, description="first lockout (seconds); each one that follows doubles"
    )
    auth_max_lockout_s: float = Field(3600.0, gt=0, description="longest charger lockout")
    max_frame_bytes: int = Field(65536, ge=1024, description="largest websocket frame accepted")
    max_messages_per_s: float = Field(
        20.0,
        ge=0,
        allow_inf_nan=False,
        description="frames one charger connection may send per second of the central system's "
        "clock, on average (token bucket); more get a GenericError CALLERROR; 0: no limit",
    )
    message_burst: int = Field(
        100, ge=1, description="frames a connection may send at once before the rate applies"
    )
    trusted_proxies: str = Field(
        "",
        max_length=2000,
        description="comma-separated addresses of load balancers (e.g. nginx in cluster mode) "
        "whose X-Forwarded-For header names the charger's real address, for the login "
        "throttles and logs; empty: the peer address is the charger's",
    )

    @model_validator(mode="after")
    def _security_is_consistent(self) -> Self:
        problems = _security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _proxies_are_addresses(self) -> Self:
        for item in self.proxy_addresses:
            try:
                ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {item!r} is not an IP address (give addresses, "
                    "comma-separated, e.g. 127.0.0.1,::1)"
                ) from None
        return self

    @property
    def proxy_addresses(self) -> list[str]:
        """``trusted_proxies`` as a list."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def effective_security_profile(self) -> int:
        """The security profile in force: the one set, else the one the files imply."""
        if self.security_profile is not None:
            return self.security_profile
        if self.tls_client_ca_file is not None:
            return 3
        return 2 if self.tls_cert_file is not None else 1


def _security_problems(s: OcppSettings) -> list[str]:
    """Why the security settings do not fit together or the files cannot be used (all at once),
    so that the central system refuses to start with a clear message, never a traceback."""
    problems: list[str] = []
    if s.tls_key_file is not None and s.tls_cert_file is None:
        problems.append("tls_key_file is set without tls_cert_file")
    if s.tls_client_ca_file is not None and s.tls_cert_file is None:
        problems.append("tls_client_ca_file needs TLS: set tls_cert_file (and tls_key_file)")
    wanted = s.security_profile
    if wanted == 1 and s.tls_cert_file is not None:
        problems.append(
            "security_profile 1 is plain ws://, but tls_cert_file is set: choose 2 (or 3 with "
            "tls_client_ca_file) or unset tls_cert_file"
        )
    if wanted in (2, 3) and s.tls_cert_file is None:
        problems.append(f"security_profile {wanted} is wss://: set tls_cert_file and tls_key_file")
    if wanted == 2 and s.tls_client_ca_file is not None:
        problems.append(
            "tls_client_ca_file makes chargers present certificates, which is security_profile 3"
        )
    if wanted == 3 and s.tls_client_ca_file is None:
        problems.append(
            "security_profile 3 checks the chargers' certificates: set tls_client_ca_file"
        )
    if s.auth_max_lockout_s < s.auth_lockout_s:
        problems.append("auth_max_lockout_s must be at least auth_lockout_s")
    if s.tls_cert_file is None:
        return problems
    # Load the files now (a few reads), so that a bad one stops the start with its name.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(s.tls_cert_file, s.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        problems.append(
            f"cannot load the certificate {s.tls_cert_file} with key "
            f"{s.tls_key_file or '(in the same file)'}: {exc.strerror or exc}"
        )
    if s.tls_client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=s.tls_client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            problems.append(
                f"cannot load the client CA file {s.tls_client_ca_file}: {exc.strerror or exc}"
            )
    return problems


class DatabaseSettings(BaseModel):
    """Where state is kept."""

    # A database URL may carry a password: errors must not echo the input.
    model_config = ConfigDict(hide_input_in_errors=True)

    url: str = Field(
        "sqlite:///csms.db",
        description="sqlite:///path.db (default, a file in the working directory) or "
        "postgresql://user@host/db; the async driver is chosen for you",
    )
    message_log_retention_days: float = Field(
        30.0, ge=0, description="raw OCPP messages older than this are deleted (0: keep none)"
    )
    echo_sql: bool = Field(False, description="log every SQL statement (debugging)")
    pool_size: int = Field(
        10,
        ge=1,
        le=1000,
        description="PostgreSQL: connections each process keeps open (cluster: every worker has "
        "its own pool; workers x (pool_size + max_overflow) must stay under the server's "
        "max_connections, or use PgBouncer)",
    )
    max_overflow: int = Field(
        10, ge=0, le=1000, description="PostgreSQL: connections opened beyond pool_size under load"
    )


class WebSettings(BaseModel):
    """The HTTP API and the operator console."""

    host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port")
    auth_required: bool = Field(
        True,
        description="operators sign in to the console and API clients send a bearer token; off "
        "only on a trusted network (everyone is an operator then)",
    )
    session_secret: str | None = Field(
        None,
        min_length=32,
        description="key that signs console session cookies (32+ characters); unset: a random "
        "key per process, so sign-ins do not survive a restart",
    )
    cookie_secure: bool = Field(
        True,
        description="send the session cookie over HTTPS only; turn off only for plain-HTTP "
        "access on localhost",
    )
    session_max_age_s: int = Field(8 * 3600, ge=60, description="seconds a console sign-in lasts")
    initial_password_file: Path | None = Field(
        Path("csms-initial-admin-password"),
        description="where the first start with an empty database writes the random password of "
        "the console user admin (readable by the owner only; delete it after signing in); the "
        "password is never logged; unset: only handed to the program that embeds the app (the "
        "demo prints it)",
    )
    login_max_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="failed console sign-ins of one user name within login_failure_window_s "
        "before it is locked out",
    )
    login_max_failures_per_address: int = Field(
        20, ge=0, description="the same from one remote address (0: no limit)"
    )
    login_failure_window_s: float = Field(
        300.0, gt=0, description="seconds over which failed console sign-ins are counted"
    )
    login_lockout_s: float = Field(
        60.0, gt=0, description="first lockout (seconds); each one that follows doubles"
    )
    login_max_lockout_s: float = Field(3600.0, gt=0, description="longest console lockout")

    @model_validator(mode="after")
    def _lockouts_are_consistent(self) -> Self:
        if self.login_max_lockout_s < self.login_lockout_s:
            raise ValueError("login_max_lockout_s must be at least login_lockout_s")
        return self


class ClockSettings(BaseModel):
    """The central system's time: the wall clock, or a replay of a chosen period at some speed."""

    start: AwareDatetime | None = Field(
        None,
        description="replay: the time the clock reads when the system starts (ISO 8601 with "
        "offset); unset: wall-clock time",
    )
    speed: float = Field(
        1.0,
        gt=0,
        le=10_000,
        description="replay: clock seconds per real second (60: a day in 24 min)",
    )
    anchor: AwareDatetime | None = Field(
        None,
        description="replay: the wall-clock instant at which the clock reads start (default: when "
        "the system starts); give the simulator the same start, speed and anchor to stay in step",
    )


class SmartChargingSettings(BaseModel):
    """The planning loop (sites hold their own cap, prices, method and defaults)."""

    enabled: bool = Field(True, description="plan sites and send charging profiles")
    solve_time_limit_s: float = Field(
        5.0, gt=0, le=600, description="solver time limit per plan (the best plan found is used)"
    )
    coalesce_s: float = Field(
        0.3,
        ge=0,
        le=60,
        description="real seconds to wait after an event before planning, so a burst of events "
        "makes one plan",
    )
    call_timeout_s: float = Field(
        10.0, gt=0, description="real seconds to wait for a charger's answer to a profile"
    )
    retries: int = Field(
        2, ge=0, le=10, description="resends of a profile after a timeout or transport error"
    )
    retry_backoff_s: float = Field(
        0.5, ge=0, description="real seconds before the first resend (doubles each time)"
    )
    verify_composite: bool = Field(
        True,
        description="after a profile is accepted, ask the charger for its composite schedule "
        "(GetCompositeSchedule) to check it is applied",
    )
    compliance_tolerance: float = Field(
        0.1, ge=0, le=1, description="a charger may draw this share above its limit (meter noise)"
    )
    compliance_margin_w: float = Field(
        500.0, ge=0, description="... plus this many watts, before it counts as over its limit"
    )
    compliance_grace_s: float = Field(
        120.0,
        ge=0,
        description="clock seconds a charger has to obey a new, lower limit before over-limit "
        "readings count",
    )
    compliance_readings: int = Field(
        2, ge=1, description="over-limit readings in a row that make a charger non-compliant"
    )
    deviation_ratio: float = Field(
        0.7,
        gt=0,
        le=1,
        description="an EV drawing under this share of its limit for deviation_window_s is taken "
        "to be full or slower: planned at its real draw and the spare power given to others",
    )
    deviation_window_s: float = Field(
        600.0,
        gt=0,
        description="clock seconds of low draw before an EV is planned at its real draw",
    )
    deviation_hold_s: float = Field(
        1800.0,
        gt=0,
        description="clock seconds an EV stays planned at its real draw, then is probed",
    )
    audit_retention_days: float = Field(
        365.0, ge=0, description="plans and profile dispatches older than this are deleted"
    )


class Settings(BaseSettings):
    """All settings of the central system."""

    # URLs may carry passwords: errors say what is wrong, never echo the input.
    model_config = SettingsConfigDict(
        env_prefix="CSMS_", env_nested_delimiter="__", hide_input_in_errors=True
    )

    ocpp: OcppSettings = Field(default_factory=OcppSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    clock: ClockSettings = Field(default_factory=ClockSettings)
    smart_charging: SmartChargingSettings = Field(default_factory=SmartChargingSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
