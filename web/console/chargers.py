"""Chargers: a paged table, and one charger's detail with commands and its message log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from csms.domain.commands import RawCall
from csms.domain.composite import CompositeSchedule, composite_request, parse_composite
from csms.domain.profiles import ChargerLimits, capabilities_from_stored
from csms.services.audit import AuditFilter
from csms.services.profile_builder import choose_unit, limit_to_watts
from csms.services.queries import Queries
from web.api.deps import RuntimeDep
from web.commands import TRIGGERS, command_for
from web.console.deps import ConsoleDep, OperatorDep, UserDep
from web.console.render import render

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE = 50


def _reservations(plan: Any) -> dict[str, str]:
    if plan is None:
        return {}
    return {r["charge_point_id"]: r["reason"] for r in plan.inputs.get("reservations", []) or []}


@router.get("/chargers", response_class=HTMLResponse)
async def chargers(
    request: Request,
    rt: RuntimeDep,
    q: ConsoleDep,
    user: UserDep,
    site: str = "",
    search: str = "",
    page: int = Query(1, ge=1),
) -> HTMLResponse:
    """Chargers, 50 a page, with connection, version, last seen, capabilities, managed or not."""
    rows = await q.chargers(
        site_id=site or None, search=search, limit=PAGE, offset=(page - 1) * PAGE
    )
    unmanaged: dict[str, str] = {}
    for site_id in {c.site_id for c in rows.rows if c.site_id}:
        unmanaged.update(_reservations(await rt.smart.audit.latest_plan(site_id)))
    ctx = {
        "rows": rows,
        "unmanaged": unmanaged,
        "site_filter": site,
        "search": search,
        "page": page,
        "pages": max(1, -(-rows.total // PAGE)),
        "tab": "chargers",
    }
    return render(request, "chargers.html", ctx)


async def _detail(
    request: Request,
    rt: RuntimeDep,
    q: ConsoleDep,
    charge_point_id: str,
    flash: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    cp = await Queries(rt.sessions).charge_point(charge_point_id)
    if cp is None:
        raise HTTPException(404, f"no charger {charge_point_id!r}")
    plan = await rt.smart.audit.latest_plan(cp.site_id) if cp.site_id else None
    cluster: dict[str, Any] | None = None
    if rt.cluster is not None and cp.site_id and not rt.cluster.leases.is_leader(cp.site_id):
        # Another worker plans this site and knows what it installed: show what the audit log
        # says was last accepted instead of this worker's (empty) memory.
        default_limit_w, installed = await _installed_from_audit(rt, charge_point_id)
    else:
        control = rt.smart.cp_control.get(charge_point_id)
        default_limit_w = None if control is None else control.default_limit_w
        installed = [
            {"transaction_id": tx_id, "limit": c.installed, "reason": c.unmanaged_reason}
            for tx_id, c in rt.smart.tx_control.items()
            if c.key[0] == charge_point_id
        ]
    if rt.cluster is not None:
        lease = await rt.cluster.leases.leases.current(cp.site_id) if cp.site_id else None
        cluster = {
            "this": rt.cluster.settings.worker_id,
            "holder": rt.cluster.directory.holder(charge_point_id)
            or (rt.cluster.settings.worker_id if charge_point_id in rt.ocpp.connections else None),
            "leader": None if lease is None else lease.worker_id,
        }
    ctx = {
        "cp": cp,
        "online": rt.gateway.is_connected(charge_point_id),
        "unmanaged_reason": _reservations(plan).get(charge_point_id),
        "default_limit_w": default_limit_w,
        "installed": installed,
        "cluster": cluster,
        "frames": await q.messages(charge_point_id, 50),
        "commands": await q.commands(charge_point_id, 20),
        "triggers": TRIGGERS,
        "flash": flash,
        "error": error,
        "tab": "chargers",
    }
    return render(request, "charger.html", ctx)


async def _installed_from_audit(
    rt: RuntimeDep, charge_point_id: str
) -> tuple[float | None, list[dict[str, Any]]]:
    """The charger's last accepted TxDefaultProfile limit and, per running session, its last
    accepted TxProfile, as the audit log has them."""
    accepted = await rt.smart.audit.profiles(
        AuditFilter(charge_point_id=charge_point_id, status="Accepted", limit=200)
    )
    default = next((p.limit_w for p in accepted if p.purpose == "TxDefaultProfile"), None)
    running = await Queries(rt.sessions).transactions(active=True, charge_point_id=charge_point_id)
    installed = []
    for tx in running:
        last = next(
            (p for p in accepted if p.purpose == "TxProfile" and p.transaction_id == tx.id), None
        )
        installed.append(
            {
                "transaction_id": tx.id,
                "limit": None if last is None else last.payload,
                "reason": None if last is None else f"plan {last.plan_id} (audit log)",
            }
        )
    return default, installed


@router.get("/chargers/{charge_point_id}", response_class=HTMLResponse)
async def charger(
    charge_point_id: str, request: Request, rt: RuntimeDep, q: ConsoleDep, user: UserDep
) -> HTMLResponse:
    """One charger: state, connectors, installed profiles, commands, recent messages."""
    return await _detail(request, rt, q, charge_point_id)


@router.post("/chargers/{charge_point_id}/commands/{action}", response_class=HTMLResponse)
async def command(
    charge_point_id: str,
    action: str,
    request: Request,
    rt: RuntimeDep,
    q: ConsoleDep,
    user: OperatorDep,
    evse_id: Annotated[int, Form()] = 0,
    message: Annotated[str, Form()] = "",
    id_tag: Annotated[str, Form()] = "",
) -> HTMLResponse:
    """Send a command to the charger and show its answer."""
    try:
        cmd = command_for(action, evse_id, message, id_tag)
    except ValueError as exc:
        return await _detail(request, rt, q, charge_point_id, error=str(exc))
    if not rt.gateway.is_connected(charge_point_id):
        return await _detail(
            request, rt, q, charge_point_id, error=f"{charge_point_id} is not connected"
        )
    result = await rt.gateway.send(charge_point_id, cmd)
    if result.ok:
        return await _detail(
            request, rt, q, charge_point_id, flash=f"{action}: {result.status or 'done'}"
        )
    return await _detail(request, rt, q, charge_point_id, error=f"{action} failed: {result.error}")


COMPOSITE_DURATIONS = (3600, 4 * 3600, 24 * 3600)


def composite_rows(schedule: CompositeSchedule, limits: ChargerLimits) -> list[dict[str, Any]]:
    """The periods of a composite schedule with each limit also in kW (amps converted with the
    charger's phases and voltage; a period's own phase count wins)."""
    rows = []
    for p in schedule.periods:
        own = limits
        if schedule.unit == "A" and p.phases in (1, 2, 3) and p.phases != limits.phases:
            own = ChargerLimits(phases=p.phases, voltage_v=limits.voltage_v)
        rows.append(
            {
                "start": p.start,
                "offset_s": p.offset_s,
                "limit": p.limit,
                "kw": limit_to_watts(p.limit, unit=schedule.unit, limits=own) / 1000.0,
            }
        )
    return rows


@router.get("/chargers/{charge_point_id}/composite", response_class=HTMLResponse)
async def composite(
    charge_point_id: str,
    request: Request,
    rt: RuntimeDep,
    user: UserDep,
    evse_id: Annotated[int, Query(ge=0)] = 1,
    duration: Annotated[int, Query(ge=60, le=7 * 24 * 3600)] = 3600,
) -> HTMLResponse:
    """Ask the charger for its composite schedule (what it will actually allow) and show it.
    Read-only on the charger, so viewers may ask too."""
    cp = await Queries(rt.sessions).charge_point(charge_point_id)
    if cp is None:
        raise HTTPException(404, f"no charger {charge_point_id!r}")
    ctx: dict[str, Any] = {
        "cp": cp,
        "evse_id": evse_id,
        "duration": duration,
        "durations": COMPOSITE_DURATIONS,
        "schedule": None,
        "rows": [],
        "error": None,
    }
    version = cp.ocpp_version or "ocpp1.6"
    unit = choose_unit(capabilities_from_stored(cp.capabilities or {}, version))
    limits = ChargerLimits(
        phases=cp.phases if cp.phases in (1, 2, 3) else 3,
        voltage_v=cp.voltage_v if cp.voltage_v > 0 else 230.0,
    )
    if not rt.gateway.is_connected(charge_point_id):
        ctx["error"] = f"{charge_point_id} is not connected: the charger computes this schedule"
        return render(request, "composite.html", ctx)
    result = await rt.gateway.send(
        charge_point_id,
        RawCall("GetCompositeSchedule", composite_request(version, evse_id, duration, unit)),
    )
    if not result.ok:
        ctx["error"] = f"GetCompositeSchedule failed: {result.error}"
    elif result.status != "Accepted":
        ctx["error"] = f"the charger answered {result.status or 'without a status'}"
    else:
        schedule = parse_composite(result.payload)
        if schedule is None:
            ctx["error"] = "the charger accepted but sent no schedule"
        else:
            ctx["schedule"] = schedule
            ctx["rows"] = composite_rows(schedule, limits)
    return render(request, "composite.html", ctx)
