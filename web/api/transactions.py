"""GET /api/transactions, GET /api/transactions/{id}."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query

from csms.services.queries import TransactionView
from web.api.deps import QueriesDep

router = APIRouter(tags=["transactions"])


@router.get("/api/transactions")
async def list_transactions(
    q: QueriesDep,
    active: bool | None = Query(None, description="only running (true) or ended (false) ones"),
    charge_point_id: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> list[TransactionView]:
    """Transactions of both OCPP versions, newest first."""
    return await q.transactions(
        active=active, charge_point_id=charge_point_id, limit=limit, offset=offset
    )


@router.get("/api/transactions/{transaction_id}")
async def get_transaction(transaction_id: int, q: QueriesDep) -> TransactionView:
    """One transaction with its meter values and the energy delivered so far."""
    tx = await q.transaction(transaction_id)
    if tx is None:
        raise HTTPException(404, f"no transaction {transaction_id}")
    return tx
