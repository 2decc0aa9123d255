"""Reconnects: the server drops a charger mid-session and refuses it for a while.

The charger reconnects with backoff; 2.0.1 queues its TransactionEvents while offline and sends
them afterwards with ``offline=true`` and their original seqNo and timestamps; 1.6 sends again the
StartTransaction / MeterValues / StopTransaction that got no answer. The server must end up with
every event, each seqNo (2.0.1) or meter timestamp (1.6) once, and any duplicate identical to the
first (a resend it can recognise).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call as c16

from charge_point_sim import ChargerSpec, Ev
from charge_point_sim.charger_model import ChargerState
from charge_point_sim.clock import ScaledClock
from charge_point_sim.driver import Arrival, SessionRequest
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.link import Backoff, Link, OfflineError, Outbox
from charge_point_sim.profiles import Kind, Purpose
from charge_point_sim.quirks import Quirks
from charge_point_sim.runner import ChargerConfig, ChargerRun, charger_rng, run_charger
from charge_point_sim.station import Station
from charge_point_sim.wire import format_time
from tests.charge_point_sim.helpers import T0, install_all, profile, spec
from tests.charge_point_sim.ocpp_server import Server, ocpp_server

SPEED = 600.0
STAY_S = 600.0


@asynccontextmanager
async def session(
    version: str, quirks: Quirks | None = None
) -> AsyncIterator[tuple[Server, ChargerRun, str]]:
    """One charger, one EV plugged at once for STAY_S simulated seconds."""
    clock = ScaledClock(datetime.now(UTC), SPEED)
    spec = ChargerSpec.uniform(1, 22080.0)
    cfg = ChargerConfig(f"RC-{version}", version, spec, quirks=quirks or Quirks())
    run = ChargerRun(cfg, Station(spec, clock.now()))
    now = clock.now()
    ev = Ev(capacity_kwh=60.0, soc=0.2, max_power_w=11000.0)
    plan = [Arrival(now, SessionRequest(1, ev, "TAG1", departure=now + timedelta(seconds=STAY_S)))]
    async with ocpp_server() as server:
        task = asyncio.create_task(
            run_charger(run, server.url, clock, plan, None, backoff=Backoff(5.0, 40.0))
        )
        try:
            await server.charger(cfg.charger_id)
            yield server, run, cfg.charger_id
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


def _outbox(run: ChargerRun) -> Outbox:
    assert run.driver is not None
    box = run.driver.side.outbox  # type: ignore[attr-defined]
    assert isinstance(box, Outbox)
    return box


def _same(payloads: list[dict[str, Any]]) -> bool:
    return len({json.dumps(p, sort_keys=True, default=str) for p in payloads}) == 1


async def _drop_for(server: Server, cp_id: str, seconds: float) -> None:
    server.refuse.add(cp_id)
    await server.drop(cp_id)
    await asyncio.sleep(seconds)
    server.refuse.discard(cp_id)


async def test_2_0_1_queues_transaction_events_while_offline() -> None:
    async with session("2.0.1") as (server, run, cp_id):
        csms = await server.charger(cp_id)
        await csms.wait_for("TransactionEvent", lambda p: p["seq_no"] >= 2, timeout=10)
        await _drop_for(server, cp_id, 0.3)  # 180 simulated seconds: ~3 meter intervals
        csms = await server.charger(cp_id)
        await csms.wait_for("TransactionEvent", lambda p: p["event_type"] == "Ended", timeout=15)
        events = csms.of("TransactionEvent")
    assert server.connections[cp_id] >= 2
    assert run.link is not None
    assert run.link.drops >= 1
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        by_seq.setdefault(e["seq_no"], []).append(e)
    assert sorted(by_seq) == list(range(len(by_seq)))  # none lost
    assert all(_same(dups) for dups in by_seq.values())  # duplicates are exact resends
    ordered = [by_seq[n][0] for n in sorted(by_seq)]
    assert [e["event_type"] for e in ordered[:1] + ordered[-1:]] == ["Started", "Ended"]
    assert {e["transaction_info"]["transaction_id"] for e in ordered} == {
        ordered[0]["transaction_info"]["transaction_id"]
    }
    offline = [e for e in ordered if e.get("offline")]
    assert len(offline) >= 2
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in ordered]
    assert stamps == sorted(stamps)  # original timestamps, in order
    assert len(ordered) == _outbox(run).total  # everything the charger made arrived


async def test_1_6_resends_transaction_messages_without_answer() -> None:
    async with session("1.6") as (server, run, cp_id):
        csms = await server.charger(cp_id)
        await csms.wait_for("MeterValues", lambda _: len(csms.of("MeterValues")) >= 2, timeout=10)
        await _drop_for(server, cp_id, 0.3)
        csms = await server.charger(cp_id)
        await csms.wait_for("StopTransaction", timeout=15)
        starts, stops = csms.of("StartTransaction"), csms.of("StopTransaction")
        meters = csms.of("MeterValues")
    assert server.connections[cp_id] >= 2
    assert len(starts) == 1
    assert _same(stops)  # a second StopTransaction could only be the same one again
    tx = starts[0]["transaction_id"]
    assert {p["transaction_id"] for p in meters + stops} == {tx}
    by_time: dict[str, list[dict[str, Any]]] = {}
    for p in meters:
        by_time.setdefault(p["meter_value"][0]["timestamp"], []).append(p)
    assert all(_same(dups) for dups in by_time.values())
    assert len(by_time) + 2 == _outbox(run).total  # no meter value lost while offline
    assert _outbox(run).resends >= 1
    registers = [
        float(s["value"])
        for t in sorted(by_time)
        for s in by_time[t][0]["meter_value"][0]["sampled_value"]
        if s["measurand"] == "Energy.Active.Import.Register"
    ]
    assert registers == sorted(registers)
    assert float(stops[0]["meter_stop"]) >= registers[-1]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_the_drop_quirk_reconnects_and_the_session_still_ends(version: str) -> None:
    async with session(version, Quirks(drop_every_s=150.0)) as (server, run, cp_id):
        csms = await server.charger(cp_id)
        action = "StopTransaction" if version == "1.6" else "TransactionEvent"
        await csms.wait_for(
            action, lambda p: version == "1.6" or p["event_type"] == "Ended", timeout=15
        )
    assert server.connections[cp_id] >= 3
    assert run.link is not None
    assert run.link.drops >= 2
    assert len(csms.of("BootNotification")) == 1  # a reconnect is not a reboot


async def test_the_outbox_keeps_order_and_delivers_after_failures() -> None:
    link = Link()
    sent: list[int] = []
    fail = [True]

    async def send(payload: int) -> int:
        if fail[0]:
            raise OfflineError("down")
        sent.append(payload)
        return payload * 10

    box = Outbox(send)
    answers = [box.put(lambda i=i: i) for i in range(3)]  # type: ignore[misc]
    await box.flush()
    assert sent == []
    assert len(box) == 3
    assert not link.is_online
    fail[0] = False
    await box.flush()
    assert sent == [0, 1, 2]
    assert len(box) == 0
    assert [a.result() for a in answers] == [0, 10, 20]
    assert Backoff(5, 40).delay(0) == 5
    assert Backoff(5, 40).delay(10) == 40


async def test_events_owed_at_the_end_of_a_run_are_delivered_after_the_reconnect() -> None:
    clock = ScaledClock(datetime.now(UTC), SPEED)
    spec = ChargerSpec.uniform(1, 22080.0)
    run = ChargerRun(ChargerConfig("END", "2.0.1", spec), Station(spec, clock.now()))
    now = clock.now()
    ev = Ev(capacity_kwh=60.0, soc=0.2, max_power_w=11000.0)
    plan = [Arrival(now, SessionRequest(1, ev, "TAG1", departure=now + timedelta(hours=1)))]
    async with ocpp_server() as server:
        task = asyncio.create_task(
            run_charger(
                run, server.url, clock, plan, now + timedelta(seconds=240), backoff=Backoff(5, 40)
            )
        )
        csms = await server.charger("END")
        await csms.wait_for("TransactionEvent", lambda p: p["seq_no"] >= 1, timeout=10)
        await _drop_for(server, "END", 0.5)  # the run ends (240 s) while offline
        async with asyncio.timeout(15):
            await task
        events = (await server.charger("END")).of("TransactionEvent")
    ended = [e for e in events if e["event_type"] == "Ended"]
    assert len(ended) == 1
    assert ended[0]["offline"] is True
    assert ended[0]["transaction_info"]["stopped_reason"] == "Local"
    assert sorted({e["seq_no"] for e in events}) == list(range(ended[0]["seq_no"] + 1))


def test_backoff_is_bounded_exponential_with_jitter() -> None:
    b = Backoff(5.0, 300.0, jitter=0.5)
    assert [b.delay(a) for a in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]  # no draw
    for attempt in range(40):
        base = min(300.0, 5.0 * 2**attempt)
        for u in (0.0, 0.25, 0.5, 0.999999):
            d = b.delay(attempt, u)
            assert base / 2 < d <= base
            assert 2.5 < d <= 300.0
    bad: list[dict[str, float]] = [
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"initial_s": 0.0},
        {"max_s": 1.0},
    ]
    for kwargs in bad:
        with pytest.raises(InvalidModelError):
            Backoff(**kwargs)


def test_a_thousand_chargers_draw_spread_reconnect_delays() -> None:
    b = Backoff()
    first = [b.delay(0, charger_rng(1, f"SIM{i:04d}").random()) for i in range(1000)]
    assert min(first) > 2.5
    assert max(first) <= 5.0
    # Roughly uniform over (2.5, 5]: ten bins of 0.25 s hold 100 each on average.
    bins = [0] * 10
    for d in first:
        bins[min(9, int((d - 2.5) / 0.25))] += 1
    assert all(60 <= n <= 140 for n in bins), bins
    assert charger_rng(1, "SIM0001").random() == charger_rng(1, "SIM0001").random()
    assert charger_rng(1, "SIM0001").random() != charger_rng(2, "SIM0001").random()


async def test_chargers_dropped_together_reconnect_at_different_times() -> None:
    # 20x: the first reconnect waits 2.5-5 simulated s, 0.125-0.25 s here; without jitter all
    # would come back within a few ms of each other.
    clock = ScaledClock(datetime.now(UTC), 20.0)
    spec = ChargerSpec.uniform(1, 11000.0)
    runs = [
        ChargerRun(ChargerConfig(f"J{i}", "1.6", spec), Station(spec, clock.now()))
        for i in range(12)
    ]
    async with ocpp_server() as server:
        tasks = [
            asyncio.create_task(run_charger(r, server.url, clock, [], None, seed=3)) for r in runs
        ]
        try:
            for r in runs:
                await (await server.charger(r.config.charger_id)).wait_for("StatusNotification")
            for r in runs:
                await server.drop(r.config.charger_id)
            async with asyncio.timeout(5):
                while any(server.connections.get(r.config.charger_id, 0) < 2 for r in runs):
                    await asyncio.sleep(0.01)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    back = [server.connected_at[r.config.charger_id][1] for r in runs]
    assert max(back) - min(back) > 0.04


async def test_a_1_6_session_starting_while_the_server_is_down_charges_offline() -> None:
    """StartTransaction gets no answer (the server is down): the charger does not wait for it,
    charges under a local id, and when the server is back it sends the Start, then the meter
    values and the stop under the id the answer gave; that id then works for profiles and
    remote stops."""
    clock = ScaledClock(datetime.now(UTC), SPEED)
    spec = ChargerSpec.uniform(1, 22080.0)
    cfg = ChargerConfig("OFF16", "1.6", spec)
    run = ChargerRun(cfg, Station(spec, clock.now()))
    arrive = clock.now() + timedelta(seconds=60)
    ev = Ev(capacity_kwh=60.0, soc=0.2, max_power_w=11000.0)
    plan = [Arrival(arrive, SessionRequest(1, ev, "TAG1", departure=arrive + timedelta(hours=1)))]
    async with ocpp_server() as server:
        task = asyncio.create_task(
            run_charger(run, server.url, clock, plan, None, backoff=Backoff(5.0, 40.0))
        )
        try:
            csms = await server.charger("OFF16")
            await csms.wait_for("StatusNotification")
            server.refuse.add("OFF16")
            await server.drop("OFF16")
            await asyncio.sleep(0.4)  # 240 simulated s: the EV arrived at 60 s, offline
            tx = run.station.state.transaction_on(1)
            assert tx is not None
            assert tx.transaction_id.startswith("local-")
            assert run.station.power_w(1, clock.now()) == pytest.approx(11000.0)
            assert not csms.of("StartTransaction")
            server.refuse.discard("OFF16")
            start = await csms.wait_for("StartTransaction", timeout=10)
            real = start["transaction_id"]
            async with asyncio.timeout(5):
                while run.station.state.transaction_on(1) != replace(tx, transaction_id=str(real)):
                    await asyncio.sleep(0.01)
            now = server.cps["OFF16"]
            limited = await now.call(
                c16.SetChargingProfile(
                    connector_id=1,
                    cs_charging_profiles={
                        "charging_profile_id": 5,
                        "stack_level": 1,
                        "charging_profile_purpose": "TxProfile",
                        "charging_profile_kind": "Relative",
                        "transaction_id": real,
                        "charging_schedule": {
                            "charging_rate_unit": "A",
                            "charging_schedule_period": [{"start_period": 0, "limit": 8.0}],
                        },
                    },
                ),
                suppress=False,
            )
            assert limited.status == "Accepted"
            stopped = await now.call(c16.RemoteStopTransaction(transaction_id=real), suppress=False)
            assert stopped.status == "Accepted"
            stop = await csms.wait_for("StopTransaction", timeout=10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert len(csms.of("StartTransaction")) == 1
    assert start["timestamp"] <= format_time(arrive + timedelta(seconds=5))  # when it started
    meters = csms.of("MeterValues")
    assert meters
    assert {m["transaction_id"] for m in meters} == {real}
    stamps = sorted(m["meter_value"][0]["timestamp"] for m in meters)
    assert stamps[0] < format_time(arrive + timedelta(seconds=180))  # sampled while offline
    assert stop["transaction_id"] == real
    assert stop["reason"] == "Remote"
    result = run.results[0]
    assert result.transaction_id == str(real)
    assert result.reason == "Remote"
    assert result.delivered_wh > 11000 * 150 / 3600  # charged through the offline minutes


def test_a_renamed_transaction_keeps_its_profiles() -> None:
    state = ChargerState().start_transaction(1, "local-1", T0)
    state = install_all(
        spec(),
        state,
        (1, profile(3, [(0, 10)], purpose=Purpose.TX, kind=Kind.RELATIVE)),
        (1, profile(4, [(0, 9)], purpose=Purpose.TX, kind=Kind.RELATIVE, stack=1,
                    transaction_id="local-1")),
    )  # fmt: skip
    renamed = state.rename_transaction("local-1", "17")
    assert [t.transaction_id for t in renamed.transactions] == ["17"]
    assert [ip.profile.transaction_id for ip in renamed.profiles] == [None, "17"]
    assert renamed.rename_transaction("other", "18") == renamed
