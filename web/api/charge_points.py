"""GET /api/charge-points, GET /api/charge-points/{id}."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query

from csms.services.queries import ChargePointView
from web.api.deps import Key, Offset, QueriesDep
from web.api.problems import responses

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
