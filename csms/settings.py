"""Settings of the central system: one object, built at the entry point and passed down.

Every field can be set from the environment with the prefix ``CSMS_`` and ``__`` between section and
field, e.g. ``CSMS_OCPP__PORT=9100`` or ``CSMS_DATABASE__URL=postgresql://postgres@127.0.0.1/test``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
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
    """The HTTP API (and, later, the console)."""

    host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port")


class Settings(BaseSettings):
    """All settings of the central system."""

    model_config = SettingsConfigDict(env_prefix="CSMS_", env_nested_delimiter="__")

    ocpp: OcppSettings = Field(default_factory=OcppSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
