"""Run a site of simulated chargers against a central system, and report what they drew.

Each charger gets its own websocket (``url/<charger id>``, the OCPP subprotocol of its version,
HTTP Basic auth when it has a password, TLS for ``wss://``) and runs in one TaskGroup with the
others; one charger failing (refused, dropped) is recorded and does not stop the rest.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake
from websockets.typing import Subprotocol

from charge_point_sim import v16, v201
from charge_point_sim.charger_model import ChargerSpec
from charge_point_sim.clock import Clock
from charge_point_sim.driver import Arrival, Driver, SessionResult
from charge_point_sim.errors import SimulatorError
from charge_point_sim.link import Backoff, Link, Outbox
from charge_point_sim.quirks import Quirks
from charge_point_sim.station import Station
from charge_point_sim.wire import format_time

log = logging.getLogger("charge_point_sim")

VERSIONS = ("1.6", "2.0.1")


@dataclass(frozen=True, slots=True)
class ChargerConfig:
    """One simulated charger: id, OCPP version ("1.6" or "2.0.1"), hardware, optional password,
    and the field quirks it reproduces."""

    charger_id: str
    version: str
    spec: ChargerSpec
    password: str | None = None
    quirks: Quirks = field(default_factory=Quirks)


@dataclass(slots=True)
class ChargerRun:
    """A charger's live state during a run (read by the progress line and the report)."""

    config: ChargerConfig
    station: Station
    driver: Driver | None = None
    connected: bool = False
    ever_connected: bool = False
    error: str | None = None
    results: list[SessionResult] = field(default_factory=list)
    link: Link | None = None
    outbox: Outbox | None = None


def basic_auth(charger_id: str, password: str) -> str:
    """The Authorization header of OCPP security profile 1."""
    token = base64.b64encode(f"{charger_id}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def charger_url(url: str, charger_id: str) -> str:
    """Where a charger connects: the central system's URL and its id."""
    return url.rstrip("/") + "/" + charger_id


def tls_context(url: str, ca_file: str | None = None) -> ssl.SSLContext | None:
    """The TLS settings of a run: None for ``ws://``; for ``wss://``, the server's certificate
    checked against ``ca_file`` (PEM), else the system's trust store, with its host name.

    Made once per run (loading a trust store per charger would cost 1000 loads). TLS 1.2 or
    higher, as the OCPP security profiles 2 and 3 require (1.6 security whitepaper, 2.0.1 part 2
    A00). Raises SimulatorError for a CA file with ``ws://`` or one that cannot be read.
    """
    if not url.startswith("wss://"):
        if ca_file is not None:
            raise SimulatorError("--ca-file needs a wss:// URL")
        return None
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise SimulatorError(f"CA file {ca_file}: {e}") from e
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def charger_rng(seed: int, charger_id: str) -> random.Random:
    """A charger's own random stream (reconnect jitter): the same for the same seed and id.

    A string seed is hashed with SHA-512 by ``random``, so it does not change between runs."""
    return random.Random(f"{seed}/{charger_id}")


async def _connect(run: ChargerRun, url: str, tls: ssl.SSLContext | None) -> Any:
    cfg = run.config
    protocol = v16.SUBPROTOCOL if cfg.version == "1.6" else v201.SUBPROTOCOL
    headers = (
        {} if cfg.password is None else {"Authorization": basic_auth(cfg.charger_id, cfg.password)}
    )
    extra: dict[str, Any] = {} if tls is None else {"ssl": tls}
    return await connect(
        charger_url(url, cfg.charger_id),
        subprotocols=[Subprotocol(protocol)],
        additional_headers=headers,
        proxy=None,
        **extra,
    )


async def _keep_connected(
    run: ChargerRun,
    link: Link,
    url: str,
    clock: Clock,
    until: datetime | None,
    backoff: Backoff,
    on_reconnect: Callable[[], object],
    rng: random.Random,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Connect, and reconnect after each drop with bounded exponential backoff (simulated s),
    jittered by ``rng`` so that chargers dropped together do not come back together.

    With the ``drop_every_s`` quirk the charger itself closes the connection that often.
    Gives up (returns) once ``until`` has passed without any connection; after one, it keeps
    trying until cancelled (the run may still owe transaction messages). ``OSError`` covers a
    refused connection and a failed TLS handshake (``ssl.SSLError``).
    """
    attempt = 0
    drop_every = run.config.quirks.drop_every_s
    while True:
        try:
            ws = await _connect(run, url, tls)
        except (OSError, TimeoutError, InvalidHandshake) as e:
            run.error = f"cannot connect: {e}"
            if until is not None and clock.now() >= until and link.connects == 0:
                return
            await clock.sleep(backoff.delay(attempt, rng.random()))
            attempt += 1
            continue
        attempt = 0
        run.error = None
        first = link.connects == 0
        link.attach(ws)
        run.connected = run.ever_connected = True
        if not first:
            on_reconnect()
        try:
            if drop_every is None:
                await ws.wait_closed()
            else:
                with suppress(TimeoutError):
                    async with asyncio.timeout(drop_every / clock.speed):
                        await ws.wait_closed()
                log.info("%s: dropping the connection (quirk)", run.config.charger_id)
        finally:
            link.detach(ws)
            run.connected = False
            await ws.close()
        # The wait after a drop is the first of the backoff; a failure then waits the second.
        await clock.sleep(backoff.delay(0, rng.random()))
        attempt = 1


async def _drain(cp: Any, link: Link, drain_s: float) -> None:
    """Deliver the transaction messages still queued, for up to ``drain_s`` real seconds."""
    with suppress(TimeoutError):
        async with asyncio.timeout(drain_s):
            while len(cp.outbox):
                await link.online.wait()
                await cp.resume()
                if len(cp.outbox):
                    await asyncio.sleep(0.05)
    if len(cp.outbox):
        log.warning("%s: %d transaction messages never delivered", cp.id, len(cp.outbox))


async def _reboots(driver: Driver, clock: Clock, every_s: float) -> None:
    while True:
        await clock.sleep(every_s)
        log.info("%s: rebooting (quirk)", driver.charger_id)
        driver.reset()


async def run_charger(
    run: ChargerRun,
    url: str,
    clock: Clock,
    arrivals: Sequence[Arrival],
    until: datetime | None,
    *,
    response_timeout: float = 30,
    backoff: Backoff | None = None,
    drain_s: float = 10.0,
    seed: int = 0,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Connect (retrying with ``backoff`` until ``until``), boot and play; reconnect after drops.

    The charger keeps its state across reconnects: sessions go on offline and their transaction
    messages are sent after the reconnect (see :mod:`charge_point_sim.link`). At the end it waits
    up to ``drain_s`` real seconds to deliver what it still owes. ``seed`` seeds its reconnect
    jitter (with its id); ``tls`` is the TLS context for a ``wss://`` URL (:func:`tls_context`).
    """
    cfg = run.config
    cls: Any = v16.ChargePoint16 if cfg.version == "1.6" else v201.ChargePoint201
    link = Link()
    cp = cls(
        cfg.charger_id,
        link,
        run.station,
        clock,
        response_timeout=response_timeout,
        quirks=cfg.quirks,
    )
    run.driver = cp.driver
    run.link = link
    run.outbox = cp.outbox
    try:
        async with asyncio.TaskGroup() as tg:
            keeper = tg.create_task(
                _keep_connected(
                    run,
                    link,
                    url,
                    clock,
                    until,
                    backoff or Backoff(),
                    cp.driver.reconnected,
                    charger_rng(seed, cfg.charger_id),
                    tls,
                )
            )
            online = tg.create_task(link.online.wait())
            await asyncio.wait({keeper, online}, return_when=asyncio.FIRST_COMPLETED)
            if not link.online.is_set():
                online.cancel()
                return
            receiver = tg.create_task(cp.start())
            reboots = (
                None
                if cfg.quirks.reboot_every_s is None
                else tg.create_task(_reboots(cp.driver, clock, cfg.quirks.reboot_every_s))
            )
            await cp.driver.run(arrivals, until)
            await _drain(cp, link, drain_s)
            for t in (receiver, keeper, reboots):
                if t is not None:
                    t.cancel()
    finally:
        run.connected = False
        run.results = list(cp.driver.results)


async def run_site(
    runs: Sequence[ChargerRun],
    url: str,
    clock: Clock,
    arrivals: Mapping[str, Sequence[Arrival]],
    until: datetime,
    *,
    on_tick: Callable[[], None] | None = None,
    tick_s: float = 0.5,
    seed: int = 0,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Run every charger until ``until``; failures are recorded on their :class:`ChargerRun`.

    ``seed`` and ``tls`` as in :func:`run_charger`."""

    async def guarded(run: ChargerRun) -> None:
        try:
            await run_charger(
                run,
                url,
                clock,
                arrivals.get(run.config.charger_id, ()),
                until,
                seed=seed,
                tls=tls,
            )
        except Exception as e:  # noqa: BLE001 - one charger's failure must not stop the site
            run.error = f"{type(e).__name__}: {e}"
            log.warning("%s: stopped: %s", run.config.charger_id, run.error)

    async def ticker() -> None:
        while on_tick is not None:
            on_tick()
            await asyncio.sleep(tick_s)

    async with asyncio.TaskGroup() as tg:
        tick = tg.create_task(ticker())
        tasks = [tg.create_task(guarded(r)) for r in runs]
        await asyncio.gather(*tasks)
        tick.cancel()
    if on_tick is not None:
        on_tick()


@dataclass(frozen=True, slots=True)
class Progress:
    """What the live progress line shows."""

    connected: int
    chargers: int
    charging: int
    energy_kwh: float
    now: datetime

    def line(self) -> str:
        return (
            f"{format_time(self.now)}  connected {self.connected}/{self.chargers}  "
            f"charging {self.charging}  energy {self.energy_kwh:.2f} kWh"
        )


def progress(runs: Sequence[ChargerRun], now: datetime) -> Progress:
    """The progress of a run at ``now``."""
    return Progress(
        connected=sum(r.connected for r in runs),
        chargers=len(runs),
        charging=sum(len(r.station.state.transactions) for r in runs),
        energy_kwh=sum(m.register_wh for r in runs for m in r.station.meters.values()) / 1000,
        now=now,
    )


def _delivery(run: ChargerRun) -> dict[str, int]:
    """How a charger's connection and transaction messages fared (see :class:`Outbox`)."""
    link, outbox = run.link, run.outbox
    return {
        "connects": 0 if link is None else link.connects,
        "drops": 0 if link is None else link.drops,
        "transaction_messages": 0 if outbox is None else outbox.total,
        "messages_held": 0 if outbox is None else outbox.held,
        "messages_held_delivered": 0 if outbox is None else outbox.held_delivered,
        "messages_max_queued": 0 if outbox is None else outbox.max_queued,
        "messages_undelivered": 0 if outbox is None else len(outbox),
    }


def report(
    runs: Sequence[ChargerRun], start: datetime, end: datetime, speed: float, url: str
) -> dict[str, Any]:
    """The run's JSON report: power per charger per minute, the site total, every session.

    Per session also what its transaction messages said (start and stop times and registers, how
    many meter readings and sampled values they carried); per charger how its connection and its
    transaction messages fared (connects, drops, messages queued, held while offline, delivered
    later, still undelivered at the end)."""
    per_charger = {r.config.charger_id: r.station.minute_power_kw() for r in runs}
    minutes = max((len(v) for v in per_charger.values()), default=0)
    site = [
        round(sum(v[i] if i < len(v) else 0.0 for v in per_charger.values()), 4)
        for i in range(minutes)
    ]
    results = [
        (r, s) for r in runs for s in (r.driver.results if r.driver is not None else r.results)
    ]
    sessions = [
        {
            "charger": r.config.charger_id,
            "connector": s.connector_id,
            "id_tag": s.id_tag,
            "transaction_id": s.transaction_id,
            "arrival": format_time(s.arrival),
            "departure": None if s.departure is None else format_time(s.departure),
            "stopped_at": None if s.stopped_at is None else format_time(s.stopped_at),
            "stop_reason": s.reason,
            "requested_kwh": round(s.requested_wh / 1000, 4),
            "delivered_kwh": round(s.delivered_wh / 1000, 4),
            "met": s.met,
            "iso15118": s.iso15118,
            "needs_status": s.needs_status,
            "started_at": None if s.started_at is None else format_time(s.started_at),
            "meter_start_wh": s.meter_start_wh,
            "meter_stop_wh": s.meter_stop_wh,
            "meter_values": s.meter_values,
            "samples": s.samples,
        }
        for r, s in results
    ]
    return {
        "url": url,
        "start": format_time(start),
        "end": format_time(end),
        "speed": speed,
        "minute_start": format_time(start),
        "chargers": [
            {
                "id": r.config.charger_id,
                "version": r.config.version,
                "connected": r.ever_connected,
                "error": r.error,
                "energy_kwh": round(
                    sum(m.register_wh for m in r.station.meters.values()) / 1000, 4
                ),
                "power_kw_per_minute": per_charger[r.config.charger_id],
                **_delivery(r),
            }
            for r in runs
        ],
        "site_power_kw_per_minute": site,
        "site_peak_kw": max(site, default=0.0),
        "energy_requested_kwh": round(sum(s.requested_wh for _, s in results) / 1000, 4),
        "energy_delivered_kwh": round(sum(s.delivered_wh for _, s in results) / 1000, 4),
        "sessions": sessions,
    }


__all__ = [
    "VERSIONS",
    "ChargerConfig",
    "ChargerRun",
    "Progress",
    "basic_auth",
    "charger_rng",
    "charger_url",
    "progress",
    "report",
    "run_charger",
    "run_site",
    "tls_context",
]
