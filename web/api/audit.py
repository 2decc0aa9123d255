"""GET /api/audit/plans and /api/audit/profiles: the audit log, filtered, paged, as JSON or CSV."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse, Response

from csms.services.audit import PLAN_COLUMNS, PROFILE_COLUMNS, AuditFilter, row_dict, to_csv
from web.api.deps import (
    INSTANT_RANGE,
    KEY_PATTERN,
    Instant,
    KeyFilter,
    Offset,
    RowId,
    RowIdFilter,
    RuntimeDep,
)
from web.api.problems import invalid, responses

router = APIRouter(tags=["audit"])

Format = Literal["json", "csv"]

# A list as JSON, or with format=csv the same rows as CSV; since >= until is a 422.
_LISTED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the rows, newest first",
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "text/csv": {"schema": {"type": "string"}},
        },
    },
    **responses(422),
}


def _filter(
    site_id: str | None,
    charge_point_id: str | None,
    transaction_id: int | None,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> AuditFilter:
    if since is not None and until is not None and since >= until:
        raise invalid("query.since", f"since ({since}) must be before until ({until})")
    return AuditFilter(
        site_id, charge_point_id, transaction_id, status, since, until, limit, offset
    )


def _out(rows: list[dict[str, Any]], columns: tuple[str, ...], fmt: Format, name: str) -> Any:
    if fmt == "csv":
        return PlainTextResponse(
            to_csv(rows, columns),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return rows


@router.get("/api/audit/plans", response_model=None, responses=_LISTED)
async def plans(
    rt: RuntimeDep,
    site_id: KeyFilter = None,
    status: str | None = Query(
        None,
        max_length=32,
        pattern=KEY_PATTERN,
        description="optimal, feasible, time_limit, failed, ...",
    ),
    since: Annotated[
        Instant | None, Query(description=f"created at or after, {INSTANT_RANGE}")
    ] = None,
    until: Annotated[Instant | None, Query(description=f"created before, {INSTANT_RANGE}")] = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: Offset = 0,
    format: Annotated[Format, Query(description="json or csv")] = "json",
) -> list[dict[str, Any]] | Response:
    """Every plan (newest first): trigger, method, status, objective, KPIs, timings. The inputs
    and per-session power of one plan: ``/api/audit/plans/{id}``."""
    f = _filter(site_id, None, None, status, since, until, limit, offset)
    rows = [row_dict(p, PLAN_COLUMNS) for p in await rt.smart.audit.plans(f)]
    out: list[dict[str, Any]] | Response = _out(rows, PLAN_COLUMNS, format, "plans")
    return out


@router.get("/api/audit/plans/{plan_id}", responses=responses(404))
async def plan(plan_id: RowId, rt: RuntimeDep) -> dict[str, Any]:
    """One plan with its inputs snapshot (the optimizer problem, the reservations) and output."""
    row = await rt.smart.audit.plan(plan_id)
    if row is None:
        raise HTTPException(404, f"no plan {plan_id}")
    return row_dict(row, (*PLAN_COLUMNS, "inputs", "plan"))


@router.get("/api/audit/profiles", response_model=None, responses=_LISTED)
async def profiles(
    rt: RuntimeDep,
    site_id: KeyFilter = None,
    charge_point_id: KeyFilter = None,
    transaction_id: RowIdFilter = None,
    plan_id: RowIdFilter = None,
    status: str | None = Query(
        None,
        max_length=32,
        pattern=KEY_PATTERN,
        description="Accepted, Rejected, error, held, skipped",
    ),
    since: Annotated[
        Instant | None, Query(description=f"created at or after, {INSTANT_RANGE}")
    ] = None,
    until: Annotated[Instant | None, Query(description=f"created before, {INSTANT_RANGE}")] = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: Offset = 0,
    format: Annotated[Format, Query(description="json or csv")] = "json",
) -> list[dict[str, Any]] | Response:
    """Every charging profile dispatched (newest first): payload, answer, latency, attempts,
    which plan, and the verification once done."""
    f = _filter(site_id, charge_point_id, transaction_id, status, since, until, limit, offset)
    rows = [row_dict(p, PROFILE_COLUMNS) for p in await rt.smart.audit.profiles(f, plan_id=plan_id)]
    out: list[dict[str, Any]] | Response = _out(rows, PROFILE_COLUMNS, format, "profiles")
    return out
