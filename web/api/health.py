"""GET /api/health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from web.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health(rt: RuntimeDep) -> dict[str, Any]:
    """Liveness and the database's reachability; chargers connected to this process."""
    db_ok = True
    try:
        async with rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - reported in the answer, not raised
        db_ok = False
    return {
        "status": "ok" if db_ok else "degraded",
        "database": "ok" if db_ok else "unreachable",
        "chargers_connected": len(rt.ocpp.connections),
        "ocpp_port": rt.ocpp.port,
    }
