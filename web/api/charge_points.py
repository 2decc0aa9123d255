"""GET /api/charge-points, GET /api/charge-points/{id}, POST /api/charge-points/{id}/commands."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from csms.services.queries import ChargePointView
from web.api.deps import Key, Offset, QueriesDep, RuntimeDep
from web.api.problems import invalid, responses
from web.commands import TRIGGERS, Action, command_for

router = APIRouter(tags=["charge points"])


@router.get("/api/charge-points")
async def list_charge_points(
    q: QueriesDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: Offset = 0,
) -> list[ChargePointView]:
    """Chargers, by id, with connector status and capabilities."""
    return await q.charge_points(limit=limit, offset=offset)


@router.get("/api/charge-points/{charge_point_id}", responses=responses(404))
async def get_charge_point(charge_point_id: Key, q: QueriesDep) -> ChargePointView:
    """One charger."""
    cp = await q.charge_point(charge_point_id)
    if cp is None:
        raise HTTPException(404, f"no charge point {charge_point_id!r}")
    return cp


class CommandRequest(BaseModel):
    """A command for a charger, as the console's buttons send it."""

    action: Action = Field(description="reset, hard-reset, unlock, trigger, clear-profile, start")
    evse_id: int = Field(0, ge=0, le=1000, description="EVSE / connector (0: the charger)")
    message: str = Field(
        "", max_length=40, description=f"trigger: the message asked for ({', '.join(TRIGGERS)})"
    )
    id_tag: str = Field("", max_length=36, description="start: the id token (default OPERATOR)")


@router.post(
    "/api/charge-points/{charge_point_id}/commands", responses=responses(403, 404, 409, 422)
)
async def send_command(
    charge_point_id: Key, body: CommandRequest, rt: RuntimeDep, q: QueriesDep
) -> dict[str, Any]:
    """Send a command and wait for the charger's answer (in cluster mode through whichever
    worker holds its connection). A charger that answers with an error or not at all is still a
    200: ``ok`` false and ``error`` say what happened."""
    try:
        command = command_for(body.action, body.evse_id, body.message, body.id_tag)
    except ValueError as exc:
        raise invalid("body.message", str(exc)) from None
    if await q.charge_point(charge_point_id) is None:
        raise HTTPException(404, f"no charge point {charge_point_id!r}")
    if not rt.gateway.is_connected(charge_point_id):
        raise HTTPException(409, f"charge point {charge_point_id!r} is not connected")
    result = await rt.gateway.send(charge_point_id, command)
    return {
        "ok": result.ok,
        "status": result.status,
        "error": result.error,
        "payload": result.payload,
        "latency_s": round(result.latency_s, 4),
    }
