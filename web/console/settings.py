"""Site settings: cap schedule, prices, defaults, method; the site's chargers and their passwords
(and creating a site)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from csms.db.models import Site
from csms.domain.site_config import SiteConfigError
from csms.runtime import Runtime
from csms.services.console import ConsoleQueries
from csms.services.credentials import (
    CredentialError,
    PasswordChange,
    change_password,
    check_password,
    new_password,
)
from web.api.deps import RuntimeDep
from web.console.deps import OperatorDep, UserDep
from web.console.render import render

router = APIRouter(prefix="/console", include_in_schema=False)

METHODS = ("lp", "milp", "heuristic")
CHARGERS_PAGE = 50
# OCPP 2.0.1 identity (identifierString, at most 48) minus ':' (it would end the Basic-auth user)
CHARGER_ID = re.compile(r"[A-Za-z0-9*\-_=+|@.]{1,48}")


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
    return render(request, "settings.html", await _ctx(rt, site_id))


async def _ctx(rt: Runtime, site_id: str, cpage: int = 1, **extra: Any) -> dict[str, Any]:
    """Everything the settings page shows: the site's form and its chargers' credentials."""
    site = await rt.sites.get(site_id)
    if site is None:
        raise HTTPException(404, f"no site {site_id!r}")
    creds = await ConsoleQueries(rt.sessions).credentials(
        site_id, limit=CHARGERS_PAGE, offset=(cpage - 1) * CHARGERS_PAGE
    )
    ctx: dict[str, Any] = {
        "site": site,
        "form": _form(site),
        "methods": METHODS,
        "credentials": creds,
        "cpage": cpage,
        "cpages": max(1, -(-creds.total // CHARGERS_PAGE)),
        "tab": "settings",
    }
    ctx.update(extra)
    return ctx


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
        ctx = await _ctx(rt, site_id, error=str(exc))
        ctx["form"] = raw
        return render(request, "settings.html", ctx, status_code=422)
    await rt.smart.replan(site_id, "settings changed in the console")
    ctx = await _ctx(rt, site_id, flash="saved; the site was re-planned")
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


@router.get("/sites/{site_id}/chargers-credentials", response_class=HTMLResponse)
async def credentials_page(
    site_id: str,
    request: Request,
    rt: RuntimeDep,
    user: UserDep,
    cpage: Annotated[int, Query(ge=1)] = 1,
) -> HTMLResponse:
    """Another page of the site's chargers (the settings page's credentials block)."""
    return render(request, "settings.html", await _ctx(rt, site_id, cpage))


def _kw_number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CredentialError(f"{what}: {text.strip()!r} is not a number") from None


def _secret_shown(response: HTMLResponse) -> HTMLResponse:
    # the page carries a password shown once: keep it out of every cache and history store
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/sites/{site_id}/chargers", response_class=HTMLResponse)
async def register_charger(
    site_id: str,
    request: Request,
    rt: RuntimeDep,
    user: OperatorDep,
    charge_point_id: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    max_power_kw: Annotated[str, Form()] = "",
    phases: Annotated[int, Form()] = 3,
    voltage_v: Annotated[str, Form()] = "230",
) -> HTMLResponse:
    """Register a charger on this site with a password (given, or a random one shown once)."""
    cp_id = charge_point_id.strip()
    try:
        if not CHARGER_ID.fullmatch(cp_id):
            raise CredentialError(
                "a charger id has 1 to 48 of the characters A-Z a-z 0-9 * - _ = + | @ . "
                f"(OCPP identity; no ':' or spaces), not {cp_id!r}"
            )
        existing = await ConsoleQueries(rt.sessions).registration(cp_id)
        if existing is not None:
            where = f"site {existing[0]}" if existing[0] else "no site"
            raise CredentialError(
                f"{cp_id} is already registered (on {where}); use 'New password' to change "
                "its password"
            )
        secret = password or new_password()
        check_password(secret)
        if phases not in (1, 2, 3):
            raise CredentialError("phases must be 1, 2 or 3")
        max_w = _kw_number(max_power_kw, "maximum power") * 1000.0 if max_power_kw.strip() else None
        volts = _kw_number(voltage_v, "phase voltage")
        if (max_w is not None and not 0 < max_w < 1e7) or not 50 <= volts <= 1000:
            raise CredentialError("maximum power must be > 0 kW and voltage 50 to 1000 V")
    except ValueError as exc:  # CredentialError, or a number that is not one
        ctx = await _ctx(rt, site_id, cred_error=str(exc))
        return render(request, "settings.html", ctx, status_code=422)
    await rt.stations.register_charge_point(
        cp_id,
        password=secret,
        site_id=site_id,
        max_power_w=max_w,
        phases=phases,
        voltage_v=volts,
    )
    await rt.smart.replan(site_id, f"charger {cp_id} registered in the console")
    shown = PasswordChange(secret, pushed=False, status=None)
    ctx = await _ctx(rt, site_id, new_secret={"charger": cp_id, "change": shown})
    return _secret_shown(render(request, "settings.html", ctx))


@router.post("/sites/{site_id}/chargers/{charge_point_id}/password", response_class=HTMLResponse)
async def charger_password(
    site_id: str,
    charge_point_id: str,
    request: Request,
    rt: RuntimeDep,
    user: OperatorDep,
    password: Annotated[str, Form()] = "",
    store_only: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Give a charger of this site a new password: pushed to the charger (and stored once it
    accepts), or stored only when the operator configures the charger by hand."""
    registered = await ConsoleQueries(rt.sessions).registration(charge_point_id)
    if registered is None or registered[0] != site_id:
        raise HTTPException(404, f"no charger {charge_point_id!r} on site {site_id!r}")
    version = registered[1]
    try:
        change = await change_password(
            rt.gateway,
            rt.stations,
            charge_point_id,
            version,
            password=password or None,
            store_only=bool(store_only),
        )
    except CredentialError as exc:
        ctx = await _ctx(rt, site_id, cred_error=str(exc))
        return render(request, "settings.html", ctx, status_code=409)
    ctx = await _ctx(rt, site_id, new_secret={"charger": charge_point_id, "change": change})
    return _secret_shown(render(request, "settings.html", ctx))
