"""Tables. Both OCPP versions map to one model; every datetime is stored in UTC.

SQLite keeps no time zone, so values read back may be naive: :func:`csms.db.models.as_utc` makes
them aware again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint
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
    """A site behind one transformer."""

    id: str = Field(primary_key=True, max_length=64)
    name: str = ""
    capacity_kw: float = 0.0
    timezone: str = "UTC"


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


class SessionNeeds(SQLModel, table=True):
    """What a session needs (departure, energy) and where that came from."""

    __tablename__ = "session_needs"

    transaction_id: int = Field(foreign_key="transaction.id", primary_key=True)
    departure: datetime | None = _ts()
    energy_wh: float | None = None
    max_power_w: float | None = None
    min_power_w: float | None = None
    source: str = "site_default"
    updated_at: datetime | None = _ts()


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
