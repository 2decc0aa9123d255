"""Sites: settings, capacity (cap schedule), current plan, re-plan, KPIs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from csms.db.models import as_utc
from csms.domain.site_config import SiteConfigError, site_config_from_row
from csms.services.site_kpis import site_kpis
from csms.services.site_state import load_site
from csms.services.sites import site_to_dict
from csms.services.what_if import NeedsEdit, WhatIf, apply_what_if
from web.api.deps import INSTANT_RANGE, Instant, Key, RuntimeDep
from web.api.problems import invalid, responses

router = APIRouter(tags=["sites"])

# Upper bounds on what a site may be told. The planner and the KPIs compute with these values
# (times shifted by the dwell, energy times price, sums over steps): without bounds a finite but
# huge number overflows there, in a background re-plan or a later GET, instead of being refused.
MAX_SITE_KW: Final = 1e6  # a 1 GW transformer
MAX_VEHICLE_KW: Final = 1000.0  # as for a session's needs
MAX_VEHICLE_KWH: Final = 1000.0
MAX_DWELL_HOURS: Final = 8760.0  # a year
MAX_HORIZON_HOURS: Final = 2880.0  # the planner's 2880 steps of at most 60 minutes
MAX_PRICE: Final = 1e6  # per kWh, either sign


class ScheduleEntry(BaseModel):
    """From this local time of day until the next entry's."""

    from_: str = Field(..., alias="from", description='local time of day "HH:MM"')
    kw: float = Field(..., ge=0, le=MAX_SITE_KW, description="cap in kW")


class PriceEntry(BaseModel):
    """From this local time of day until the next entry's."""

    from_: str = Field(..., alias="from", description='local time of day "HH:MM"')
    price: float = Field(..., ge=-MAX_PRICE, le=MAX_PRICE, description="energy price per kWh")


class Capacity(BaseModel):
    """A site's transformer cap: a base value and an optional time-of-day schedule."""

    capacity_kw: float = Field(
        ..., ge=0, le=MAX_SITE_KW, description="cap when no schedule entry applies (kW)"
    )
    capacity_schedule: list[ScheduleEntry] | None = Field(
        None, description="time-of-day caps in the site's time zone (replaces the old schedule)"
    )
    safety_margin_kw: float | None = Field(
        None, ge=0, le=MAX_SITE_KW, description="kept free below the cap"
    )


class SiteSettings(BaseModel):
    """Any subset of a site's settings (see README, "Sites")."""

    name: str | None = Field(None, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
    timezone: str | None = Field(
        None, max_length=64, description="IANA time zone, e.g. Europe/Berlin"
    )
    capacity_kw: float | None = Field(None, ge=0, le=MAX_SITE_KW)
    capacity_schedule: list[ScheduleEntry] | None = None
    price_schedule: list[PriceEntry] | None = None
    safety_margin_kw: float | None = Field(None, ge=0, le=MAX_SITE_KW)
    tx_default_kw: float | None = Field(None, ge=0, le=MAX_VEHICLE_KW)
    default_dwell_hours: float | None = Field(None, gt=0, le=MAX_DWELL_HOURS)
    default_energy_kwh: float | None = Field(None, ge=0, le=MAX_VEHICLE_KWH)
    default_charger_max_kw: float | None = Field(None, gt=0, le=MAX_VEHICLE_KW)
    method: Literal["lp", "milp", "heuristic"] | None = None
    step_minutes: float | None = Field(None, ge=1, le=60)
    horizon_hours: float | None = Field(None, gt=0, le=MAX_HORIZON_HOURS)
    smart_charging: bool | None = None


def _capacity(site: Any, now: datetime) -> dict[str, Any]:
    cfg = site_config_from_row(site)
    return {
        "site_id": site.id,
        "capacity_kw": site.capacity_kw,
        "capacity_schedule": site.capacity_schedule,
        "safety_margin_kw": site.safety_margin_kw,
        "timezone": site.timezone,
        "cap_now_kw": cfg.cap_at(now),
        "lowest_cap_kw": cfg.lowest_cap_kw,
    }


@router.get("/api/sites")
async def list_sites(rt: RuntimeDep) -> list[dict[str, Any]]:
    """Every site and its settings."""
    return [site_to_dict(s) for s in await rt.sites.all_sites()]


@router.get("/api/sites/{site_id}", responses=responses(404))
async def get_site(site_id: Key, rt: RuntimeDep) -> dict[str, Any]:
    """A site's settings."""
    site = await rt.sites.get(site_id)
    if site is None:
        raise HTTPException(404, f"no site {site_id!r}")
    return site_to_dict(site)


@router.put("/api/sites/{site_id}", responses=responses(403, 422))
async def put_site(site_id: Key, body: SiteSettings, rt: RuntimeDep) -> dict[str, Any]:
    """Create a site or change the settings given (the others stay); the site is re-planned."""
    changes = body.model_dump(exclude_none=True, by_alias=True)  # schedules: "from"
    try:
        site = await rt.sites.upsert(site_id, changes)
    except SiteConfigError as exc:
        raise invalid("body", str(exc)) from None
    return site_to_dict(site)


@router.get("/api/sites/{site_id}/capacity", responses=responses(404))
async def get_capacity(site_id: Key, rt: RuntimeDep) -> dict[str, Any]:
    """The cap: base, time-of-day schedule, margin, and the value in force now."""
    site = await rt.sites.get(site_id)
    if site is None:
        raise HTTPException(404, f"no site {site_id!r}")
    return _capacity(site, rt.clock.now())


@router.put("/api/sites/{site_id}/capacity", responses=responses(403, 404, 422))
async def put_capacity(site_id: Key, body: Capacity, rt: RuntimeDep) -> dict[str, Any]:
    """Change the cap at run time. The site is re-planned at once: chargers that must go down are
    lowered (and confirmed) before any is raised."""
    changes: dict[str, Any] = {"capacity_kw": body.capacity_kw}
    if body.capacity_schedule is not None:
        changes["capacity_schedule"] = [
            {"from": e.from_, "kw": e.kw} for e in body.capacity_schedule
        ]
    if body.safety_margin_kw is not None:
        changes["safety_margin_kw"] = body.safety_margin_kw
    if await rt.sites.get(site_id) is None:
        raise HTTPException(404, f"no site {site_id!r}")
    try:
        site = await rt.sites.upsert(site_id, changes)
    except SiteConfigError as exc:
        raise invalid("body", str(exc)) from None
    await rt.smart.replan(site_id, "capacity changed")
    return _capacity(site, rt.clock.now())


@router.get("/api/sites/{site_id}/plan", responses=responses(404))
async def get_plan(site_id: Key, rt: RuntimeDep) -> dict[str, Any]:
    """The site's current plan: per session (charger, EVSE, transaction) the power per step."""
    if await rt.sites.get(site_id) is None:
        raise HTTPException(404, f"no site {site_id!r}")
    plan = await rt.smart.audit.latest_plan(site_id)
    if plan is None:
        raise HTTPException(404, f"site {site_id!r} has not been planned yet")
    return _plan_json(plan)


def _plan_json(plan: Any) -> dict[str, Any]:
    created = as_utc(plan.created_at)
    return {
        "plan_id": plan.id,
        "site_id": plan.site_id,
        "created_at": created.isoformat() if created else None,
        "trigger": plan.trigger,
        "method": plan.method,
        "status": plan.status,
        "fallback_reason": plan.fallback_reason,
        "capacity_kw": plan.capacity_kw,
        "reserved_kw": plan.reserved_kw,
        "kpis": plan.kpis,
        "timings": plan.timings,
        "warnings": plan.warnings,
        **plan.plan,
    }


class WhatIfNeeds(BaseModel):
    """What a session would need instead (unset fields: as now)."""

    transaction_id: int = Field(..., ge=1, le=2**53, description="the session (database id)")
    departure: Instant | None = Field(None, description=f"when it leaves, {INSTANT_RANGE}")
    energy_kwh: float | None = Field(None, ge=0, le=MAX_VEHICLE_KWH, description="energy wanted")


class WhatIfBody(BaseModel):
    """Changes to preview (all optional): the cap, its schedule, sessions' needs."""

    capacity_kw: float | None = Field(
        None, ge=0, le=MAX_SITE_KW, description="cap when no schedule entry applies (kW)"
    )
    capacity_schedule: list[ScheduleEntry] | None = Field(
        None, description="time-of-day caps in the site's time zone (replaces the schedule)"
    )
    needs: list[WhatIfNeeds] = Field(default_factory=list, max_length=10_000)


def _preview_json(plan: Any) -> dict[str, Any]:
    out = _plan_json(plan)
    del out["plan_id"]  # a preview is not stored: it has no id
    return out


@router.post("/api/sites/{site_id}/what-if", responses=responses(403, 404, 422))
async def what_if(site_id: Key, body: WhatIfBody, rt: RuntimeDep) -> dict[str, Any]:
    """Preview the plan under another cap or other needs next to a fresh plan of the site as it
    is (same reservations, same method). Nothing is stored or sent; apply with PUT capacity and
    PUT needs."""
    site = await load_site(rt.sessions, site_id)
    if site is None:
        raise HTTPException(404, f"no site {site_id!r}")
    what = WhatIf(
        capacity_kw=body.capacity_kw,
        capacity_schedule=None
        if body.capacity_schedule is None
        else [{"from": e.from_, "kw": e.kw} for e in body.capacity_schedule],
        needs={
            n.transaction_id: NeedsEdit(
                departure=n.departure,
                energy_wh=None if n.energy_kwh is None else n.energy_kwh * 1000.0,
            )
            for n in body.needs
        },
    )
    unknown = sorted(set(what.needs) - {tx.id for tx in site.transactions})
    if unknown:
        raise invalid(
            "body.needs",
            f"no active session {', '.join(map(str, unknown))} on site {site_id!r}",
        )
    try:
        edited = apply_what_if(site, what)
    except SiteConfigError as exc:
        raise invalid("body", str(exc)) from None
    before = await rt.smart.preview(site, "what-if: as now")
    after = await rt.smart.preview(edited, "what-if")
    return {"as_now": _preview_json(before), "what_if": _preview_json(after)}


@router.post("/api/sites/{site_id}/replan", responses=responses(403, 404, 409))
async def replan(site_id: Key, rt: RuntimeDep) -> dict[str, Any]:
    """Plan the site now and send the profiles; answers once the chargers have answered."""
    site = await rt.sites.get(site_id)
    if site is None:
        raise HTTPException(404, f"no site {site_id!r}")
    if not site.smart_charging or not rt.settings.smart_charging.enabled:
        raise HTTPException(409, f"smart charging is off for site {site_id!r}")
    if rt.cluster is not None and not rt.cluster.leases.is_leader(site_id):
        lease = await rt.cluster.leases.leases.current(site_id)
        leader = f"worker {lease.worker_id} leads it" if lease else "no worker leads it yet"
        raise HTTPException(
            409,
            f"this worker ({rt.cluster.settings.worker_id}) does not plan site {site_id!r}: "
            f"{leader}; send the request to that worker's own address, or change the site "
            "(every change is re-planned by its leader)",
        )
    plan_id = await rt.smart.replan(site_id, "operator request")
    plan = await rt.smart.audit.plan(plan_id) if plan_id is not None else None
    if plan is None:
        raise HTTPException(409, f"site {site_id!r} could not be planned")
    return _plan_json(plan)


@router.get("/api/sites/{site_id}/kpis", responses=responses(404, 422))
async def kpis(
    site_id: Key,
    rt: RuntimeDep,
    since: Annotated[
        Instant | None, Query(description=f"window start (default: 24 h ago), {INSTANT_RANGE}")
    ] = None,
    until: Annotated[
        Instant | None, Query(description=f"window end (default: now), {INSTANT_RANGE}")
    ] = None,
) -> dict[str, Any]:
    """Requested vs delivered energy, served ratio, metered peak vs cap, profile compliance, and
    the latest plan's planned figures."""
    end = until or rt.clock.now()
    start = since or end - timedelta(hours=24)
    if start >= end:
        until_is = f"until ({end})" if until else f"until (now, {end})"
        raise invalid("query.since", f"since ({start}) must be before {until_is}")
    out = await site_kpis(rt.sessions, site_id, start, end)
    if out is None:
        raise HTTPException(404, f"no site {site_id!r}")
    return out
