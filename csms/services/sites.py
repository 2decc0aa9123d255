"""Operator-side changes: site settings (cap and price schedules, method, defaults) and a session's
needs typed in by the driver or operator. Every change is validated first and tells the planning
loop, which re-plans the site."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.db.models import ChargePoint, NeedsInput, Site, Transaction
from csms.domain.clock import Clock
from csms.domain.site_config import (
    SiteConfig,
    SiteConfigError,
    parse_schedule,
    schedule_to_json,
    site_config_from_row,
)
from csms.services.notifications import Notice, Notifier

SITE_FIELDS = (
    "name",
    "timezone",
    "capacity_kw",
    "capacity_schedule",
    "price_schedule",
    "safety_margin_kw",
    "tx_default_kw",
    "default_dwell_hours",
    "default_energy_kwh",
    "default_charger_max_kw",
    "method",
    "step_minutes",
    "horizon_hours",
    "smart_charging",
)


class NotFoundError(LookupError):
    """The site, charger or transaction does not exist; the message says which."""


class NeedsError(ValueError):
    """Needs that cannot apply (e.g. to a finished transaction); the message says why."""


def site_to_dict(site: Site) -> dict[str, Any]:
    """A site's settings as stored (JSON-ready)."""
    return {"id": site.id, **{f: getattr(site, f) for f in SITE_FIELDS}}


def _validated(site: Site) -> SiteConfig:
    return site_config_from_row(site)


class SiteService:
    """Changes to sites and needs."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, notifier: Notifier
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._notifier = notifier

    async def get(self, site_id: str) -> Site | None:
        """A site (None if unknown)."""
        async with self._sessions() as s:
            return await s.get(Site, site_id)

    async def all_sites(self) -> list[Site]:
        """Every site."""
        async with self._sessions() as s:
            return list((await s.exec(select(Site).order_by(Site.id))).all())

    async def upsert(self, site_id: str, changes: dict[str, Any]) -> Site:
        """Create a site or change some of its settings (only the fields given). Raises
        ``SiteConfigError`` naming the first invalid field; nothing is stored then."""
        unknown = sorted(set(changes) - set(SITE_FIELDS))
        if unknown:
            raise SiteConfigError(
                f"unknown site setting(s) {', '.join(unknown)}; known: {', '.join(SITE_FIELDS)}"
            )
        async with self._sessions.begin() as s:
            site = await s.get(Site, site_id) or Site(id=site_id, name=site_id)
            for key, raw in changes.items():
                value = raw
                if key == "capacity_schedule":
                    value = schedule_to_json(
                        parse_schedule(raw, "kw", field_name=key, minimum=0.0), "kw"
                    )
                elif key == "price_schedule":
                    value = schedule_to_json(
                        parse_schedule(raw, "price", field_name=key, minimum=None), "price"
                    )
                setattr(site, key, value)
            try:
                _validated(site)
            except (TypeError, ValueError, OverflowError) as exc:
                raise SiteConfigError(str(exc)) from None
            s.add(site)
        self._notifier.publish(Notice("site", site_id=site_id, at=self._clock.now()))
        return site

    async def set_capacity(
        self, site_id: str, capacity_kw: float, schedule: list[dict[str, Any]] | None
    ) -> Site:
        """Set the base cap and (optionally) the cap's time-of-day schedule; re-plans."""
        if await self.get(site_id) is None:
            raise NotFoundError(f"no site {site_id!r}")
        changes: dict[str, Any] = {"capacity_kw": capacity_kw}
        if schedule is not None:
            changes["capacity_schedule"] = schedule
        return await self.upsert(site_id, changes)

    async def assign(self, charge_point_id: str, site_id: str | None) -> None:
        """Put a charger on a site (None: on none)."""
        async with self._sessions.begin() as s:
            cp = await s.get(ChargePoint, charge_point_id)
            if cp is None:
                raise NotFoundError(f"no charger {charge_point_id!r}")
            if site_id is not None and await s.get(Site, site_id) is None:
                raise NotFoundError(f"no site {site_id!r}")
            cp.site_id = site_id
            s.add(cp)
        if site_id is not None:
            self._notifier.publish(Notice("site", site_id=site_id, at=self._clock.now()))

    async def set_needs(
        self,
        transaction_id: int,
        *,
        departure: datetime | None,
        energy_wh: float | None,
        max_power_w: float | None,
    ) -> NeedsInput:
        """Store what the driver or operator says the session needs (source ``operator``); the
        EV's own ISO 15118 values still win field by field (``csms.domain.needs``)."""
        async with self._sessions.begin() as s:
            tx = await s.get(Transaction, transaction_id)
            if tx is None:
                raise NotFoundError(f"no transaction {transaction_id}")
            if not tx.active:
                raise NeedsError(f"transaction {transaction_id} has ended: its needs are final")
            row = (
                await s.exec(
                    select(NeedsInput).where(
                        NeedsInput.transaction_id == transaction_id,
                        NeedsInput.source == "operator",
                    )
                )
            ).first() or NeedsInput(transaction_id=transaction_id, source="operator")
            row.departure = departure
            row.energy_wh = energy_wh
            row.max_power_w = max_power_w
            row.updated_at = self._clock.now()
            s.add(row)
            notice = Notice("needs", tx.charge_point_id, tx.evse_id, transaction_id)
        self._notifier.publish(notice)
        return row
