"""Reconnects, one charger and many at once: a password this process verified is not run through
scrypt again, a wrong one always is, at most SCRYPT_SLOTS hashes run at once, a check whose
handshake was abandoned while waiting for a slot costs nothing, and the late disconnect of a
charger's old connection does not mark its new one offline. The storm itself is
tests/faults/test_reconnect_storm.py."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from csms.db.engine import create_engine, session_factory
from csms.db.migrate import upgrade_to_head
from csms.db.models import ChargePoint
from csms.domain.clock import SystemClock
from csms.services import stations as stations_module
from csms.services.passwords import hash_password, verify_password
from csms.services.stations import SCRYPT_SLOTS, StationService

PASSWORD = "a-charger-password-0123"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[StationService]:
    engine = create_engine(f"sqlite:///{tmp_path / 'csms.db'}")
    await upgrade_to_head(engine)
    try:
        yield StationService(session_factory(engine), SystemClock())
    finally:
        await engine.dispose()


class CountingVerify:
    """Wraps verify_password: counts calls, and how many ran at the same time."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.running = 0
        self.most = 0
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._real = verify_password

    def __call__(self, password: str, stored: str) -> bool:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if self.delay_s:
                threading.Event().wait(self.delay_s)
            return self._real(password, stored)
        finally:
            with self._lock:
                self.running -= 1


async def test_a_verified_password_is_not_hashed_again_and_a_wrong_one_always_is(
    service: StationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    await service.register_charge_point("CP1", password=PASSWORD)
    verify = CountingVerify()
    monkeypatch.setattr(stations_module, "verify_password", verify)

    assert await service.check_credentials("CP1", PASSWORD)
    assert verify.calls == 1
    assert await service.check_credentials("CP1", PASSWORD)  # a reconnect
    assert verify.calls == 1
    assert not await service.check_credentials("CP1", PASSWORD + "x")
    assert verify.calls == 2  # a wrong password pays the full price, as before

    await service.register_charge_point("CP1", password="a-new-password-456789")
    assert not await service.check_credentials("CP1", PASSWORD)  # the old one no longer works
    assert await service.check_credentials("CP1", "a-new-password-456789")


async def test_at_most_scrypt_slots_hashes_run_at_once(
    service: StationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"CP{i}" for i in range(3 * SCRYPT_SLOTS + 1)]
    for cp_id in ids:
        await service.register_charge_point(cp_id, password=PASSWORD)
    verify = CountingVerify(delay_s=0.05)
    monkeypatch.setattr(stations_module, "verify_password", verify)

    results = await asyncio.gather(*(service.check_credentials(i, PASSWORD) for i in ids))
    assert all(results)
    assert verify.calls == len(ids)
    assert verify.most <= SCRYPT_SLOTS


async def test_an_abandoned_check_costs_no_hash(
    service: StationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"CP{i}" for i in range(SCRYPT_SLOTS + 5)]
    for cp_id in ids:
        await service.register_charge_point(cp_id, password=PASSWORD)
    verify = CountingVerify(delay_s=0.3)
    monkeypatch.setattr(stations_module, "verify_password", verify)

    tasks = [asyncio.create_task(service.check_credentials(i, PASSWORD)) for i in ids]
    await asyncio.sleep(0.1)  # the first SCRYPT_SLOTS are hashing, the others wait for a slot
    for task in tasks:
        task.cancel()  # every handshake times out
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.4)
    assert verify.calls == SCRYPT_SLOTS


async def test_self_registration_hashes_off_the_event_loop(
    service: StationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[bool] = []
    real = hash_password

    def recording(password: str) -> str:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(password)

    stations_module._dummy_hash()  # made once per process (unknown ids are checked against it)
    monkeypatch.setattr(stations_module, "hash_password", recording)
    service.allow_unknown_chargers = True
    assert await service.check_credentials("NEW", PASSWORD)
    await service.connected("NEW", "ocpp1.6", PASSWORD)
    await service.connected("NEW", "ocpp1.6", PASSWORD)  # known now: not hashed again
    assert threads == [False]
    assert await service.check_credentials("NEW", PASSWORD)
    assert not await service.check_credentials("NEW", "someone-else-s-password")


class SlowNextWrite:
    """Wraps a session factory: the next ``begin()`` after :meth:`arm` waits first, as a write
    queued behind others on a busy database would."""

    def __init__(self, real: Any, delay_s: float) -> None:
        self.real = real
        self.delay_s = delay_s
        self.armed = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.real(*args, **kwargs)

    def arm(self) -> None:
        self.armed = True

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[Any]:
        if self.armed:
            self.armed = False
            await asyncio.sleep(self.delay_s)
        async with self.real.begin() as s:
            yield s


async def test_a_late_disconnect_does_not_mark_a_reconnected_charger_offline(
    service: StationService,
) -> None:
    real = service._sessions
    await service.connected("CP1", "ocpp1.6", None)
    slow = SlowNextWrite(real, 0.3)
    service._sessions = slow  # type: ignore[assignment]
    slow.arm()
    # The old connection closed; its disconnect waits for the database ...
    old_gone = asyncio.create_task(service.disconnected("CP1"))
    await asyncio.sleep(0.05)
    # ... while the charger is already back on a new connection.
    await service.connected("CP1", "ocpp1.6", None)
    await old_gone
    async with real() as s:
        cp = await s.get(ChargePoint, "CP1")
    assert cp is not None
    assert cp.connected

    await service.disconnected("CP1")  # the new connection closes: now it is offline
    async with real() as s:
        cp = await s.get(ChargePoint, "CP1")
    assert cp is not None
    assert not cp.connected
