"""GET /api/health."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from web.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health(rt: RuntimeDep) -> dict[str, Any]:
    """Liveness, the database's (and in cluster mode Redis's) reachability, chargers connected to
    this process; in cluster mode also this worker's id, the chargers every worker holds and the
    sites this worker leads."""
    db_ok = True
    try:
        async with rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - reported in the answer, not raised
        db_ok = False
    body: dict[str, Any] = {
        "status": "ok" if db_ok else "degraded",
        "database": "ok" if db_ok else "unreachable",
        "chargers_connected": len(rt.ocpp.connections),
        "ocpp_port": rt.ocpp.port,
    }
    if rt.cluster is not None:
        redis_ok = True
        try:
            async with asyncio.timeout(2.0):
                await rt.cluster.redis.ping()
        except Exception:  # noqa: BLE001 - reported in the answer, not raised
            redis_ok = False
        if not redis_ok:
            body["status"] = "degraded"
        body["cluster"] = {
            "worker": rt.cluster.settings.worker_id,
            "redis": "ok" if redis_ok else "unreachable",
            "chargers_in_cluster": len(rt.cluster.directory.snapshot()),
            "leading_sites": sorted(rt.cluster.leases.leading()),
        }
    return body
