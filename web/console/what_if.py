"""What-if panel: try another cap or other session needs, preview the plan and its KPIs next to
today's, then apply (operators) — nothing is stored or sent before "Apply"."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from csms.db.models import PlanAudit, Site
from csms.domain.needs import resolve_needs
from csms.domain.site_config import SiteConfigError
from csms.services.site_state import LoadedSite, load_site
from csms.services.sites import NeedsError, NotFoundError
from csms.services.what_if import NeedsEdit, WhatIf, apply_what_if
from web.api.deps import RuntimeDep
from web.console import charts
from web.console.deps import OperatorDep, UserDep
from web.console.render import render
from web.console.sessions import parse_local
from web.console.settings import parse_schedule_text, schedule_text
from web.console.site_pages import HEATMAP_ROWS, at_risk

router = APIRouter(prefix="/console", include_in_schema=False)

SESSION_ROWS = 40  # editable sessions shown (soonest departures first); the rest keep their needs
LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # <input type="datetime-local">


def session_rows(site: LoadedSite, tz: str, now: datetime) -> list[dict[str, Any]]:
    """The active sessions as the form shows them: merged needs, soonest departure first."""
    cfg = site.config
    rows = []
    for tx in site.transactions:
        needs = resolve_needs(
            tx.needs,
            started_at=tx.started_at or now,
            default_dwell=timedelta(hours=cfg.default_dwell_hours),
            default_energy_wh=cfg.default_energy_kwh * 1000.0,
        )
        local = needs.departure.astimezone(cfg.zone)
        rows.append(
            {
                "id": tx.id,
                "label": f"{tx.charge_point_id}/{tx.evse_id}",
                "departure": local.strftime(LOCAL_INPUT),
                "departure_source": needs.departure_source,
                "energy_kwh": f"{needs.energy_wh / 1000.0:g}",
                "energy_source": needs.energy_source,
                "delivered_kwh": tx.delivered_wh / 1000.0,
                "sort": needs.departure,
            }
        )
    rows.sort(key=lambda r: (r["sort"], r["id"]))
    return rows[:SESSION_ROWS]


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a number >= 0, not {text!r}")
    return value


def parse_form(form: Mapping[str, str], tz: str) -> WhatIf:
    """The changes a what-if form asks for. A field counts only where it differs from the value
    the form was drawn with (``shown_*``), so untouched sessions keep their sources. Raises
    ``ValueError``/``SiteConfigError`` naming the field."""
    capacity_kw = None
    cap_text = form.get("capacity_kw", "").strip()
    if cap_text and cap_text != form.get("shown_capacity_kw", "").strip():
        capacity_kw = _number(cap_text, "cap")
    schedule = None
    sched_text = form.get("capacity_schedule", "")
    if sched_text.split() != form.get("shown_capacity_schedule", "").split():
        schedule = parse_schedule_text(sched_text, "kw", "cap schedule")
    needs: dict[int, NeedsEdit] = {}
    for raw_id in form.get("sessions", "").split(","):
        if not raw_id.strip().isdigit():
            continue
        tx_id = int(raw_id)
        dep_text = form.get(f"departure_{tx_id}", "").strip()
        energy_text = form.get(f"energy_{tx_id}", "").strip()
        departure = None
        if dep_text and dep_text != form.get(f"shown_departure_{tx_id}", "").strip():
            departure = parse_local(dep_text, tz)
        energy_wh = None
        if energy_text and energy_text != form.get(f"shown_energy_{tx_id}", "").strip():
            energy_wh = _number(energy_text, f"energy of session {tx_id}") * 1000.0
            if energy_wh > 1_000_000:
                raise ValueError(f"energy of session {tx_id} must be at most 1000 kWh")
        if departure is not None or energy_wh is not None:
            needs[tx_id] = NeedsEdit(departure=departure, energy_wh=energy_wh)
    return WhatIf(capacity_kw=capacity_kw, capacity_schedule=schedule, needs=needs)


def describe(what: WhatIf) -> list[str]:
    """The changes in words, for the preview's heading and the flash after applying."""
    out = []
    if what.capacity_kw is not None:
        out.append(f"cap {what.capacity_kw:g} kW")
    if what.capacity_schedule is not None:
        out.append(f"cap schedule of {len(what.capacity_schedule)} entries")
    for tx_id, edit in what.needs.items():
        parts = []
        if edit.departure is not None:
            parts.append(f"departure {edit.departure:%Y-%m-%d %H:%M}")
        if edit.energy_wh is not None:
            parts.append(f"{edit.energy_wh / 1000.0:g} kWh")
        out.append(f"session {tx_id}: {', '.join(parts)}")
    return out


def _kpi_rows(before: PlanAudit, after: PlanAudit) -> list[dict[str, Any]]:
    def row(label: str, key: str, unit: str, better: str) -> dict[str, Any]:
        a, b = before.kpis.get(key), after.kpis.get(key)
        return {"label": label, "before": a, "after": b, "unit": unit, "better": better}

    rows = [
        row("Energy still needed", "energy_requested_kwh", "kWh", ""),
        row("Energy planned", "energy_delivered_kwh", "kWh", "up"),
        row("Served", "served_ratio", "%", "up"),
        row("Left short by", "unmet_kwh", "kWh", "down"),
        row("Sessions fully served", "sessions_fully_served", "", "up"),
        row("Planned peak", "peak_kw", "kW", ""),
    ]
    rows.append(
        {
            "label": "Sessions at risk",
            "before": len(at_risk(before)),
            "after": len(at_risk(after)),
            "unit": "",
            "better": "down",
        }
    )
    rows.append(
        {
            "label": "Lowest cap",
            "before": before.capacity_kw,
            "after": after.capacity_kw,
            "unit": "kW",
            "better": "",
        }
    )
    return rows


def _session_changes(before: PlanAudit, after: PlanAudit) -> list[dict[str, Any]]:
    """Sessions whose planned energy moves by more than 0.1 kWh, largest change first."""
    step_h = float(before.plan.get("step_s") or 900) / 3600.0
    a = before.plan.get("sessions", {})
    b = after.plan.get("sessions", {})
    out = []
    for sid in sorted(set(a) | set(b)):
        ea = sum(a.get(sid, {}).get("power_kw", [])) * step_h
        eb = sum(b.get(sid, {}).get("power_kw", [])) * step_h
        if abs(eb - ea) > 0.1:
            s = a.get(sid) or b.get(sid) or {}
            label = f"{s.get('charge_point_id')}/{s.get('evse_id')}"
            tx = s.get("transaction_id")
            out.append({"id": tx or sid, "label": label, "before": ea, "after": eb})
    out.sort(key=lambda r: -abs(r["after"] - r["before"]))
    return out[:HEATMAP_ROWS]


async def _site(rt: RuntimeDep, site_id: str) -> tuple[Site, LoadedSite]:
    row = await rt.sites.get(site_id)
    loaded = await load_site(rt.sessions, site_id)
    if row is None or loaded is None:
        raise HTTPException(404, f"no site {site_id!r}")
    return row, loaded


def _form_ctx(row: Site, loaded: LoadedSite, now: datetime) -> dict[str, Any]:
    return {
        "site": row,
        "capacity_kw": f"{row.capacity_kw:g}",
        "capacity_schedule": schedule_text(row.capacity_schedule, "kw"),
        "rows": session_rows(loaded, row.timezone, now),
        "total_sessions": len(loaded.transactions),
        "tab": "plan",
    }


@router.get("/sites/{site_id}/what-if", response_class=HTMLResponse)
async def what_if_page(
    site_id: str, request: Request, rt: RuntimeDep, user: UserDep
) -> HTMLResponse:
    """The what-if form, filled with the site's cap and its sessions' needs as they are now."""
    row, loaded = await _site(rt, site_id)
    return render(request, "what_if.html", _form_ctx(row, loaded, rt.clock.now()))


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.post("/sites/{site_id}/what-if/preview", response_class=HTMLResponse)
async def preview(site_id: str, request: Request, rt: RuntimeDep, user: UserDep) -> HTMLResponse:
    """Plan the site as it is and as it would be; show both. Stores and sends nothing (viewers
    may preview too)."""
    row, loaded = await _site(rt, site_id)
    ctx = _form_ctx(row, loaded, rt.clock.now())
    try:
        what = parse_form(await _form(request), row.timezone)
        edited = apply_what_if(loaded, what)
    except (ValueError, SiteConfigError) as exc:
        ctx["error"] = str(exc)
        return render(request, "what_if.html", ctx, status_code=422)
    before = await rt.smart.preview(loaded, "what-if: as now")
    after = await rt.smart.preview(edited, "what-if")
    sessions = sorted(after.plan.get("sessions", {}).items())[:HEATMAP_ROWS]
    step_s = float(after.plan.get("step_s") or 900)
    chart = None
    if sessions:
        chart = charts.heatmap(
            [f"{s['charge_point_id']}/{s['evse_id']}" for _, s in sessions],
            [s["power_kw"] for _, s in sessions],
            datetime.fromisoformat(after.plan["start"]),
            timedelta(seconds=step_s),
            row.timezone,
            rt.clock.now(),
        )
    ctx.update(
        {
            "changes": describe(what),
            "before": before,
            "after": after,
            "kpi_rows": _kpi_rows(before, after),
            "session_changes": _session_changes(before, after),
            "chart": chart,
        }
    )
    return render(request, "what_if.html", ctx)


@router.post("/sites/{site_id}/what-if/apply", response_class=HTMLResponse)
async def apply(site_id: str, request: Request, rt: RuntimeDep, user: OperatorDep) -> HTMLResponse:
    """Store the changes through the same services as the settings and sessions pages, then
    re-plan and dispatch (answers once the chargers have their profiles)."""
    row, loaded = await _site(rt, site_id)
    try:
        what = parse_form(await _form(request), row.timezone)
        edited = apply_what_if(loaded, what)  # validates everything before anything is stored
        if what.capacity_kw is not None or what.capacity_schedule is not None:
            await rt.sites.set_capacity(
                site_id,
                what.capacity_kw if what.capacity_kw is not None else row.capacity_kw,
                what.capacity_schedule,
            )
        for tx in edited.transactions:
            if tx.id in what.needs:
                # the operator's stored values, merged with the edit: fields not edited stay
                op = tx.needs["operator"]
                await rt.sites.set_needs(
                    tx.id,
                    departure=op.departure,
                    energy_wh=op.energy_wh,
                    max_power_w=op.max_power_w,
                )
    except (ValueError, SiteConfigError, NotFoundError, NeedsError) as exc:
        ctx = {**_form_ctx(row, loaded, rt.clock.now()), "apply_error": str(exc)}
        return render(request, "what_if.html", ctx, status_code=422)
    changes = describe(what)
    if changes:
        await rt.smart.replan(site_id, "what-if applied in the console")
    row, loaded = await _site(rt, site_id)
    ctx = _form_ctx(row, loaded, rt.clock.now())
    ctx["flash"] = (
        "applied: " + "; ".join(changes) + ". The site was re-planned."
        if changes
        else "nothing was changed"
    )
    return render(request, "what_if.html", ctx)
