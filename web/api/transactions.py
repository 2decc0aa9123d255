"""GET /api/transactions, GET /api/transactions/{id}, PUT /api/transactions/{id}/needs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from csms.db.models import as_utc
from csms.services.queries import TransactionView
from csms.services.sites import NeedsError, NotFoundError
from web.api.deps import INSTANT_RANGE, Instant, KeyFilter, Offset, QueriesDep, RowId, RuntimeDep
from web.api.problems import responses

router = APIRouter(tags=["transactions"])


@router.get("/api/transactions")
async def list_transactions(
    q: QueriesDep,
    active: bool | None = Query(None, description="only running (true) or ended (false) ones"),
    charge_point_id: KeyFilter = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: Offset = 0,
) -> list[TransactionView]:
    """Transactions of both OCPP versions, newest first."""
    return await q.transactions(
        active=active, charge_point_id=charge_point_id, limit=limit, offset=offset
    )


@router.get("/api/transactions/{transaction_id}", responses=responses(404))
async def get_transaction(transaction_id: RowId, q: QueriesDep) -> TransactionView:
    """One transaction with its meter values and the energy delivered so far."""
    tx = await q.transaction(transaction_id)
    if tx is None:
        raise HTTPException(404, f"no transaction {transaction_id}")
    return tx


class NeedsBody(BaseModel):
    """What the driver or operator says the session needs (all optional)."""

    departure: Instant | None = Field(None, description=f"when the vehicle leaves, {INSTANT_RANGE}")
    energy_kwh: float | None = Field(None, ge=0, le=1000, description="energy to deliver")
    max_power_kw: float | None = Field(None, gt=0, le=1000, description="the vehicle's limit")


@router.put(
    "/api/transactions/{transaction_id}/needs",
    responses=responses(403, 404, 409),
)
async def put_needs(transaction_id: RowId, body: NeedsBody, rt: RuntimeDep) -> dict[str, Any]:
    """Set the session's needs (source ``operator``); the EV's own ISO 15118 values still take
    precedence field by field. The site is re-planned."""
    try:
        row = await rt.sites.set_needs(
            transaction_id,
            departure=body.departure,
            energy_wh=None if body.energy_kwh is None else body.energy_kwh * 1000.0,
            max_power_w=None if body.max_power_kw is None else body.max_power_kw * 1000.0,
        )
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except NeedsError as exc:
        raise HTTPException(409, str(exc)) from None
    departure = as_utc(row.departure)
    return {
        "transaction_id": transaction_id,
        "source": "operator",
        "departure": departure.isoformat() if departure else None,
        "energy_kwh": None if row.energy_wh is None else row.energy_wh / 1000.0,
        "max_power_kw": None if row.max_power_w is None else row.max_power_w / 1000.0,
    }
