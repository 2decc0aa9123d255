"""The central system and the simulator together, in one process on a shared replay clock: the
simulator's chargers connect over real websockets to the central system's OCPP port (port 0)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from charge_point_sim.charger_model import Capabilities, ChargerSpec, ConnectorSpec
from charge_point_sim.driver import Arrival, SessionRequest
from charge_point_sim.ev_model import Ev
from charge_point_sim.quirks import Quirks
from charge_point_sim.runner import ChargerConfig, ChargerRun, report, run_site
from charge_point_sim.station import Station
from csms.domain.clock import ScaledClock
from csms.runtime import Runtime
from csms.settings import (
    DatabaseSettings,
    OcppSettings,
    Settings,
    SmartChargingSettings,
)
from web.app import create_app

START = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SimCharger:
    """One simulated charger with one connector."""

    id: str
    version: str = "1.6"
    max_kw: float = 11.0
    phases: int = 3
    quirks: Quirks = field(default_factory=Quirks)
    supports_profiles: bool = True

    @property
    def spec(self) -> ChargerSpec:
        """Its hardware."""
        return ChargerSpec(
            (ConnectorSpec(self.max_kw * 1000, self.phases),),
            capabilities=Capabilities(supports_profiles=self.supports_profiles),
        )


def vehicle(
    at_min: float,
    stay_h: float,
    energy_kwh: float,
    *,
    max_kw: float = 11.0,
    phases: int = 3,
    iso15118: bool = False,
    tag: str = "CAR",
) -> tuple[datetime, SessionRequest]:
    """A vehicle arriving ``at_min`` minutes after START for ``stay_h`` hours wanting energy."""
    at = START + timedelta(minutes=at_min)
    departure = at + timedelta(hours=stay_h)
    ev = Ev(
        capacity_kwh=max(60.0, energy_kwh * 1.5),
        soc=0.2,
        max_power_w=max_kw * 1000,
        phases=phases,
        energy_needed_wh=energy_kwh * 1000,
        departure=departure,
        iso15118=iso15118,
    )
    return at, SessionRequest(connector_id=1, ev=ev, id_tag=tag, departure=departure)


@dataclass
class E2E:
    """A running central system (its runtime, an HTTP client on its API, the shared clock) and,
    once the chargers stopped, the simulator's report."""

    rt: Runtime
    http: httpx.AsyncClient
    clock: ScaledClock
    report: dict[str, Any] = field(default_factory=dict)


async def run_e2e(
    db_url: str,
    chargers: Sequence[SimCharger],
    arrivals: dict[str, list[tuple[datetime, SessionRequest]]],
    *,
    site: dict[str, Any],
    hours: float,
    speed: float = 600.0,
    during: Callable[[E2E], Coroutine[Any, Any, None]] | None = None,
    smart: dict[str, Any] | None = None,
    check: Callable[[E2E], Coroutine[Any, Any, None]] | None = None,
) -> dict[str, Any]:
    """Run the site for ``hours`` of replayed time; ``during`` runs alongside (fault injection),
    ``check`` inspects the central system after the chargers stopped (before it shuts down)."""
    import asyncio

    clock = ScaledClock(START, speed)
    settings = Settings(
        ocpp=OcppSettings(
            host="127.0.0.1", port=0, response_timeout_s=5, accept_unknown_id_tokens=True
        ),
        database=DatabaseSettings(url=db_url),
        smart_charging=SmartChargingSettings(
            **{
                "coalesce_s": 0.05,
                "solve_time_limit_s": 2.0,
                "call_timeout_s": 3.0,
                **(smart or {}),
            }
        ),
    )
    app = create_app(settings, clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http,
    ):
        rt: Runtime = app.state.runtime
        # the API wants a token (web.auth_required is on by default)
        http.headers["Authorization"] = "Bearer " + await rt.users.create_token("e2e", "operator")
        ctx = E2E(rt, http, clock)
        await rt.sites.upsert("S1", {"timezone": "UTC", **site})
        for c in chargers:
            await rt.stations.register_charge_point(
                c.id, site_id="S1", max_power_w=c.max_kw * 1000, phases=c.phases
            )
        runs = [
            ChargerRun(
                ChargerConfig(c.id, c.version, c.spec, quirks=c.quirks),
                Station(c.spec, START),
            )
            for c in chargers
        ]
        plays = {cid: [Arrival(at, req) for at, req in items] for cid, items in arrivals.items()}
        until = START + timedelta(hours=hours)
        url = f"ws://127.0.0.1:{rt.ocpp.port}/ocpp"
        async with asyncio.TaskGroup() as tg:
            side = tg.create_task(during(ctx)) if during is not None else None
            await run_site(runs, url, clock, plays, until)
            if side is not None and not side.done():
                side.cancel()
        ctx.report = report(runs, START, clock.now(), speed, url)
        if check is not None:
            await check(ctx)
        return ctx.report
