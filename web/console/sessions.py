"""Sessions of a site: needs and where they came from, energy delivered, inline edit, stop."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from csms.domain.commands import StopCharging
from csms.domain.site_config import site_config_from_row
from csms.services.sites import NeedsError, NotFoundError
from web.api.deps import RuntimeDep
from web.console.deps import ConsoleDep, OperatorDep, UserDep
from web.console.render import render

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE = 50


async def _page(
    request: Request,
    rt: RuntimeDep,
    q: ConsoleDep,
    site_id: str,
    page: int,
    flash: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    site = await rt.sites.get(site_id)
    if site is None:
        raise HTTPException(404, f"no site {site_id!r}")
    active = await q.site_sessions(site_id, active=True, limit=PAGE, offset=(page - 1) * PAGE)
    recent = await q.site_sessions(site_id, active=False, limit=20)
    ctx: dict[str, Any] = {
        "site": site,
        "cfg": site_config_from_row(site),
        "active": active,
        "recent": recent,
        "page": page,
        "pages": max(1, -(-active.total // PAGE)),
        "power_now": {
            tx_id: c.power_w / 1000.0
            for tx_id, c in rt.smart.tx_control.items()
            if c.power_w is not None
        },
        "flash": flash,
        "error": error,
        "tab": "sessions",
    }
    return render(request, "sessions.html", ctx, status_code=status_code)


@router.get("/sites/{site_id}/sessions", response_class=HTMLResponse)
async def sessions(
    site_id: str,
    request: Request,
    rt: RuntimeDep,
    q: ConsoleDep,
    user: UserDep,
    page: int = Query(1, ge=1),
) -> HTMLResponse:
    """Active sessions (paged) and the 20 most recent ended ones."""
    return await _page(request, rt, q, site_id, page)


def parse_local(value: str, tz: str) -> datetime | None:
    """A ``datetime-local`` form value, read in the site's time zone (blank: None)."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"departure {value!r} is not a date and time (YYYY-MM-DDTHH:MM)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(tz))


@router.post("/sites/{site_id}/sessions/{transaction_id}/needs", response_class=HTMLResponse)
async def set_needs(
    site_id: str,
    transaction_id: int,
    request: Request,
    rt: RuntimeDep,
    q: ConsoleDep,
    user: OperatorDep,
    departure: Annotated[str, Form()] = "",
    energy_kwh: Annotated[str, Form()] = "",
    departure_shown: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Set a session's departure and energy (source ``operator``; blank: not the operator's
    say); the site is re-planned."""
    site = await rt.sites.get(site_id)
    if site is None:
        raise HTTPException(404, f"no site {site_id!r}")
    try:
        when = parse_local(departure, site.timezone)
        if departure.strip() == departure_shown.strip() and not await q.operator_departure(
            transaction_id
        ):
            # left as shown (the EV's or the site's default): do not pin it as the operator's
            when = None
        energy = float(energy_kwh) if energy_kwh.strip() else None
        if energy is not None and not 0 <= energy <= 1000:
            raise ValueError("energy must be between 0 and 1000 kWh")
        await rt.sites.set_needs(
            transaction_id,
            departure=when,
            energy_wh=None if energy is None else energy * 1000.0,
            max_power_w=None,
        )
    except (NotFoundError, NeedsError, ValueError) as exc:
        return await _page(request, rt, q, site_id, 1, error=str(exc), status_code=422)
    return await _page(request, rt, q, site_id, 1, flash=f"needs of session {transaction_id} set")


@router.post("/sites/{site_id}/sessions/{transaction_id}/stop", response_class=HTMLResponse)
async def stop(
    site_id: str,
    transaction_id: int,
    request: Request,
    rt: RuntimeDep,
    q: ConsoleDep,
    user: OperatorDep,
) -> HTMLResponse:
    """Ask the charger to stop the transaction (RemoteStop / RequestStopTransaction)."""
    tx = await q.transaction(transaction_id)
    if tx is None:
        raise HTTPException(404, f"no transaction {transaction_id}")
    if not tx.active:
        return await _page(
            request, rt, q, site_id, 1, error=f"session {transaction_id} has already ended"
        )
    result = await rt.gateway.send(tx.charge_point_id, StopCharging(tx.ocpp_id))
    if result.ok and result.status == "Accepted":
        return await _page(
            request, rt, q, site_id, 1, flash=f"stop of session {transaction_id} accepted"
        )
    why = result.error or f"answer {result.status}"
    return await _page(
        request, rt, q, site_id, 1, error=f"{tx.charge_point_id} did not stop it: {why}"
    )
