"""ISO 15118 EVs: the seeded choice of sessions, the charging needs they declare (2.0.1 K15), the
NotifyEVChargingNeeds a 2.0.1 station sends after TransactionEvent Started, and the report."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.charge_point import snake_to_camel_case
from ocpp.messages import Call, validate_payload

from charge_point_sim import ChargerSpec, Ev
from charge_point_sim.cli import main, summary
from charge_point_sim.clock import ScaledClock
from charge_point_sim.driver import Arrival, SessionRequest
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.iso15118 import charging_needs, draw, energy_transfer, with_iso15118
from charge_point_sim.runner import ChargerConfig, ChargerRun, report, run_charger
from charge_point_sim.station import Station
from tests.charge_point_sim.helpers import T0
from tests.charge_point_sim.ocpp_server import Server, ocpp_server

SPEED = 600.0


def _arrivals(n: int) -> dict[str, list[Arrival]]:
    ev = Ev(capacity_kwh=60.0, soc=0.2, max_power_w=11000.0)
    return {
        f"C{i:04d}": [Arrival(T0 + timedelta(minutes=i), SessionRequest(1, ev, f"T{i}"))]
        for i in range(n)
    }


def _marked(arrivals: dict[str, list[Arrival]]) -> set[str]:
    return {c for c, v in arrivals.items() for a in v if a.request.ev.iso15118}


def test_the_share_is_drawn_per_session_seeded_and_monotone() -> None:
    sessions = _arrivals(1000)
    assert _marked(with_iso15118(sessions, 0.0, 7)) == set()
    assert _marked(with_iso15118(sessions, 1.0, 7)) == set(sessions)
    half = _marked(with_iso15118(sessions, 0.5, 7))
    assert 430 <= len(half) <= 570  # binomial(1000, 0.5): 4.4 standard deviations
    assert _marked(with_iso15118(sessions, 0.5, 7)) == half  # same seed, same sessions
    assert _marked(with_iso15118(sessions, 0.5, 8)) != half
    assert (
        _marked(with_iso15118(sessions, 0.3, 7)) <= half <= _marked(with_iso15118(sessions, 0.7, 7))
    )
    # A session's draw does not depend on the others.
    some = {c: sessions[c] for c in list(sessions)[:100]}
    assert _marked(with_iso15118(some, 0.5, 7)) == half & set(some)
    assert all(0.0 <= draw(7, k) < 1.0 for k in sessions)
    with pytest.raises(InvalidModelError):
        with_iso15118(sessions, 1.5, 7)


def test_charging_needs_follow_the_ev_model() -> None:
    spec = ChargerSpec.uniform(2, 22080.0)  # 32 A, three phases, 230 V
    departure = datetime(2026, 3, 2, 17, 30, tzinfo=UTC) + timedelta(hours=1)
    ev = Ev(
        capacity_kwh=60.0,
        soc=0.2,
        max_power_w=11000.0,
        energy_needed_wh=24567.4,
        min_power_w=6 * 230.0 * 3,
    )
    got = charging_needs(spec, 2, ev, departure)
    assert got == {
        "evse_id": 2,
        "charging_needs": {
            "requested_energy_transfer": "AC_three_phase",
            "departure_time": "2026-03-02T18:30:00.000Z",
            "ac_charging_parameters": {
                "energy_amount": 24567,
                "ev_min_current": 6,
                "ev_max_current": 16,  # 11 kW / (3 x 230 V) = 15.9 A
                "ev_max_voltage": 230,
            },
        },
    }
    # A single-phase EV on that charger charges on one phase; without a declared need it asks
    # for what its battery takes up to the target; without a departure none is sent.
    one = Ev(capacity_kwh=40.0, soc=0.5, target_soc=0.8, max_power_w=7400.0, phases=1)
    needs = charging_needs(spec, 1, one, None)["charging_needs"]
    assert needs["requested_energy_transfer"] == "AC_single_phase"
    assert needs["ac_charging_parameters"]["ev_max_current"] == 32
    assert needs["ac_charging_parameters"]["ev_min_current"] == 0
    assert needs["ac_charging_parameters"]["energy_amount"] == 12000
    assert "departure_time" not in needs
    assert [energy_transfer(p) for p in (1, 2, 3)] == [
        "AC_single_phase",
        "AC_two_phase",
        "AC_three_phase",
    ]


@pytest.mark.parametrize("phases", [1, 2, 3])
@pytest.mark.parametrize("max_power_w", [1400.0, 3680.0, 6600.0, 7400.0, 11000.0, 22080.0])
def test_max_current_times_voltage_and_phases_is_the_ev_max_power(
    phases: int, max_power_w: float
) -> None:
    spec = ChargerSpec.uniform(1, 22080.0, phases=phases, voltage_v=230.0)
    ev = Ev(capacity_kwh=60.0, soc=0.2, max_power_w=max_power_w, phases=3)
    params = charging_needs(spec, 1, ev, None)["charging_needs"]["ac_charging_parameters"]
    amps, volts = params["ev_max_current"], params["ev_max_voltage"]
    assert abs(amps * volts * phases - max_power_w) <= 0.5 * volts * phases
    assert 0 <= params["ev_min_current"] <= amps


async def test_the_needs_are_a_valid_2_0_1_request() -> None:
    spec = ChargerSpec.uniform(1, 7400.0, phases=1)
    ev = Ev(capacity_kwh=60.0, soc=0.2, max_power_w=7400.0, phases=1, energy_needed_wh=9000.0)
    payload = snake_to_camel_case(charging_needs(spec, 1, ev, T0))
    await validate_payload(Call("1", "NotifyEVChargingNeeds", payload), "2.0.1")


@asynccontextmanager
async def iso_charger(
    version: str, needs_status: str = "Accepted"
) -> AsyncIterator[tuple[Server, Any, ChargerRun]]:
    """One charger with an ISO 15118 EV plugged in at once for 10 simulated minutes."""
    clock = ScaledClock(datetime.now(UTC), SPEED)
    spec = ChargerSpec.uniform(1, 22080.0)
    cfg = ChargerConfig(f"ISO-{version}", version, spec)
    run = ChargerRun(cfg, Station(spec, clock.now()))
    now = clock.now()
    ev = Ev(
        capacity_kwh=60.0, soc=0.2, max_power_w=11000.0, energy_needed_wh=20000.0, iso15118=True
    )
    departure = now + timedelta(seconds=600)
    plan = [Arrival(now, SessionRequest(1, ev, "TAG1", departure=departure))]
    async with ocpp_server() as server:
        server.needs_status = needs_status
        task = asyncio.create_task(run_charger(run, server.url, clock, plan, None))
        try:
            csms = await server.charger(cfg.charger_id)
            yield server, csms, run
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


@pytest.mark.parametrize("answer", ["Accepted", "Rejected", "Processing"])
async def test_a_2_0_1_station_sends_the_needs_right_after_the_transaction_starts(
    answer: str,
) -> None:
    async with iso_charger("2.0.1", answer) as (_, csms, run):
        needs = await csms.wait_for("NotifyEVChargingNeeds")
        await csms.wait_for("TransactionEvent", lambda p: p["event_type"] == "Ended", 10)
    started = csms.of("TransactionEvent")[0]
    assert started["event_type"] == "Started"
    calls = [action for kind, action in csms.frames if kind == 2]
    first = calls.index("TransactionEvent")
    assert calls[first + 1] == "NotifyEVChargingNeeds"  # the next thing after Started
    assert len(csms.of("NotifyEVChargingNeeds")) == 1
    assert needs["evse_id"] == 1
    charging = needs["charging_needs"]
    assert charging["requested_energy_transfer"] == "AC_three_phase"
    assert charging["ac_charging_parameters"] == {
        "energy_amount": 20000,
        "ev_min_current": 0,
        "ev_max_current": 16,
        "ev_max_voltage": 230,
    }
    result = run.results[0]
    departure = datetime.fromisoformat(charging["departure_time"])
    assert result.departure is not None
    assert abs((departure - result.departure).total_seconds()) < 0.001
    assert result.iso15118
    assert result.needs_status == answer


async def test_a_1_6_charger_sends_no_needs_and_the_summary_says_so() -> None:
    async with iso_charger("1.6") as (server, csms, run):
        await csms.wait_for("StopTransaction", timeout=10)
    assert not [a for _, a in csms.frames if a == "NotifyEVChargingNeeds"]
    assert run.results[0].iso15118
    assert run.results[0].needs_status is None
    data = report([run], T0, T0, SPEED, server.url)
    assert data["sessions"][0]["iso15118"] is True
    assert data["sessions"][0]["needs_status"] is None
    text = summary({**data, "site_cap_kw": None})
    assert "none (1.6)" in text
    assert "ISO 15118 EVs 1, charging needs sent 0" in text


async def test_the_cli_share_marks_sessions_and_the_summary_counts_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.json"
    site.write_text(
        json.dumps(
            {
                "iso15118_share": 0.0,  # the flag wins over the site file
                "chargers": [{"id": "N", "version": "2.0.1", "count": 3}],
            }
        )
    )
    out = tmp_path / "report.json"
    async with ocpp_server() as server:
        code = await asyncio.to_thread(
            main,
            [
                "run",
                "--url",
                server.url,
                "--site",
                str(site),
                "--iso15118-share",
                "1",
                "--scenario",
                "random:3",
                "--duration",
                "900",
                "--speed",
                "900",
                "--quiet",
                "--report",
                str(out),
            ],
        )
        got = [p for cp in server.cps.values() for p in cp.of("NotifyEVChargingNeeds")]
    assert code == 0
    data = json.loads(out.read_text())
    sessions = data["sessions"]
    assert sessions
    assert data["iso15118_share"] == 1.0
    assert all(s["iso15118"] and s["needs_status"] == "Accepted" for s in sessions)
    assert len(got) == len(sessions)
    text = capsys.readouterr().out
    assert f"ISO 15118 EVs {len(sessions)}, charging needs sent {len(sessions)}" in text
    assert f"Accepted {len(sessions)}" in text


def test_the_cli_refuses_a_share_outside_0_1(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--url", "ws://127.0.0.1:9/ocpp", "--quiet", "--iso15118-share", "1.5"]
    assert main(args) == 2
    assert "--iso15118-share must be within [0, 1]" in capsys.readouterr().err
