"""Reconnect storm: every charger comes back after the central system restarts, and after a
network blip, and each is connected and booted again.

250 OCPP 1.6 chargers with passwords (security profile 1; they register themselves on their first
connect) talk to the central system (``python -m csms``, a child process, on a fresh SQLite file
and, when reachable, a fresh PostgreSQL database). Three waves, each checked the same way:

1. first connect, 50 at a time: every password is hashed and stored;
2. the central system is killed (SIGKILL) and started again on the same port and database: every
   charger reconnects with the simulator's backoff (5 s doubling to 300 s, shortened by up to
   50 %), so the first attempts find no server and the next ones arrive in a bunch;
3. a network blip: every connection drops at once and every charger reconnects at once.

After each wave every charger must be back: connected, BootNotification and StatusNotification
answered. Afterwards the database must show every charger connected and booted after the
restart, and the central system must have logged no error (no pool timeout, no failed handler).
Time is reported, never asserted (``python -m benchmarks.ocpp_load storm`` measures it at 1000).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from benchmarks.ocpp_load import StormFleet
from csms.db.engine import create_engine, session_factory
from csms.db.models import ChargePoint
from tests.faults.processes import CsmsProcess
from tests.faults.storm_helpers import fresh_pg_database, pg_problem

CHARGERS = 250
FIRST_CONCURRENCY = 50
WAVE_TIMEOUT_S = 600.0  # a bound on a hung test, not a target


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'csms.db'}"
        return
    if (problem := await pg_problem()) is not None:
        pytest.skip(problem)
    async with fresh_pg_database() as url:
        yield url


async def _all_back(fleet: StormFleet, since: float, what: str) -> float:
    """Wait (bounded) until every charger completed a (re)connect after ``since``; the seconds
    it took from ``since`` for the last one."""
    deadline = time.monotonic() + WAVE_TIMEOUT_S
    while (back := len(fleet.back_since(since))) < CHARGERS:
        assert time.monotonic() < deadline, f"{what}: only {back}/{CHARGERS} back"
        await asyncio.sleep(0.2)
    return max(c.back_at or 0.0 for c in fleet.chargers) - since


async def test_every_charger_comes_back_after_a_restart_and_a_blip(
    db_url: str, tmp_path: Path
) -> None:
    csms = CsmsProcess(
        tmp_path, database_url=db_url, settings={"CSMS_OCPP__ALLOW_UNKNOWN_CHARGERS": "true"}
    )
    csms.start()
    fleet = StormFleet(csms.url, CHARGERS, prefix="STORM")
    try:
        await asyncio.to_thread(csms.wait_ready)

        t0 = time.monotonic()
        first = asyncio.create_task(fleet.connect_all(FIRST_CONCURRENCY))
        first_s = await _all_back(fleet, t0, "first connect")
        await first

        killed = time.monotonic()
        killed_at = datetime.now(UTC)
        await asyncio.to_thread(csms.kill)
        csms.start()
        start_s = await asyncio.to_thread(csms.wait_ready)
        failures_before = fleet.failures()
        restart_s = await _all_back(fleet, killed, "after the restart")
        refused = fleet.failures()  # attempts that found no server (or a busy one)

        await fleet.drop_all()
        dropped = time.monotonic()
        blip = asyncio.create_task(fleet.connect_all(None))
        blip_s = await _all_back(fleet, dropped, "after the blip")
        await blip

        await asyncio.sleep(1.0)  # the last StatusNotifications are stored
        rows = await _charge_points(db_url)
        alive = csms.alive
    finally:
        await fleet.close()
        if csms.alive:
            csms.stop()
    logs = "".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("csms-*.log")))

    print(
        f"\n{CHARGERS} chargers: first connect {first_s:.1f} s; killed, listening again after "
        f"{start_s:.1f} s, all back {restart_s:.1f} s after the kill ({refused} attempts failed, "
        f"{refused - failures_before} of them after it listened); blip: all back after "
        f"{blip_s:.1f} s"
    )
    assert alive, csms.output()
    assert len(rows) == CHARGERS
    assert [cp.id for cp in rows if not cp.connected] == []
    assert [cp.id for cp in rows if cp.password_hash is None] == []
    not_rebooted = [cp.id for cp in rows if cp.booted_at is None or _utc(cp.booted_at) < killed_at]
    assert not_rebooted == []
    for problem in ("Traceback", "QueuePool limit", "connection handler failed", " ERROR "):
        assert problem not in logs, f"the central system logged {problem!r}"


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


async def _charge_points(db_url: str) -> list[ChargePoint]:
    engine = create_engine(db_url)
    try:
        async with session_factory(engine)() as s:
            return list((await s.exec(select(ChargePoint))).all())
    finally:
        await engine.dispose()
