"""Tables. Both OCPP versions map to one model; every datetime is stored in UTC.

SQLite keeps no time zone, so values read back may be naive: :func:`csms.db.models.as_utc` makes
them aware again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint, true
from sqlmodel import Field, SQLModel


def now_utc() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Make a datetime read from the database aware (UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index),
    )


class Site(SQLModel, table=True):
    """A site behind one transformer, and how it is planned (see ``csms.domain.site_config``).

    Schedules are lists of ``{"from": "HH:MM", "kw"|"price": value}`` in the site's local time; each
    value holds from its time of day until the next entry's (the last one wraps past midnight).
    """

    id: str = Field(primary_key=True, max_length=64)
    name: str = ""
    capacity_kw: float = 0.0
    timezone: str = "UTC"
    capacity_schedule: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    price_schedule: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    safety_margin_kw: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    tx_default_kw: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    default_dwell_hours: float = Field(default=8.0, sa_column_kwargs={"server_default": "8"})
    default_energy_kwh: float = Field(default=20.0, sa_column_kwargs={"server_default": "20"})
    default_charger_max_kw: float = Field(default=22.0, sa_column_kwargs={"server_default": "22"})
    method: str = Field(default="milp", max_length=16, sa_column_kwargs={"server_default": "milp"})
    step_minutes: float = Field(default=15.0, sa_column_kwargs={"server_default": "15"})
    horizon_hours: float = Field(default=24.0, sa_column_kwargs={"server_default": "24"})
    smart_charging: bool = Field(default=True, sa_column_kwargs={"server_default": true()})


class ChargePoint(SQLModel, table=True):
    """A charger (1.6 charge point / 2.0.1 charging station) and what it told us."""

    __tablename__ = "charge_point"

    id: str = Field(primary_key=True, max_length=64)
    site_id: str | None = Field(default=None, foreign_key="site.id", index=True)
    password_hash: str | None = None
    # Came in through self-registration: without a password it is admitted only while
    # self-registration stays on (an operator registering it explicitly clears this).
    self_registered: bool = False
    ocpp_version: str | None = None
    vendor: str | None = None
    model: str | None = None
    serial_number: str | None = None
    firmware_version: str | None = None
    connected: bool = False
    last_seen: datetime | None = _ts()
    booted_at: datetime | None = _ts()
    capabilities: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    max_power_w: float | None = None
    phases: int = 3
    voltage_v: float = 230.0


class Connector(SQLModel, table=True):
    """Live status of a connector (1.6: connectorId; 2.0.1: evseId + connectorId)."""

    __table_args__ = (UniqueConstraint("charge_point_id", "evse_id", "connector_id"),)

    id: int | None = Field(default=None, primary_key=True)
    charge_point_id: str = Field(foreign_key="charge_point.id", index=True, max_length=64)
    evse_id: int = 0
    connector_id: int = 0
    status: str = "Unknown"
    error_code: str | None = None
    updated_at: datetime | None = _ts()


class IdToken(SQLModel, table=True):
    """An RFID card or other token that may start charging."""

    __tablename__ = "id_token"

    id_token: str = Field(primary_key=True, max_length=64)
    status: str = "Accepted"
    note: str = ""


class Transaction(SQLModel, table=True):
    """A charging transaction of either version.

    ``ocpp_id`` is the id on the wire: for 1.6 the integer we assign (this row's ``id``), for 2.0.1 the
    string the station assigns.
    """

    __table_args__ = (UniqueConstraint("charge_point_id", "ocpp_id"),)

    id: int | None = Field(default=None, primary_key=True)
    charge_point_id: str = Field(foreign_key="charge_point.id", index=True, max_length=64)
    ocpp_id: str = Field(max_length=64)
    ocpp_version: str
    evse_id: int = 0
    connector_id: int = 0
    id_tag: str | None = None
    started_at: datetime | None = _ts()
    stopped_at: datetime | None = _ts()
    meter_start_wh: float | None = None
    meter_stop_wh: float | None = None
    last_energy_wh: float | None = None
    stop_reason: str | None = None
    active: bool = Field(default=True, index=True)
    last_seq_no: int | None = None


class TransactionEventLog(SQLModel, table=True):
    """2.0.1 TransactionEvent sequence numbers seen, so a resent event is not processed twice."""

    __tablename__ = "transaction_event"
    __table_args__ = (UniqueConstraint("transaction_id", "seq_no"),)

    id: int | None = Field(default=None, primary_key=True)
    transaction_id: int = Field(foreign_key="transaction.id", index=True)
    seq_no: int
    event_type: str
    trigger_reason: str
    offline: bool = False
    timestamp: datetime | None = _ts()


class MeterValue(SQLModel, table=True):
    """One sampled value."""

    __tablename__ = "meter_value"
    __table_args__ = (
        Index("ix_meter_value_tx_time", "transaction_id", "timestamp"),
        UniqueConstraint(
            "charge_point_id",
            "evse_id",
            "timestamp",
            "measurand",
            "phase",
            "context",
            "location",
            name="uq_meter_value_sample",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    charge_point_id: str = Field(max_length=64)
    transaction_id: int | None = Field(default=None, foreign_key="transaction.id")
    evse_id: int = 0
    timestamp: datetime | None = _ts(nullable=False)
    measurand: str = "Energy.Active.Import.Register"
    phase: str = ""
    location: str = ""
    context: str = ""
    unit: str = ""
    value: float = 0.0


class NeedsInput(SQLModel, table=True):
    """What one source says a session needs: ``ev`` (ISO 15118 NotifyEVChargingNeeds) or
    ``operator`` (driver or operator, over the API / console). One row per source; the planner
    merges them field by field (``csms.domain.needs``)."""

    __tablename__ = "needs_input"
    __table_args__ = (UniqueConstraint("transaction_id", "source"),)

    id: int | None = Field(default=None, primary_key=True)
    transaction_id: int = Field(foreign_key="transaction.id", index=True)
    source: str = Field(max_length=16)
    departure: datetime | None = _ts()
    energy_wh: float | None = None
    max_power_w: float | None = None
    min_power_w: float | None = None
    updated_at: datetime | None = _ts()


class PlanAudit(SQLModel, table=True):
    """One plan of one site: what went in, what came out, how long it took, why it ran.
    Append-only (deleted only by retention)."""

    __tablename__ = "plan_audit"

    id: int | None = Field(default=None, primary_key=True)
    site_id: str = Field(index=True, max_length=64)
    created_at: datetime | None = _ts(index=True)
    trigger: str = Field(default="", max_length=255)
    method: str = Field(default="", max_length=16)
    status: str = Field(default="", max_length=32)
    fallback_reason: str | None = None
    objective: float | None = None
    sessions: int = 0
    capacity_kw: float | None = None
    reserved_kw: float | None = None
    kpis: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    timings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    inputs: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    plan: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    warnings: list[str] = Field(default_factory=list, sa_column=Column(JSON))


class ProfileAudit(SQLModel, table=True):
    """One charging profile sent (or deliberately not sent): payload, answer, latency, which plan.
    Append-only; ``verification`` is filled in once, when the check after acceptance is done."""

    __tablename__ = "profile_audit"

    id: int | None = Field(default=None, primary_key=True)
    plan_id: int | None = Field(default=None, index=True)
    site_id: str | None = Field(default=None, index=True, max_length=64)
    charge_point_id: str = Field(index=True, max_length=64)
    evse_id: int = 0
    transaction_id: int | None = Field(default=None, index=True)
    ocpp_transaction_id: str | None = Field(default=None, max_length=64)
    purpose: str = Field(default="TxProfile", max_length=32)
    phase: str = Field(default="", max_length=16)
    limit_w: float | None = None
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = Field(default="", max_length=32)
    answer: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    error: str | None = None
    latency_s: float = 0.0
    attempts: int = 0
    created_at: datetime | None = _ts(index=True)
    verification: str | None = None
    verified_at: datetime | None = _ts()


class MessageLog(SQLModel, table=True):
    """Every OCPP frame in and out, raw (retention set by database.message_log_retention_days)."""

    __tablename__ = "message_log"

    id: int | None = Field(default=None, primary_key=True)
    charge_point_id: str = Field(index=True, max_length=64)
    direction: str = Field(max_length=3)  # "in" or "out"
    message_type: int
    unique_id: str = Field(max_length=64)
    action: str | None = None
    payload: Any = Field(default=None, sa_column=Column(JSON))
    created_at: datetime | None = _ts(index=True)


class OutboundCall(SQLModel, table=True):
    """Every command sent to a charger, with its answer or error and latency."""

    __tablename__ = "outbound_call"

    id: int | None = Field(default=None, primary_key=True)
    charge_point_id: str = Field(index=True, max_length=64)
    action: str = Field(max_length=64)
    request: Any = Field(default=None, sa_column=Column(JSON))
    ok: bool = False
    status: str | None = None
    response: Any = Field(default=None, sa_column=Column(JSON))
    error: str | None = None
    latency_s: float = 0.0
    created_at: datetime | None = _ts(index=True)


class User(SQLModel, table=True):
    """A person who signs in to the console: a viewer looks, an operator also acts."""

    __tablename__ = "users"  # "user" is reserved in PostgreSQL

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    password_hash: str = Field(max_length=255)
    role: str = Field(default="viewer", max_length=16)
    disabled: bool = False
    created_at: datetime | None = _ts()
    last_login: datetime | None = _ts()


class ApiToken(SQLModel, table=True):
    """A bearer token for machine clients of the JSON API. Only its SHA-256 is stored: tokens are
    long random strings, so a fast hash is enough and lets a request find its row by hash."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    role: str = Field(default="viewer", max_length=16)
    created_at: datetime | None = _ts()
    revoked: bool = False
