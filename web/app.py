"""The FastAPI application. Its lifespan starts and stops the central system runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from csms import runtime as csms_runtime
from csms.domain.clock import Clock
from csms.settings import Settings
from web.api import audit, charge_points, health, plan, problems, sites, transactions


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """Build the app for these settings (nothing is started until the lifespan runs)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with csms_runtime.run(settings, clock) as rt:
            app.state.runtime = rt
            yield

    app = FastAPI(
        title="EV smart-charging central system",
        version="0.1.0",
        description="OCPP 1.6J / 2.0.1 central system with an optimal planner in the loop.",
        lifespan=lifespan,
    )
    problems.install(app)
    for router in (
        health.router,
        charge_points.router,
        transactions.router,
        sites.router,
        plan.router,
        audit.router,
    ):
        app.include_router(router)
    return app
