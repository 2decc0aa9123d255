"""Site settings: cap schedule, prices, defaults, method (and creating a site)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from csms.db.models import Site
from csms.domain.site_config import SiteConfigError
from web.api.deps import RuntimeDep
from web.console.deps import OperatorDep, UserDep
from web.console.render import render

router = APIRouter(prefix="/console", include_in_schema=False)

METHODS = ("lp", "milp", "heuristic")


def schedule_text(entries: list[dict[str, Any]], key: str) -> str:
    """A schedule as editable lines ``HH:MM value``."""
    return "\n".join(f"{e['from']} {e[key]:g}" for e in entries)


def parse_schedule_text(text: str, key: str, name: str) -> list[dict[str, Any]]:
    """Lines ``HH:MM value`` (blank lines ignored) → schedule entries; the message names the line
    that is wrong. Times and values are checked again by the site's validation."""
    out: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 2:
            raise SiteConfigError(f"{name}, line {n}: write 'HH:MM {key}', e.g. '07:00 40'")
        try:
            value = float(parts[1])
        except ValueError:
            raise SiteConfigError(f"{name}, line {n}: {parts[1]!r} is not a number") from None
        out.append({"from": parts[0], key: value})
    return out


def _form(site: Site) -> dict[str, Any]:
    return {
        "name": site.name,
        "timezone": site.timezone,
        "capacity_kw": site.capacity_kw,
        "capacity_schedule": schedule_text(site.capacity_schedule, "kw"),
        "price_schedule": schedule_text(site.price_schedule, "price"),
        "safety_margin_kw": site.safety_margin_kw,
        "tx_default_kw": site.tx_default_kw,
        "default_dwell_hours": site.default_dwell_hours,
        "default_energy_kwh": site.default_energy_kwh,
        "default_charger_max_kw": site.default_charger_max_kw,
        "method": site.method,
        "smart_charging": site.smart_charging,
    }


@router.get("/sites/{site_id}/settings", response_class=HTMLResponse)
async def settings(site_id: str, request: Request, rt: RuntimeDep, user: UserDep) -> HTMLResponse:
    """The site's settings form."""
    site = await rt.sites.get(site_id)
    if site is None:
        raise HTTPException(404, f"no site {site_id!r}")
    ctx = {"site": site, "form": _form(site), "methods": METHODS, "tab": "settings"}
    return render(request, "settings.html", ctx)


@router.post("/sites/{site_id}/settings", response_class=HTMLResponse)
async def save_settings(
    site_id: str,
    request: Request,
    rt: RuntimeDep,
    user: OperatorDep,
    name: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "UTC",
    capacity_kw: Annotated[str, Form()] = "0",
    capacity_schedule: Annotated[str, Form()] = "",
    price_schedule: Annotated[str, Form()] = "",
    safety_margin_kw: Annotated[str, Form()] = "0",
    tx_default_kw: Annotated[str, Form()] = "0",
    default_dwell_hours: Annotated[str, Form()] = "8",
    default_energy_kwh: Annotated[str, Form()] = "20",
    default_charger_max_kw: Annotated[str, Form()] = "22",
    method: Annotated[str, Form()] = "milp",
    smart_charging: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Validate and store the settings, then re-plan the site (answers once the chargers have
    their new profiles, so the pages show the new plan)."""
    site = await rt.sites.get(site_id)
    if site is None:
        raise HTTPException(404, f"no site {site_id!r}")
    raw = {
        "name": name,
        "timezone": timezone,
        "capacity_kw": capacity_kw,
        "capacity_schedule": capacity_schedule,
        "price_schedule": price_schedule,
        "safety_margin_kw": safety_margin_kw,
        "tx_default_kw": tx_default_kw,
        "default_dwell_hours": default_dwell_hours,
        "default_energy_kwh": default_energy_kwh,
        "default_charger_max_kw": default_charger_max_kw,
        "method": method,
        "smart_charging": bool(smart_charging),
    }
    try:
        changes = _changes(raw)
        site = await rt.sites.upsert(site_id, changes)
    except SiteConfigError as exc:
        ctx = {
            "site": site,
            "form": raw,
            "methods": METHODS,
            "error": str(exc),
            "tab": "settings",
        }
        return render(request, "settings.html", ctx, status_code=422)
    await rt.smart.replan(site_id, "settings changed in the console")
    ctx = {
        "site": site,
        "form": _form(site),
        "methods": METHODS,
        "flash": "saved; the site was re-planned",
        "tab": "settings",
    }
    return render(request, "settings.html", ctx)


def _changes(raw: dict[str, Any]) -> dict[str, Any]:
    numbers = (
        "capacity_kw",
        "safety_margin_kw",
        "tx_default_kw",
        "default_dwell_hours",
        "default_energy_kwh",
        "default_charger_max_kw",
    )
    out: dict[str, Any] = {
        "name": raw["name"].strip(),
        "timezone": raw["timezone"].strip() or "UTC",
        "method": raw["method"],
        "smart_charging": raw["smart_charging"],
    }
    if raw["method"] not in METHODS:
        raise SiteConfigError(f"method must be one of {', '.join(METHODS)}")
    for key in numbers:
        try:
            out[key] = float(raw[key])
        except ValueError:
            raise SiteConfigError(
                f"{key.replace('_', ' ')}: {raw[key]!r} is not a number"
            ) from None
    out["capacity_schedule"] = parse_schedule_text(raw["capacity_schedule"], "kw", "cap schedule")
    out["price_schedule"] = parse_schedule_text(raw["price_schedule"], "price", "price schedule")
    return out


@router.get("/new-site", response_class=HTMLResponse)
async def new_site(request: Request, user: UserDep) -> HTMLResponse:
    """A form to create the first (or another) site."""
    return render(request, "new_site.html", {"tab": "settings"})


@router.post("/new-site", response_model=None)
async def create_site(
    request: Request,
    rt: RuntimeDep,
    user: OperatorDep,
    site_id: Annotated[str, Form()],
    capacity_kw: Annotated[float, Form()],
    timezone: Annotated[str, Form()] = "UTC",
) -> Response:
    """Create a site and open its settings."""
    site_id = site_id.strip()
    if not site_id or len(site_id) > 64:
        return render(
            request, "new_site.html", {"error": "a site id of 1 to 64 characters"}, status_code=422
        )
    if await rt.sites.get(site_id) is not None:
        return render(
            request, "new_site.html", {"error": f"site {site_id!r} exists"}, status_code=409
        )
    try:
        await rt.sites.upsert(site_id, {"capacity_kw": capacity_kw, "timezone": timezone})
    except SiteConfigError as exc:
        return render(request, "new_site.html", {"error": str(exc)}, status_code=422)
    return RedirectResponse(f"/console/sites/{site_id}/settings", status_code=303)
