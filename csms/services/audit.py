"""The audit log: every plan and every charging profile dispatched, append-only, queryable and
exportable (CSV, JSON). Rows are deleted only by retention (``smart_charging.audit_retention_days``);
the one field written after the fact is a dispatch's ``verification`` (once, when checked)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.db.models import PlanAudit, ProfileAudit, as_utc

MAX_PAGE: Final = 1000

PLAN_COLUMNS: Final = (
    "id",
    "site_id",
    "created_at",
    "trigger",
    "method",
    "status",
    "fallback_reason",
    "objective",
    "sessions",
    "capacity_kw",
    "reserved_kw",
    "kpis",
    "timings",
    "warnings",
)
"""Columns of the plan listing (``inputs`` and ``plan`` are large: in the single-plan view)."""

PROFILE_COLUMNS: Final = (
    "id",
    "plan_id",
    "site_id",
    "charge_point_id",
    "evse_id",
    "transaction_id",
    "ocpp_transaction_id",
    "purpose",
    "phase",
    "limit_w",
    "status",
    "error",
    "latency_s",
    "attempts",
    "created_at",
    "verification",
    "verified_at",
    "payload",
    "answer",
)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Filters shared by both listings (all optional; times compare with ``created_at``)."""

    site_id: str | None = None
    charge_point_id: str | None = None
    transaction_id: int | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0


def _utc(value: datetime | None) -> datetime | None:
    """A filter bound in UTC: SQLite keeps UTC wall time without an offset and the driver drops
    the bound value's offset, so a bound in another zone would be off by its offset."""
    return None if value is None else value.astimezone(UTC)


def _where(table: Any, f: AuditFilter, **equal: object) -> list[Any]:
    """Conditions: each given column equals its value (None: any), created_at in the window."""
    conditions = [
        getattr(table, name) == value for name, value in equal.items() if value is not None
    ]
    if f.since is not None:
        conditions.append(col(table.created_at) >= _utc(f.since))
    if f.until is not None:
        conditions.append(col(table.created_at) < _utc(f.until))
    return conditions


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()  # type: ignore[union-attr]
    return value


def row_dict(row: Any, columns: Sequence[str]) -> dict[str, Any]:
    """One row as a JSON-ready dict of ``columns``."""
    return {c: _jsonable(getattr(row, c)) for c in columns}


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as CSV (nested values as compact JSON in their cell)."""
    out = io.StringIO()
    writer = csv.writer(out)  # RFC 4180: CRLF; cells with CR or LF are quoted
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [
                json.dumps(v, separators=(",", ":"))
                if isinstance(v, dict | list)
                else ("" if v is None else v)
                for v in (row.get(c) for c in columns)
            ]
        )
    return out.getvalue()


class AuditLog:
    """Writes and reads the audit tables."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def add_plan(self, row: PlanAudit) -> int:
        """Append a plan; returns its id."""
        async with self._sessions.begin() as s:
            s.add(row)
            await s.flush()
            assert row.id is not None
            return row.id

    async def add_profiles(self, rows: Sequence[ProfileAudit]) -> list[int]:
        """Append dispatches; returns their ids."""
        if not rows:
            return []
        async with self._sessions.begin() as s:
            s.add_all(rows)
            await s.flush()
            return [r.id for r in rows if r.id is not None]

    async def set_verification(
        self, profile_id: int, result: str, when: datetime, *, overrides: bool = False
    ) -> None:
        """Record the check of an accepted profile: once, except that a finding of the meter check
        (``overrides``: the charger draws over its limit) replaces an earlier "applied"."""
        q = update(ProfileAudit).where(col(ProfileAudit.id) == profile_id)
        if not overrides:
            q = q.where(col(ProfileAudit.verification).is_(None))
        async with self._sessions.begin() as s:
            await (await s.connection()).execute(
                q.values(verification=result[:255], verified_at=when)
            )

    async def plans(self, f: AuditFilter) -> list[PlanAudit]:
        """Plans, newest first."""
        q = select(PlanAudit).where(*_where(PlanAudit, f, site_id=f.site_id, status=f.status))
        q = q.order_by(col(PlanAudit.id).desc()).offset(f.offset).limit(min(f.limit, MAX_PAGE))
        async with self._sessions() as s:
            return list((await s.exec(q)).all())

    async def plan(self, plan_id: int) -> PlanAudit | None:
        """One plan with its inputs and per-session power."""
        async with self._sessions() as s:
            return await s.get(PlanAudit, plan_id)

    async def latest_plan(self, site_id: str) -> PlanAudit | None:
        """The site's newest plan."""
        async with self._sessions() as s:
            q = (
                select(PlanAudit)
                .where(PlanAudit.site_id == site_id)
                .order_by(col(PlanAudit.id).desc())
                .limit(1)
            )
            return (await s.exec(q)).first()

    async def profiles(self, f: AuditFilter, *, plan_id: int | None = None) -> list[ProfileAudit]:
        """Dispatches, newest first."""
        q = select(ProfileAudit).where(
            *_where(
                ProfileAudit,
                f,
                site_id=f.site_id,
                charge_point_id=f.charge_point_id,
                transaction_id=f.transaction_id,
                status=f.status,
                plan_id=plan_id,
            )
        )
        q = q.order_by(col(ProfileAudit.id).desc()).offset(f.offset).limit(min(f.limit, MAX_PAGE))
        async with self._sessions() as s:
            return list((await s.exec(q)).all())

    async def prune(self, older_than: datetime) -> int:
        """Delete audit rows older than ``older_than`` (retention); returns how many."""
        removed = 0
        async with self._sessions.begin() as s:
            conn = await s.connection()
            for table in (ProfileAudit, PlanAudit):
                result = await conn.execute(delete(table).where(col(table.created_at) < older_than))
                removed += int(result.rowcount or 0)
        return removed


Export = Literal["json", "csv"]
