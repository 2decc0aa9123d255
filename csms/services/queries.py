"""Read models for the API and console: charge points, connectors, transactions, meter values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.db.models import ChargePoint, Connector, MeterValue, Transaction, as_utc


@dataclass(frozen=True)
class ConnectorView:
    """A connector's live status."""

    evse_id: int
    connector_id: int
    status: str
    error_code: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class ChargePointView:
    """A charger as operators see it."""

    id: str
    site_id: str | None
    ocpp_version: str | None
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    connected: bool
    last_seen: datetime | None
    booted_at: datetime | None
    capabilities: dict[str, Any]
    max_power_w: float | None
    phases: int
    voltage_v: float
    connectors: list[ConnectorView] = field(default_factory=list)


@dataclass(frozen=True)
class MeterValueView:
    """One stored sample."""

    timestamp: datetime | None
    measurand: str
    value: float
    unit: str
    phase: str
    context: str


@dataclass(frozen=True)
class TransactionView:
    """A transaction with its energy so far (meter register now minus at start)."""

    id: int
    charge_point_id: str
    ocpp_id: str
    ocpp_version: str
    evse_id: int
    connector_id: int
    id_tag: str | None
    active: bool
    started_at: datetime | None
    stopped_at: datetime | None
    stop_reason: str | None
    meter_start_wh: float | None
    meter_stop_wh: float | None
    energy_wh: float | None
    meter_values: list[MeterValueView] | None = None


def _cp_view(cp: ChargePoint, connectors: list[Connector]) -> ChargePointView:
    return ChargePointView(
        id=cp.id,
        site_id=cp.site_id,
        ocpp_version=cp.ocpp_version,
        vendor=cp.vendor,
        model=cp.model,
        serial_number=cp.serial_number,
        firmware_version=cp.firmware_version,
        connected=cp.connected,
        last_seen=as_utc(cp.last_seen),
        booted_at=as_utc(cp.booted_at),
        capabilities=cp.capabilities or {},
        max_power_w=cp.max_power_w,
        phases=cp.phases,
        voltage_v=cp.voltage_v,
        connectors=[
            ConnectorView(c.evse_id, c.connector_id, c.status, c.error_code, as_utc(c.updated_at))
            for c in sorted(connectors, key=lambda c: (c.evse_id, c.connector_id))
        ],
    )


def _tx_view(tx: Transaction, values: list[MeterValue] | None = None) -> TransactionView:
    assert tx.id is not None
    end = tx.meter_stop_wh if tx.meter_stop_wh is not None else tx.last_energy_wh
    energy = None
    if end is not None and tx.meter_start_wh is not None:
        energy = max(end - tx.meter_start_wh, 0.0)
    return TransactionView(
        id=tx.id,
        charge_point_id=tx.charge_point_id,
        ocpp_id=tx.ocpp_id,
        ocpp_version=tx.ocpp_version,
        evse_id=tx.evse_id,
        connector_id=tx.connector_id,
        id_tag=tx.id_tag,
        active=tx.active,
        started_at=as_utc(tx.started_at),
        stopped_at=as_utc(tx.stopped_at),
        stop_reason=tx.stop_reason,
        meter_start_wh=tx.meter_start_wh,
        meter_stop_wh=tx.meter_stop_wh,
        energy_wh=energy,
        meter_values=None
        if values is None
        else [
            MeterValueView(as_utc(v.timestamp), v.measurand, v.value, v.unit, v.phase, v.context)
            for v in values
        ],
    )


class Queries:
    """Read-only queries (each in its own short database session)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def charge_points(self, *, limit: int = 100, offset: int = 0) -> list[ChargePointView]:
        """Chargers by id, with their connectors."""
        async with self._sessions() as s:
            cps = (
                await s.exec(
                    select(ChargePoint).order_by(col(ChargePoint.id)).offset(offset).limit(limit)
                )
            ).all()
            ids = [cp.id for cp in cps]
            connectors = (
                await s.exec(select(Connector).where(col(Connector.charge_point_id).in_(ids)))
            ).all()
        by_cp: dict[str, list[Connector]] = {}
        for c in connectors:
            by_cp.setdefault(c.charge_point_id, []).append(c)
        return [_cp_view(cp, by_cp.get(cp.id, [])) for cp in cps]

    async def charge_point(self, charge_point_id: str) -> ChargePointView | None:
        """One charger, or None."""
        async with self._sessions() as s:
            cp = await s.get(ChargePoint, charge_point_id)
            if cp is None:
                return None
            connectors = (
                await s.exec(select(Connector).where(Connector.charge_point_id == charge_point_id))
            ).all()
        return _cp_view(cp, list(connectors))

    async def transactions(
        self,
        *,
        active: bool | None = None,
        charge_point_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[TransactionView]:
        """Transactions, newest first."""
        stmt = select(Transaction)
        if active is not None:
            stmt = stmt.where(col(Transaction.active).is_(active))
        if charge_point_id is not None:
            stmt = stmt.where(Transaction.charge_point_id == charge_point_id)
        stmt = stmt.order_by(col(Transaction.id).desc()).offset(offset).limit(limit)
        async with self._sessions() as s:
            return [_tx_view(tx) for tx in (await s.exec(stmt)).all()]

    async def transaction(self, transaction_id: int) -> TransactionView | None:
        """One transaction with all its meter values in time order."""
        async with self._sessions() as s:
            tx = await s.get(Transaction, transaction_id)
            if tx is None:
                return None
            values = (
                await s.exec(
                    select(MeterValue)
                    .where(MeterValue.transaction_id == transaction_id)
                    .order_by(col(MeterValue.timestamp), col(MeterValue.id))
                )
            ).all()
        return _tx_view(tx, list(values))
