"""Read models for the operator console: a site's metered power per step, its sessions with their
merged needs, chargers by page, a charger's recent messages and commands. Read-only; every query
selects one page or one aggregate so pages stay fast with a thousand chargers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Generic, TypeVar

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.db.models import (
    ChargePoint,
    Connector,
    MessageLog,
    MeterValue,
    NeedsInput,
    OutboundCall,
    Site,
    Transaction,
    as_utc,
)
from csms.domain.needs import Needs, resolve_needs
from csms.domain.site_config import site_config_from_row
from csms.services.queries import ChargePointView, TransactionView, _cp_view, _tx_view
from csms.services.site_state import needs_by_transaction

ENERGY = "Energy.Active.Import.Register"


def power_per_step(
    registers: Sequence[tuple[str, datetime, float]],
    start: datetime,
    step: timedelta,
    steps: int,
    now: datetime | None = None,
) -> list[float | None]:
    """Mean site power (kW) in each step from energy-register readings (meter id, time, Wh).
    Between two readings of a meter its energy is spread evenly over the interval; a step no
    interval touches is None (no data), not 0. The step under way at ``now`` is averaged over
    the part the readings cover, so the latest value is not diluted by time still to come."""
    by_meter: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for meter, when, wh in registers:
        by_meter[meter].append((when, wh))
    wh_in: list[float] = [0.0] * steps
    seen = [False] * steps
    covered: list[datetime | None] = [None] * steps  # the latest time each step has data for
    step_s = step.total_seconds()
    for readings in by_meter.values():
        readings.sort()
        for (t0, e0), (t1, e1) in pairwise(readings):
            span = (t1 - t0).total_seconds()
            if span <= 0 or e1 < e0:
                continue
            rate = (e1 - e0) / span
            t = t0
            while t < t1:
                k = int((t - start).total_seconds() // step_s)
                edge = min(t1, start + step * (k + 1))
                if 0 <= k < steps:
                    wh_in[k] += rate * (edge - t).total_seconds()
                    seen[k] = True
                    last = covered[k]
                    covered[k] = edge if last is None else max(last, edge)
                t = edge
    out: list[float | None] = []
    for k, (wh, ok) in enumerate(zip(wh_in, seen, strict=True)):
        span = step_s
        until = covered[k]
        if now is not None and until is not None and start + step * (k + 1) > now:
            # under way: the energy seen so far over the time it covers
            span = min(step_s, max((until - (start + step * k)).total_seconds(), 1.0))
        out.append(round(wh * 3600.0 / span / 1000.0, 3) if ok else None)
    return out


@dataclass(frozen=True)
class SessionRow:
    """A transaction with its merged needs and where each came from."""

    tx: TransactionView
    needs: Needs
    operator_departure: datetime | None
    operator_energy_wh: float | None

    @property
    def delivered_kwh(self) -> float:
        """Energy delivered so far."""
        return (self.tx.energy_wh or 0.0) / 1000.0

    @property
    def remaining_kwh(self) -> float:
        """Energy still needed (0 when met)."""
        return max(0.0, self.needs.energy_wh / 1000.0 - self.delivered_kwh)


@dataclass(frozen=True)
class CredentialRow:
    """How a charger authenticates (never the secret itself)."""

    id: str
    ocpp_version: str | None
    connected: bool
    password_set: bool
    self_registered: bool
    last_seen: datetime | None


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows and how many there are in all."""

    rows: list[T]
    total: int
    limit: int
    offset: int


class ConsoleQueries:
    """Queries behind the console pages (each in its own short database session)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def site_power(
        self, site_id: str, start: datetime, step: timedelta, steps: int, now: datetime
    ) -> list[float | None]:
        """Metered site power (kW) per step from ``start`` (the current step up to ``now``)."""
        end = start + step * steps
        async with self._sessions() as s:
            ids = select(ChargePoint.id).where(ChargePoint.site_id == site_id)
            conn = await s.connection()
            rows = (
                await conn.execute(
                    sa_select(
                        col(MeterValue.charge_point_id),
                        col(MeterValue.evse_id),
                        col(MeterValue.timestamp),
                        col(MeterValue.value),
                        col(MeterValue.unit),
                    ).where(
                        col(MeterValue.charge_point_id).in_(ids),
                        col(MeterValue.measurand) == ENERGY,
                        col(MeterValue.phase) == "",
                        col(MeterValue.timestamp) >= start - step,
                        col(MeterValue.timestamp) < end,
                    )
                )
            ).all()
        registers = []
        for cp, evse, ts, value, unit in rows:
            when = as_utc(ts)
            if when is not None:
                registers.append((f"{cp}/{evse}", when, value * 1000.0 if unit == "kWh" else value))
        return power_per_step(registers, start, step, steps, now)

    async def site_sessions(
        self, site_id: str, *, active: bool, limit: int = 50, offset: int = 0
    ) -> Page[SessionRow]:
        """A site's running (or ended, newest first) sessions with their merged needs."""
        async with self._sessions() as s:
            site = await s.get(Site, site_id)
            if site is None:
                return Page([], 0, limit, offset)
            cfg = site_config_from_row(site)
            ids = select(ChargePoint.id).where(ChargePoint.site_id == site_id)
            where = (
                col(Transaction.charge_point_id).in_(ids),
                col(Transaction.active).is_(active),
            )
            total = (
                await s.exec(select(func.count()).select_from(Transaction).where(*where))
            ).one()
            txs = (
                await s.exec(
                    select(Transaction)
                    .where(*where)
                    .order_by(col(Transaction.id).desc())
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
            tx_ids = [t.id for t in txs if t.id is not None]
            needs_rows = (
                await s.exec(select(NeedsInput).where(col(NeedsInput.transaction_id).in_(tx_ids)))
            ).all()
        by_tx = needs_by_transaction(needs_rows)
        out = []
        for tx in txs:
            assert tx.id is not None
            view = _tx_view(tx)
            sources = by_tx.get(tx.id, {})
            needs = resolve_needs(
                sources,
                started_at=view.started_at or datetime.now(UTC),
                default_dwell=timedelta(hours=cfg.default_dwell_hours),
                default_energy_wh=cfg.default_energy_kwh * 1000.0,
            )
            op = sources.get("operator")
            out.append(
                SessionRow(
                    view,
                    needs,
                    op.departure if op else None,
                    op.energy_wh if op else None,
                )
            )
        return Page(out, int(total), limit, offset)

    async def chargers(
        self, *, site_id: str | None = None, search: str = "", limit: int = 50, offset: int = 0
    ) -> Page[ChargePointView]:
        """Chargers by id, one page, with their connectors."""
        conds: list[Any] = []
        if site_id:
            conds.append(ChargePoint.site_id == site_id)
        if search:
            like = f"%{search}%"
            conds.append(or_(col(ChargePoint.id).ilike(like), col(ChargePoint.model).ilike(like)))
        async with self._sessions() as s:
            total = (
                await s.exec(select(func.count()).select_from(ChargePoint).where(*conds))
            ).one()
            cps = (
                await s.exec(
                    select(ChargePoint)
                    .where(*conds)
                    .order_by(col(ChargePoint.id))
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
            connectors = (
                await s.exec(
                    select(Connector).where(
                        col(Connector.charge_point_id).in_([cp.id for cp in cps])
                    )
                )
            ).all()
        by_cp: dict[str, list[Connector]] = defaultdict(list)
        for c in connectors:
            by_cp[c.charge_point_id].append(c)
        return Page([_cp_view(cp, by_cp[cp.id]) for cp in cps], int(total), limit, offset)

    async def credentials(
        self, site_id: str, *, limit: int = 50, offset: int = 0
    ) -> Page[CredentialRow]:
        """A site's chargers and whether each has a password, one page."""
        where = ChargePoint.site_id == site_id
        async with self._sessions() as s:
            total = (await s.exec(select(func.count()).select_from(ChargePoint).where(where))).one()
            cps = (
                await s.exec(
                    select(ChargePoint)
                    .where(where)
                    .order_by(col(ChargePoint.id))
                    .offset(offset)
                    .limit(limit)
                )
            ).all()
        rows = [
            CredentialRow(
                id=cp.id,
                ocpp_version=cp.ocpp_version,
                connected=cp.connected,
                password_set=cp.password_hash is not None,
                self_registered=cp.self_registered,
                last_seen=as_utc(cp.last_seen),
            )
            for cp in cps
        ]
        return Page(rows, int(total), limit, offset)

    async def registration(self, charge_point_id: str) -> tuple[str | None, str | None] | None:
        """(site id, OCPP version) of a registered charger; None when it is unknown."""
        async with self._sessions() as s:
            cp = await s.get(ChargePoint, charge_point_id)
        return None if cp is None else (cp.site_id, cp.ocpp_version)

    async def connection_counts(self, site_id: str) -> tuple[int, int]:
        """(connected, all) chargers of a site."""
        async with self._sessions() as s:
            rows = (
                await s.exec(
                    select(ChargePoint.connected, func.count())
                    .where(ChargePoint.site_id == site_id)
                    .group_by(col(ChargePoint.connected))
                )
            ).all()
        counts = {bool(k): int(n) for k, n in rows}
        return counts.get(True, 0), sum(counts.values())

    async def messages(self, charge_point_id: str, limit: int = 50) -> list[MessageLog]:
        """A charger's most recent OCPP frames, newest first."""
        async with self._sessions() as s:
            return list(
                (
                    await s.exec(
                        select(MessageLog)
                        .where(MessageLog.charge_point_id == charge_point_id)
                        .order_by(col(MessageLog.id).desc())
                        .limit(limit)
                    )
                ).all()
            )

    async def commands(self, charge_point_id: str, limit: int = 20) -> list[OutboundCall]:
        """Commands sent to a charger, newest first."""
        async with self._sessions() as s:
            return list(
                (
                    await s.exec(
                        select(OutboundCall)
                        .where(OutboundCall.charge_point_id == charge_point_id)
                        .order_by(col(OutboundCall.id).desc())
                        .limit(limit)
                    )
                ).all()
            )

    async def operator_departure(self, transaction_id: int) -> datetime | None:
        """The departure the driver or operator gave for a session, if any."""
        async with self._sessions() as s:
            row = (
                await s.exec(
                    select(NeedsInput).where(
                        NeedsInput.transaction_id == transaction_id,
                        NeedsInput.source == "operator",
                    )
                )
            ).first()
        return None if row is None else as_utc(row.departure)

    async def transaction(self, transaction_id: int) -> Transaction | None:
        """One transaction row (for commands that need its OCPP id)."""
        async with self._sessions() as s:
            return await s.get(Transaction, transaction_id)
