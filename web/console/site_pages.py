"""Site overview (power against plan and cap, KPI tiles, safety state) and the plan heatmap."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from csms.db.models import PlanAudit, Site, as_utc
from csms.domain.site_config import SiteConfig, site_config_from_row
from csms.runtime import Runtime
from csms.services.site_kpis import site_kpis
from web.api.deps import RuntimeDep
from web.console import charts
from web.console.deps import ConsoleDep, UserDep
from web.console.render import render

router = APIRouter(prefix="/console", include_in_schema=False)

CACHE_S = 4.0  # the overview polls every 5 s: heavy aggregates are computed at most once a poll
HEATMAP_ROWS = 40


class TtlCache:
    """Results of slow aggregates per key for a few seconds, so many open consoles on a big site
    cost one query per period, not one per browser."""

    def __init__(self) -> None:
        self._items: dict[tuple[Any, ...], tuple[float, Any]] = {}

    async def get(self, key: tuple[Any, ...], make: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value, or a fresh one."""
        hit = self._items.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await make()
        self._items[key] = (now + CACHE_S, value)
        return value


def _cache(request: Request) -> TtlCache:
    cache: TtlCache | None = getattr(request.app.state, "console_cache", None)
    if cache is None:
        cache = request.app.state.console_cache = TtlCache()
    return cache


def day_window(cfg: SiteConfig, now: datetime) -> tuple[datetime, timedelta, int]:
    """The site's local day around ``now``: its start (UTC), the planning step and step count
    (92 or 100 quarter-hours on a daylight-saving day: absolute time)."""
    local = now.astimezone(cfg.zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # aware arithmetic within one tzinfo is wall-clock: convert to UTC before subtracting
    start = midnight.astimezone(UTC)
    end = (midnight + timedelta(days=1)).astimezone(UTC)
    step = timedelta(minutes=cfg.step_minutes)
    steps = max(1, round((end - start) / step))
    return start, step, steps


def planned_series(
    plan: PlanAudit | None, start: datetime, step: timedelta, steps: int
) -> list[float | None]:
    """The latest plan's total (sessions + reserved) mapped onto the day's steps."""
    out: list[float | None] = [None] * steps
    if plan is None or not plan.plan.get("start"):
        return out
    p_start = datetime.fromisoformat(plan.plan["start"])
    p_step = timedelta(seconds=float(plan.plan.get("step_s") or step.total_seconds()))
    sessions = plan.plan.get("sessions", {}).values()
    p_steps = max((len(s["power_kw"]) for s in sessions), default=0)
    reserved = plan.reserved_kw or 0.0
    for k in range(p_steps):
        t = p_start + p_step * k
        i = int((t - start) / step)
        if 0 <= i < steps:
            out[i] = round(reserved + sum(s["power_kw"][k] for s in sessions), 3)
    return out


def _energy_planned(power_kw: list[float], step_s: float) -> float:
    return sum(power_kw) * step_s / 3600.0


def at_risk(plan: PlanAudit | None) -> list[str]:
    """Sessions the latest plan does not fully serve by their departure (ids)."""
    if plan is None or not plan.inputs.get("problem"):
        return []
    step_s = float(plan.plan.get("step_s") or 900)
    planned = plan.plan.get("sessions", {})
    out = []
    for s in plan.inputs["problem"].get("sessions", []):
        got = _energy_planned(planned.get(s["id"], {}).get("power_kw", []), step_s)
        if got + 0.05 < float(s["energy_kwh"]):
            out.append(str(s["id"]))
    return out


def _when(iso: str | None) -> datetime | None:
    return None if not iso else datetime.fromisoformat(iso)


def live_power_kw(rt: Runtime, plan: PlanAudit | None) -> float | None:
    """The site's power from each session's latest meter reading (the planning loop keeps them),
    over the chargers the latest plan knows; None when it knows none."""
    if plan is None:
        return None
    chargers = {s["charge_point_id"] for s in plan.plan.get("sessions", {}).values()}
    chargers |= {r["charge_point_id"] for r in plan.inputs.get("reservations", []) or []}
    readings = [
        c.power_w
        for c in rt.smart.tx_control.values()
        if c.key[0] in chargers and c.power_w is not None
    ]
    return round(sum(readings) / 1000.0, 3) if readings else None


async def _site(rt: Runtime, site_id: str) -> Site:
    site = await rt.sites.get(site_id)
    if site is None:
        raise HTTPException(404, f"no site {site_id!r}")
    return site


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def home(rt: RuntimeDep, user: UserDep) -> Any:
    """The first site's overview (or a page to create a site)."""
    sites = await rt.sites.all_sites()
    if sites:
        return RedirectResponse(f"/console/sites/{sites[0].id}", status_code=303)
    return RedirectResponse("/console/new-site", status_code=303)


@router.get("/sites/{site_id}", response_class=HTMLResponse)
async def overview(
    site_id: str, request: Request, rt: RuntimeDep, q: ConsoleDep, user: UserDep
) -> HTMLResponse:
    """Site power against the plan and cap over the day, KPI tiles, safety state."""
    site = await _site(rt, site_id)
    cfg = site_config_from_row(site)
    now = rt.clock.now()
    start, step, steps = day_window(cfg, now)
    cache = _cache(request)
    metered = await cache.get(
        ("power", site_id, start), lambda: q.site_power(site_id, start, step, steps, now)
    )
    kpis = await cache.get(
        ("kpis", site_id, start), lambda: site_kpis(rt.sessions, site_id, start, now)
    )
    plan = await rt.smart.audit.latest_plan(site_id)
    planned = planned_series(plan, start, step, steps)
    cap = [cfg.cap_at(start + step * k) for k in range(steps)]
    k_now = int((now - start) / step)
    metered_now = live_power_kw(rt, plan)
    if metered_now is None:  # no session known to the loop: the chart's latest step
        metered_now = next((v for v in reversed(metered[: k_now + 1]) if v is not None), None)
    cap_now = cfg.cap_at(now)
    connected, total = await q.connection_counts(site_id)
    reservations = (plan.inputs.get("reservations", []) if plan else []) or []
    unmanaged = [
        {"transaction_id": tx_id, "charge_point_id": c.key[0], "reason": c.unmanaged_reason}
        for tx_id, c in rt.smart.tx_control.items()
        if c.unmanaged_reason and c.key[0] in {r["charge_point_id"] for r in reservations}
    ]
    ctx = {
        "site": site,
        "cfg": cfg,
        "now": now,
        "chart": charts.power_chart(start, step, metered, planned, cap, now, cfg.timezone),
        "kpis": kpis,
        "plan": plan,
        "plan_created": as_utc(plan.created_at) if plan else None,
        "cap_now": cap_now,
        "metered_now": metered_now,
        "headroom": None if metered_now is None else cap_now - metered_now,
        "planned_headroom": cap_now - (planned[k_now] or 0.0) if 0 <= k_now < steps else None,
        "reservations": reservations,
        "reserved_kw": sum(float(r["watts"]) for r in reservations) / 1000.0,
        "unmanaged": unmanaged,
        "at_risk": at_risk(plan),
        "connected": connected,
        "chargers": total,
        "tab": "overview",
    }
    return render(request, "overview.html", ctx)


@router.get("/sites/{site_id}/plan", response_class=HTMLResponse)
async def plan_view(
    site_id: str,
    request: Request,
    rt: RuntimeDep,
    user: UserDep,
    page: int = Query(1, ge=1),
) -> HTMLResponse:
    """Heatmap of the latest plan (sessions × steps) with each session's power now."""
    site = await _site(rt, site_id)
    cfg = site_config_from_row(site)
    plan = await rt.smart.audit.latest_plan(site_id)
    rows: list[dict[str, Any]] = []
    chart = None
    pages = 1
    if plan is not None and plan.plan.get("sessions"):
        sessions = sorted(plan.plan["sessions"].items())
        pages = max(1, -(-len(sessions) // HEATMAP_ROWS))
        page = min(page, pages)
        shown = sessions[(page - 1) * HEATMAP_ROWS : page * HEATMAP_ROWS]
        step_s = float(plan.plan.get("step_s") or 900)
        problem = {s["id"]: s for s in (plan.inputs.get("problem") or {}).get("sessions", [])}
        for sid, s in shown:
            control = rt.smart.tx_control.get(s.get("transaction_id") or -1)
            rows.append(
                {
                    "id": sid,
                    "label": f"{s['charge_point_id']}/{s['evse_id']}",
                    "transaction_id": s.get("transaction_id"),
                    "power": s["power_kw"],
                    "planned_kwh": _energy_planned(s["power_kw"], step_s),
                    "needed_kwh": problem.get(sid, {}).get("energy_kwh"),
                    "departure": _when(problem.get(sid, {}).get("departure")),
                    "power_now_kw": None
                    if control is None or control.power_w is None
                    else control.power_w / 1000.0,
                    "now_kw": s["power_kw"][0] if s["power_kw"] else 0.0,
                }
            )
        chart = charts.heatmap(
            [r["label"] for r in rows],
            [r["power"] for r in rows],
            datetime.fromisoformat(plan.plan["start"]),
            timedelta(seconds=step_s),
            cfg.timezone,
            rt.clock.now(),
        )
    ctx = {
        "site": site,
        "cfg": cfg,
        "plan": plan,
        "plan_created": as_utc(plan.created_at) if plan else None,
        "rows": rows,
        "chart": chart,
        "page": page,
        "pages": pages,
        "tab": "plan",
    }
    return render(request, "plan.html", ctx)
