"""Read what the planner needs about one site from the database: its settings, its chargers and
their connectors, and the running transactions with their needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.db.models import ChargePoint, Connector, NeedsInput, Site, Transaction, as_utc
from csms.domain.needs import NeedsValues
from csms.domain.profiles import ChargerCapabilities, ChargerLimits, capabilities_from_stored
from csms.domain.site_config import SiteConfig, site_config_from_row


@dataclass(frozen=True, slots=True)
class ChargerInfo:
    """A charger of the site, as configured and as it reported itself."""

    id: str
    ocpp_version: str
    capabilities: ChargerCapabilities
    limits: ChargerLimits  # max_power_w: per connector / EVSE
    evse_ids: tuple[int, ...]
    capabilities_read: bool  # False until the charger answered the capability read at boot


@dataclass(frozen=True, slots=True)
class TransactionInfo:
    """A running transaction and what its sources say it needs."""

    id: int
    ocpp_id: str
    charge_point_id: str
    evse_id: int
    started_at: datetime | None
    delivered_wh: float
    needs: dict[str, NeedsValues]


@dataclass(frozen=True, slots=True)
class LoadedSite:
    """One site, read in one database session."""

    config: SiteConfig
    chargers: tuple[ChargerInfo, ...]
    transactions: tuple[TransactionInfo, ...]


def _version(raw: str | None) -> str:
    return "ocpp2.0.1" if raw == "ocpp2.0.1" else "ocpp1.6"


def _evse_ids(version: str, connectors: list[Connector]) -> tuple[int, ...]:
    # 1.6: connector N (0 is the whole charger); 2.0.1: EVSE N. Unknown yet: one, numbered 1.
    ids = {c.evse_id for c in connectors if c.evse_id > 0}
    return tuple(sorted(ids)) or (1,)


def needs_by_transaction(rows: Iterable[NeedsInput]) -> dict[int, dict[str, NeedsValues]]:
    """Stored needs rows → {transaction id: {source: values}} (the input of ``resolve_needs``)."""
    out: dict[int, dict[str, NeedsValues]] = {}
    for n in rows:
        out.setdefault(n.transaction_id, {})[n.source] = NeedsValues(
            as_utc(n.departure), n.energy_wh, n.max_power_w, n.min_power_w
        )
    return out


async def site_ids(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """Every site's id."""
    async with sessions() as s:
        return list((await s.exec(select(Site.id))).all())


async def site_of(sessions: async_sessionmaker[AsyncSession], charge_point_id: str) -> str | None:
    """The site a charger belongs to (None: unassigned or unknown)."""
    async with sessions() as s:
        cp = await s.get(ChargePoint, charge_point_id)
        return None if cp is None else cp.site_id


def _charger_info(
    cp: ChargePoint, connectors: list[Connector], config: SiteConfig, default_max_w: float | None
) -> ChargerInfo:
    fallback_max = (
        default_max_w if default_max_w is not None else config.default_charger_max_kw * 1e3
    )
    version = _version(cp.ocpp_version)
    stored = cp.capabilities or {}
    return ChargerInfo(
        id=cp.id,
        ocpp_version=version,
        capabilities=capabilities_from_stored(stored, version),
        limits=ChargerLimits(
            phases=cp.phases if cp.phases in (1, 2, 3) else 3,
            voltage_v=cp.voltage_v if cp.voltage_v > 0 else 230.0,
            max_power_w=cp.max_power_w if cp.max_power_w is not None else fallback_max,
        ),
        evse_ids=_evse_ids(version, connectors),
        capabilities_read=version in stored,
    )


async def load_charger(
    sessions: async_sessionmaker[AsyncSession], site_id: str, charge_point_id: str
) -> tuple[SiteConfig, ChargerInfo] | None:
    """One charger of a site and the site's settings (None if either is unknown or the charger
    is not on that site)."""
    async with sessions() as s:
        site = await s.get(Site, site_id)
        cp = await s.get(ChargePoint, charge_point_id)
        if site is None or cp is None or cp.site_id != site_id:
            return None
        connectors = list(
            (await s.exec(select(Connector).where(Connector.charge_point_id == cp.id))).all()
        )
    config = site_config_from_row(site)
    return config, _charger_info(cp, connectors, config, None)


async def load_site(
    sessions: async_sessionmaker[AsyncSession], site_id: str, *, default_max_w: float | None = None
) -> LoadedSite | None:
    """Everything the planner reads about a site (None if there is no such site)."""
    async with sessions() as s:
        site = await s.get(Site, site_id)
        if site is None:
            return None
        config = site_config_from_row(site)
        cps = list((await s.exec(select(ChargePoint).where(ChargePoint.site_id == site_id))).all())
        ids = [cp.id for cp in cps]
        connectors = list(
            (await s.exec(select(Connector).where(col(Connector.charge_point_id).in_(ids)))).all()
        )
        txs = list(
            (
                await s.exec(
                    select(Transaction).where(
                        col(Transaction.charge_point_id).in_(ids),
                        col(Transaction.active).is_(True),
                    )
                )
            ).all()
        )
        tx_ids = [tx.id for tx in txs if tx.id is not None]
        needs_rows = list(
            (
                await s.exec(select(NeedsInput).where(col(NeedsInput.transaction_id).in_(tx_ids)))
            ).all()
        )
    by_charger: dict[str, list[Connector]] = {}
    for c in connectors:
        by_charger.setdefault(c.charge_point_id, []).append(c)
    chargers = [_charger_info(cp, by_charger.get(cp.id, []), config, default_max_w) for cp in cps]
    needs = needs_by_transaction(needs_rows)
    transactions = []
    for tx in txs:
        assert tx.id is not None
        delivered = 0.0
        if tx.last_energy_wh is not None and tx.meter_start_wh is not None:
            delivered = max(0.0, tx.last_energy_wh - tx.meter_start_wh)
        transactions.append(
            TransactionInfo(
                id=tx.id,
                ocpp_id=tx.ocpp_id,
                charge_point_id=tx.charge_point_id,
                evse_id=tx.evse_id or tx.connector_id or 1,
                started_at=as_utc(tx.started_at),
                delivered_wh=delivered,
                needs=needs.get(tx.id, {}),
            )
        )
    return LoadedSite(config, tuple(chargers), tuple(transactions))
