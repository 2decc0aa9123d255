"""Browser tests: the app served by uvicorn on a free port, a simulated site (the simulator's
chargers over real websockets on a shared replay clock), and Debian's Chromium driven by
Playwright. Without Chromium or Playwright the tests skip and say why."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from charge_point_sim.driver import Arrival
from charge_point_sim.runner import ChargerConfig, ChargerRun, run_site
from charge_point_sim.station import Station
from csms.domain.clock import ScaledClock
from csms.runtime import Runtime
from csms.services.queries import Queries
from csms.settings import DatabaseSettings, OcppSettings, Settings, WebSettings
from tests.e2e.harness import SimCharger, vehicle
from web.app import create_app

CHROMIUM = os.environ.get("CSMS_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots"
START = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
SPEED = 60.0
OPERATOR = ("olga", "operator-password")
VIEWER = ("viktor", "viewer-password")

try:
    from playwright.async_api import Browser, async_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    async_playwright = None  # type: ignore[assignment]


def _why_no_browser() -> str | None:
    if async_playwright is None:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CSMS_TEST_CHROMIUM)"
    return None


@dataclass
class LiveSite:
    """A running central system with a simulated site, and where to reach it."""

    base: str
    rt: Runtime
    clock: ScaledClock
    runs: list[ChargerRun]


CHARGERS = (
    SimCharger("CP-16-A", "1.6"),
    SimCharger("CP-16-B", "1.6"),
    SimCharger("CP-201-A", "2.0.1"),
    SimCharger("CP-201-B", "2.0.1", max_kw=7.4, phases=1),
)


@pytest.fixture
async def live_site(tmp_path: Path) -> AsyncIterator[LiveSite]:
    """Site S1 (22 kW) with four simulated chargers; vehicles arrive in the first replayed
    minutes and stay for hours. Users: an operator and a viewer."""
    why = _why_no_browser()
    if why is not None:
        pytest.skip(why)
    clock = ScaledClock(START, SPEED)
    settings = Settings(
        ocpp=OcppSettings(host="127.0.0.1", port=0, accept_unknown_id_tokens=True),
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'csms.db'}"),
        # plain HTTP on loopback: a Secure-only cookie would not come back
        web=WebSettings(host="127.0.0.1", port=0, cookie_secure=False),
    )
    app = create_app(settings, clock)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    rt: Runtime = app.state.runtime
    await rt.sites.upsert(
        "S1", {"name": "Depot", "timezone": "UTC", "capacity_kw": 22.0, "method": "lp"}
    )
    for c in CHARGERS:
        await rt.stations.register_charge_point(
            c.id, site_id="S1", max_power_w=c.max_kw * 1000, phases=c.phases
        )
    await rt.users.create(*OPERATOR, "operator")
    await rt.users.create(*VIEWER, "viewer")
    runs = [
        ChargerRun(ChargerConfig(c.id, c.version, c.spec, quirks=c.quirks), Station(c.spec, START))
        for c in CHARGERS
    ]
    plays = {
        c.id: [Arrival(*vehicle(1 + i, 8.0, 30.0, max_kw=c.max_kw, phases=c.phases))]
        for i, c in enumerate(CHARGERS)
    }
    url = f"ws://127.0.0.1:{rt.ocpp.port}/ocpp"
    sim = asyncio.create_task(run_site(runs, url, clock, plays, START + timedelta(hours=10)))
    try:
        for _ in range(200):  # until every vehicle is charging
            if len(await Queries(rt.sessions).transactions(active=True)) >= len(CHARGERS):
                break
            await asyncio.sleep(0.1)
        yield LiveSite(f"http://127.0.0.1:{port}", rt, clock, runs)
    finally:
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sim
        server.should_exit = True
        await serving


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (the system's, not a downloaded one)."""
    why = _why_no_browser()
    if why is not None:
        pytest.skip(why)
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-dev-shm-usage"],  # root in a container, small /dev/shm
        )
        try:
            yield b
        finally:
            await b.close()


async def shot(page: Any, name: str) -> None:
    """A full-page screenshot to out/screenshots/ (not committed)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
