"""GET /api/audit/plans and /api/audit/profiles: the audit log, filtered, paged, as JSON or CSV."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import AwareDatetime

from csms.services.audit import PLAN_COLUMNS, PROFILE_COLUMNS, AuditFilter, row_dict, to_csv
from web.api.deps import RuntimeDep

router = APIRouter(tags=["audit"])

Format = Literal["json", "csv"]


def _filter(
    site_id: str | None,
    charge_point_id: str | None,
    transaction_id: int | None,
    status: str | None,
    since: AwareDatetime | None,
    until: AwareDatetime | None,
    limit: int,
    offset: int,
) -> AuditFilter:
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, "since must be before until")
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


@router.get("/api/audit/plans", response_model=None)
async def plans(
    rt: RuntimeDep,
    site_id: str | None = None,
    status: str | None = Query(None, description="optimal, feasible, time_limit, failed, ..."),
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    format: Annotated[Format, Query(description="json or csv")] = "json",
) -> list[dict[str, Any]] | Response:
    """Every plan (newest first): trigger, method, status, objective, KPIs, timings. The inputs
    and per-session power of one plan: ``/api/audit/plans/{id}``."""
    f = _filter(site_id, None, None, status, since, until, limit, offset)
    rows = [row_dict(p, PLAN_COLUMNS) for p in await rt.smart.audit.plans(f)]
    out: list[dict[str, Any]] | Response = _out(rows, PLAN_COLUMNS, format, "plans")
    return out


@router.get("/api/audit/plans/{plan_id}")
async def plan(plan_id: int, rt: RuntimeDep) -> dict[str, Any]:
    """One plan with its inputs snapshot (the optimizer problem, the reservations) and output."""
    row = await rt.smart.audit.plan(plan_id)
    if row is None:
        raise HTTPException(404, f"no plan {plan_id}")
    return row_dict(row, (*PLAN_COLUMNS, "inputs", "plan"))


@router.get("/api/audit/profiles", response_model=None)
async def profiles(
    rt: RuntimeDep,
    site_id: str | None = None,
    charge_point_id: str | None = None,
    transaction_id: int | None = None,
    plan_id: int | None = None,
    status: str | None = Query(None, description="Accepted, Rejected, error, held, skipped"),
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    format: Annotated[Format, Query(description="json or csv")] = "json",
) -> list[dict[str, Any]] | Response:
    """Every charging profile dispatched (newest first): payload, answer, latency, attempts,
    which plan, and the verification once done."""
    f = _filter(site_id, charge_point_id, transaction_id, status, since, until, limit, offset)
    rows = [row_dict(p, PROFILE_COLUMNS) for p in await rt.smart.audit.profiles(f, plan_id=plan_id)]
    out: list[dict[str, Any]] | Response = _out(rows, PROFILE_COLUMNS, format, "profiles")
    return out
