"""A site's figures over a time window: energy requested and delivered, served ratio, metered peak
against the cap, and how the chargers answered and obeyed their profiles."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.db.models import (
    ChargePoint,
    MeterValue,
    NeedsInput,
    PlanAudit,
    ProfileAudit,
    Site,
    Transaction,
    as_utc,
)
from csms.domain.needs import resolve_needs
from csms.domain.site_config import site_config_from_row
from csms.services.site_state import needs_by_transaction


def peak_kw(
    registers: list[tuple[str, datetime, float]], window_minutes: int = 15
) -> tuple[float, str | None]:
    """Site peak from energy-register readings (meter id, time, Wh): between two readings of a
    meter its mean power is spread over the minutes the interval covers; the site's energy in a
    window (aligned on the hour, 15 minutes as utilities bill demand) is the sum over meters.
    Returns the highest window's mean power (kW) and when it began.

    With readings a minute apart, 1-minute windows are only an estimate: a limit that changes
    between two readings smears that meter's energy over both minutes."""
    by_meter: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for meter, when, wh in registers:
        by_meter[meter].append((when, wh))
    minute_wh: dict[datetime, float] = defaultdict(float)
    for readings in by_meter.values():
        readings.sort()
        for (t0, e0), (t1, e1) in pairwise(readings):
            span = (t1 - t0).total_seconds()
            if span <= 0 or e1 < e0:
                continue
            rate = (e1 - e0) / span  # Wh per second
            t = t0
            while t < t1:
                minute = t.replace(second=0, microsecond=0)
                edge = min(t1, minute + timedelta(minutes=1))
                minute_wh[minute] += rate * (edge - t).total_seconds()
                t = edge
    windows: dict[datetime, float] = defaultdict(float)
    for minute, wh in minute_wh.items():
        windows[minute.replace(minute=minute.minute - minute.minute % window_minutes)] += wh
    if not windows:
        return 0.0, None
    start, wh = max(windows.items(), key=lambda kv: kv[1])
    return round(wh * 60 / window_minutes / 1000.0, 3), start.isoformat()


async def site_kpis(
    sessions: async_sessionmaker[AsyncSession], site_id: str, since: datetime, until: datetime
) -> dict[str, Any] | None:
    """The site's figures over ``[since, until)`` (None if there is no such site)."""
    # UTC bounds: SQLite compares the stored UTC wall time with the bound's own wall time.
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    async with sessions() as s:
        site = await s.get(Site, site_id)
        if site is None:
            return None
        cfg = site_config_from_row(site)
        ids = list(
            (await s.exec(select(ChargePoint.id).where(ChargePoint.site_id == site_id))).all()
        )
        txs = list(
            (
                await s.exec(
                    select(Transaction).where(
                        col(Transaction.charge_point_id).in_(ids),
                        col(Transaction.started_at) < until,
                        or_(
                            col(Transaction.stopped_at).is_(None),
                            col(Transaction.stopped_at) >= since,
                        ),
                    )
                )
            ).all()
        )
        tx_ids = [t.id for t in txs if t.id is not None]
        needs_rows = list(
            (
                await s.exec(select(NeedsInput).where(col(NeedsInput.transaction_id).in_(tx_ids)))
            ).all()
        )
        meters = list(
            (
                await s.exec(
                    select(MeterValue).where(
                        col(MeterValue.charge_point_id).in_(ids),
                        MeterValue.measurand == "Energy.Active.Import.Register",
                        MeterValue.phase == "",
                        col(MeterValue.timestamp) >= since,
                        col(MeterValue.timestamp) < until,
                    )
                )
            ).all()
        )
        profiles = list(
            (
                await s.exec(
                    select(ProfileAudit).where(
                        ProfileAudit.site_id == site_id,
                        col(ProfileAudit.created_at) >= since,
                        col(ProfileAudit.created_at) < until,
                    )
                )
            ).all()
        )
        latest = (
            await s.exec(
                select(PlanAudit)
                .where(PlanAudit.site_id == site_id)
                .order_by(col(PlanAudit.id).desc())
                .limit(1)
            )
        ).first()
    needs = needs_by_transaction(needs_rows)
    requested = delivered = 0.0
    for tx in txs:
        assert tx.id is not None
        started = as_utc(tx.started_at) or since
        resolved = resolve_needs(
            needs.get(tx.id, {}),
            started_at=started,
            default_dwell=timedelta(hours=cfg.default_dwell_hours),
            default_energy_wh=cfg.default_energy_kwh * 1000.0,
        )
        requested += resolved.energy_wh
        end = tx.meter_stop_wh if tx.meter_stop_wh is not None else tx.last_energy_wh
        if end is not None and tx.meter_start_wh is not None:
            delivered += max(0.0, end - tx.meter_start_wh)
    registers = []
    for m in meters:
        when = as_utc(m.timestamp)
        assert when is not None
        wh = m.value * 1000.0 if m.unit == "kWh" else m.value
        registers.append((f"{m.charge_point_id}/{m.evse_id}", when, wh))
    peak, peak_at = peak_kw(registers, 15)
    peak_1min, peak_1min_at = peak_kw(registers, 1)
    tx_profiles = [p for p in profiles if p.purpose == "TxProfile" and p.status != "held"]
    accepted = [p for p in tx_profiles if p.status == "Accepted"]
    non_compliant = [p for p in tx_profiles if (p.verification or "").startswith("non-compliant")]
    not_applied = [p for p in tx_profiles if (p.verification or "").startswith("not applied")]
    return {
        "site_id": site_id,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "sessions": len(txs),
        "energy_requested_kwh": round(requested / 1000.0, 3),
        "energy_delivered_kwh": round(delivered / 1000.0, 3),
        "served_ratio": round(delivered / requested, 4) if requested > 0 else None,
        "metered_peak_kw": peak,
        "metered_peak_at": peak_at,
        "metered_peak_1min_kw": peak_1min,
        "metered_peak_1min_at": peak_1min_at,
        "cap_now_kw": cfg.cap_at(until),
        "lowest_cap_kw": cfg.lowest_cap_kw,
        "planned": None
        if latest is None
        else {
            "plan_id": latest.id,
            "created_at": (as_utc(latest.created_at) or since).isoformat(),
            "status": latest.status,
            "method": latest.method,
            "kpis": latest.kpis,
        },
        "profiles": {
            "sent": len(tx_profiles),
            "accepted": len(accepted),
            "rejected_or_failed": len(tx_profiles) - len(accepted),
            "non_compliant": len(non_compliant),
            "not_applied": len(not_applied),
        },
        "compliance_ratio": round(
            (len(accepted) - len(non_compliant) - len(not_applied)) / len(tx_profiles), 4
        )
        if tx_profiles
        else None,
    }
