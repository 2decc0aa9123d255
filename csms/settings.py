"""Settings of the central system: one object, built at the entry point and passed down.

Every field can be set from the environment with the prefix ``CSMS_`` and ``__`` between section and
field, e.g. ``CSMS_OCPP__PORT=9100`` or ``CSMS_DATABASE__URL=postgresql://postgres@127.0.0.1/test``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    tls_cert_file: Path | None = Field(None, description="PEM certificate: enables wss:// (SP2)")
    tls_key_file: Path | None = Field(None, description="PEM private key for tls_cert_file")
    max_frame_bytes: int = Field(65536, ge=1024, description="largest websocket frame accepted")


class DatabaseSettings(BaseModel):
    """Where state is kept."""

    url: str = Field(
        "sqlite:///csms.db",
        description="sqlite:///path.db (default, a file in the working directory) or "
        "postgresql://user@host/db; the async driver is chosen for you",
    )
    message_log_retention_days: float = Field(
        30.0, ge=0, description="raw OCPP messages older than this are deleted (0: keep none)"
    )
    echo_sql: bool = Field(False, description="log every SQL statement (debugging)")


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

    model_config = SettingsConfigDict(env_prefix="CSMS_", env_nested_delimiter="__")

    ocpp: OcppSettings = Field(default_factory=OcppSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    clock: ClockSettings = Field(default_factory=ClockSettings)
    smart_charging: SmartChargingSettings = Field(default_factory=SmartChargingSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
