"""The audit log: plans and profile dispatches, filtered and paged, with export links."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from csms.services.audit import AuditFilter
from web.api.deps import RuntimeDep
from web.console.deps import UserDep
from web.console.render import render

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE = 50


def _when(value: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise HTTPException(422, f"{value!r} is not a date and time (YYYY-MM-DDTHH:MM)") from None
    return parsed if parsed.tzinfo else parsed.astimezone()


@router.get("/audit", response_class=HTMLResponse)
async def audit(
    request: Request,
    rt: RuntimeDep,
    user: UserDep,
    kind: str = Query("profiles", pattern="^(plans|profiles)$"),
    site_id: str = "",
    charge_point_id: str = "",
    transaction_id: str = "",
    plan_id: str = "",
    status: str = "",
    since: str = "",
    until: str = "",
    page: int = Query(1, ge=1),
) -> HTMLResponse:
    """Plans or profiles, newest first, 50 a page."""
    try:
        tx = int(transaction_id) if transaction_id.strip() else None
        pid = int(plan_id) if plan_id.strip() else None
    except ValueError:
        raise HTTPException(422, "transaction and plan ids are numbers") from None
    f = AuditFilter(
        site_id or None,
        charge_point_id or None,
        tx,
        status or None,
        _when(since),
        _when(until),
        PAGE + 1,  # one more tells whether there is a next page
        (page - 1) * PAGE,
    )
    rows: list[Any] = (
        await rt.smart.audit.plans(f)
        if kind == "plans"
        else await rt.smart.audit.profiles(f, plan_id=pid)
    )
    filters = {
        k: v
        for k, v in {
            "site_id": site_id,
            "charge_point_id": charge_point_id if kind == "profiles" else "",
            "transaction_id": transaction_id if kind == "profiles" else "",
            "plan_id": plan_id if kind == "profiles" else "",
            "status": status,
            "since": f.since.isoformat() if f.since else "",
            "until": f.until.isoformat() if f.until else "",
        }.items()
        if v
    }
    ctx = {
        "kind": kind,
        "rows": rows[:PAGE],
        "has_next": len(rows) > PAGE,
        "page": page,
        "form": {
            "site_id": site_id,
            "charge_point_id": charge_point_id,
            "transaction_id": transaction_id,
            "plan_id": plan_id,
            "status": status,
            "since": since,
            "until": until,
        },
        "query": urlencode({"kind": kind, **filters}),
        "export_csv": f"/api/audit/{kind}?"
        + urlencode({**filters, "format": "csv", "limit": 1000}),
        "export_json": f"/api/audit/{kind}?" + urlencode({**filters, "limit": 1000}),
        "tab": "audit",
    }
    return render(request, "audit.html", ctx)


@router.get("/audit/plans/{plan_id}", response_class=HTMLResponse)
async def plan_detail(
    plan_id: int, request: Request, rt: RuntimeDep, user: UserDep
) -> HTMLResponse:
    """One plan: why it ran, its figures, reservations, and the profiles it produced."""
    plan = await rt.smart.audit.plan(plan_id)
    if plan is None:
        raise HTTPException(404, f"no plan {plan_id}")
    profiles = await rt.smart.audit.profiles(AuditFilter(limit=200), plan_id=plan_id)
    ctx = {"plan": plan, "profiles": profiles, "tab": "audit"}
    return render(request, "audit_plan.html", ctx)
