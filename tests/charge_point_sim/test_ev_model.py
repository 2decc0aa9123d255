"""The EV model: exact energy integration, taper near full, SoC cap; the meter; charging on a charger."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from charge_point_sim.charger_model import ChargerState
from charge_point_sim.charging import charge, charge_station, share_station_power
from charge_point_sim.errors import InvalidModelError
from charge_point_sim.ev_model import Ev, Meter, acceptance_w, power_at, step
from charge_point_sim.profiles import Kind, Purpose, RateUnit
from tests.charge_point_sim.helpers import HOUR, T0, V, install_all, profile, spec

# 60 kWh, 20 % full, 11 kW three-phase; taper from 80 % down to 10 % of max at 100 %.
EV = Ev(capacity_kwh=60.0, soc=0.2, max_power_w=11000.0)


def steps(ev: Ev, limit_w: float, total_s: float, n: int) -> tuple[Ev, float]:
    energy = 0.0
    for _ in range(n):
        ev, e = step(ev, limit_w, total_s / n)
        energy += e
    return ev, energy


def test_constant_power_for_an_hour_gives_exactly_p_times_one_hour() -> None:
    ev, energy = step(EV, 7400.0, HOUR)
    assert energy == 7400.0
    assert ev.soc == pytest.approx(0.2 + 7.4 / 60, rel=1e-12)
    assert ev.delivered_wh == 7400.0
    # The EV's own maximum binds when the limit is higher.
    _, energy = step(EV, 50000.0, HOUR)
    assert energy == 11000.0


def test_many_small_steps_give_the_same_energy_as_one_big_step() -> None:
    ev = replace(EV, soc=0.7)
    one, e1 = step(ev, 11000.0, 3 * HOUR)
    many, e2 = steps(ev, 11000.0, 3 * HOUR, 1080)
    assert e1 == pytest.approx(e2, rel=1e-9)
    assert one.soc == pytest.approx(many.soc, rel=1e-9)


def test_taper_reduces_power_near_full() -> None:
    assert acceptance_w(replace(EV, soc=0.5)) == 11000.0
    assert acceptance_w(replace(EV, soc=0.8)) == pytest.approx(11000.0)
    # Halfway through the taper: 11 000 x (1 - 0.9 x 0.5) = 6050 W.
    assert acceptance_w(replace(EV, soc=0.9)) == pytest.approx(6050.0)
    assert acceptance_w(replace(EV, soc=0.9999999)) == pytest.approx(1100.0, rel=1e-5)
    assert acceptance_w(replace(EV, soc=1.0)) == 0.0
    ev = replace(EV, soc=0.9)
    assert power_at(ev, 11000.0) == pytest.approx(6050.0)
    assert power_at(ev, 4000.0) == 4000.0  # the limit still binds below the taper
    # Over an hour from 80 % at full power the taper delivers less than P x 1 h.
    _, energy = step(replace(EV, soc=0.8), 11000.0, HOUR)
    assert energy < 11000.0 * 0.95


def test_limit_binds_until_the_taper_meets_it_then_the_taper_binds() -> None:
    # Limit 6050 W = the taper at 90 %: constant 6050 W from 80 % to 90 % (6 kWh), then tapering.
    ev = replace(EV, soc=0.8)
    t_const = 6000.0 / 6050.0 * HOUR
    mid, energy = step(ev, 6050.0, t_const)
    assert mid.soc == pytest.approx(0.9, rel=1e-12)
    assert energy == pytest.approx(6000.0, rel=1e-12)
    after, _ = step(mid, 6050.0, 60.0)
    assert power_at(after, 6050.0) < 6050.0


def test_taper_closed_form_matches_the_ode() -> None:
    # From 90 %: ds/dt = a(s) / (3600 C) with a(s) falling linearly; check against fine Euler steps.
    ev = replace(EV, soc=0.9)
    exact, e_exact = step(ev, 11000.0, 1800.0)
    s, energy = ev.soc, 0.0
    n = 20_000
    dt = 1800.0 / n
    for _ in range(n):
        p = acceptance_w(replace(ev, soc=s))
        s += p * dt / 3600.0 / 60000.0
        energy += p * dt / 3600.0
    assert e_exact == pytest.approx(energy, rel=1e-4)
    assert exact.soc == pytest.approx(s, rel=1e-6)


def test_soc_never_exceeds_the_target_or_100_percent() -> None:
    full, energy = step(EV, 11000.0, 100 * HOUR)
    assert full.soc == 1.0
    assert energy == pytest.approx(0.8 * 60000.0)
    assert full.full
    again, more = step(full, 11000.0, HOUR)
    assert (again, more) == (full, 0.0)
    capped, energy = step(replace(EV, target_soc=0.5), 11000.0, 10 * HOUR)
    assert capped.soc == 0.5
    assert energy == pytest.approx(0.3 * 60000.0)


def test_min_power_zero_limit_and_zero_dt_draw_nothing() -> None:
    ev = replace(EV, min_power_w=6 * V * 3)
    assert step(ev, 4000.0, HOUR) == (ev, 0.0)
    assert power_at(ev, 4000.0) == 0.0
    assert step(EV, 0.0, HOUR) == (EV, 0.0)
    assert step(EV, -5.0, HOUR) == (EV, 0.0)
    assert step(EV, 11000.0, 0.0) == (EV, 0.0)


def test_step_rejects_bad_arguments() -> None:
    for dt in (-1.0, math.nan, math.inf):
        with pytest.raises(InvalidModelError):
            step(EV, 1000.0, dt)
    with pytest.raises(InvalidModelError):
        step(EV, math.nan, 10.0)


def test_infinite_limit_means_the_ev_max() -> None:
    _, energy = step(EV, math.inf, HOUR)
    assert energy == 11000.0


def test_needs_room_and_declared_energy() -> None:
    assert EV.room_wh == pytest.approx(48000.0)
    assert EV.needs_wh == pytest.approx(48000.0)
    ev = replace(EV, energy_needed_wh=20000.0)
    ev, _ = step(ev, 11000.0, HOUR)
    assert ev.needs_wh == pytest.approx(9000.0)
    ev, _ = step(ev, 11000.0, 2 * HOUR)
    assert ev.needs_wh == 0.0  # over-delivered compared to the declaration: never negative


@pytest.mark.parametrize(
    "changes",
    [
        {"capacity_kwh": 0.0},
        {"soc": 1.2},
        {"soc": -0.1},
        {"target_soc": 1.5},
        {"max_power_w": 0.0},
        {"phases": 0},
        {"taper_start_soc": 0.0},
        {"taper_end_fraction": 0.0},
        {"min_power_w": -1.0},
        {"energy_needed_wh": -1.0},
        {"delivered_wh": math.nan},
        {"departure": datetime(2026, 3, 2, 18)},
    ],
)
def test_ev_rejects_nonsense(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidModelError):
        replace(EV, **changes)


def test_no_taper_charges_at_full_power_to_the_end() -> None:
    ev = replace(EV, taper_start_soc=1.0, soc=0.9)
    full, energy = step(ev, 11000.0, HOUR)
    assert full.soc == 1.0
    assert energy == pytest.approx(6000.0)
    ev = replace(EV, taper_end_fraction=1.0, soc=0.9)
    assert step(ev, 11000.0, HOUR)[1] == pytest.approx(6000.0)


def test_meter_register_is_monotonic_and_readings_are_consistent() -> None:
    meter = Meter()
    ev = replace(EV, soc=0.75)
    readings = []
    t = T0
    for _ in range(60):
        ev, energy = step(ev, 11000.0, 600.0)
        meter = meter.add(energy)
        t += timedelta(seconds=600)
        readings.append(meter.read(t, power_at(ev, 11000.0), voltage_v=V, phases=3, soc=ev.soc))
    registers = [r.energy_wh for r in readings]
    assert registers == sorted(registers)
    assert registers[-1] == pytest.approx(0.25 * 60000.0)
    for r in readings:
        assert r.current_a == pytest.approx(r.power_w / (V * 3))
        assert r.soc_percent is not None
        assert 0.0 <= r.soc_percent <= 100.0
    assert readings[-1].power_w == 0.0
    assert readings[-1].soc_percent == 100.0


def test_meter_refuses_energy_flowing_backwards_and_bad_readings() -> None:
    with pytest.raises(InvalidModelError):
        Meter(10.0).add(-1.0)
    meter = Meter(10.0)
    with pytest.raises(InvalidModelError):
        meter.read(datetime(2026, 3, 2), 0.0, voltage_v=V, phases=3)
    with pytest.raises(InvalidModelError):
        meter.read(T0, 0.0, voltage_v=V, phases=0)
    with pytest.raises(InvalidModelError):
        meter.read(T0, -1.0, voltage_v=V, phases=1)
    r = meter.read(T0, 3680.0, voltage_v=V, phases=1)
    assert (r.current_a, r.soc_percent) == (pytest.approx(16.0), None)


def test_charging_on_a_charger_follows_the_limit_inside_a_step() -> None:
    c = spec()
    # 16 A for 30 minutes, then 6 A: one 1-hour step must see both.
    state = install_all(c, ChargerState(), (0, profile(1, [(0, 16), (1800, 6)], start=T0)))
    ev, energy = charge(c, state, 1, replace(EV, max_power_w=22080.0), T0, HOUR)
    assert energy == pytest.approx(16 * V * 3 * 0.5 + 6 * V * 3 * 0.5)
    assert ev.delivered_wh == pytest.approx(energy)


def test_charging_a_single_phase_ev_under_an_amp_limit() -> None:
    c = spec()
    state = ChargerState().start_transaction(1, "tx", T0)
    tx = profile(1, [(0, 16)], purpose=Purpose.TX, kind=Kind.RELATIVE)
    state = install_all(c, state, (1, tx))
    one_phase = replace(EV, phases=1, max_power_w=7400.0)
    _, energy = charge(c, state, 1, one_phase, T0, HOUR)
    assert energy == pytest.approx(16 * V)  # 16 A on one phase for one hour


def test_share_station_power_water_fills() -> None:
    assert share_station_power(15000.0, {1: 11000.0, 2: 11000.0}) == {1: 7500.0, 2: 7500.0}
    assert share_station_power(15000.0, {1: 3000.0, 2: 20000.0}) == {1: 3000.0, 2: 12000.0}
    assert share_station_power(50000.0, {1: 3000.0, 2: 20000.0}) == {1: 3000.0, 2: 20000.0}
    assert share_station_power(0.0, {1: 3000.0}) == {1: 0.0}
    assert share_station_power(1000.0, {}) == {}


def test_charge_point_max_is_shared_by_all_connectors() -> None:
    # OCPP 1.6 3.13.3: 11 040 W for the whole charger, two EVs wanting 11 kW each: 5520 W each.
    c = spec()
    cp_max = profile(1, [(0, 11040)], purpose=Purpose.CHARGE_POINT_MAX, unit=RateUnit.W)
    state = install_all(c, ChargerState(), (0, cp_max))
    out = charge_station(c, state, {1: EV, 2: replace(EV, soc=0.5)}, T0, HOUR)
    assert out[1][1] == pytest.approx(5520.0)
    assert out[2][1] == pytest.approx(5520.0)
    # One EV alone gets the whole station maximum (capped by its own 11 kW).
    alone = charge_station(c, state, {2: EV}, T0, HOUR)
    assert alone[2][1] == pytest.approx(11000.0)


def test_station_sharing_follows_limit_changes_and_the_taper() -> None:
    c = spec()
    # Station max 20 kW for 30 min, then 8 kW; EV 2 is nearly full and takes little.
    cp_max = profile(1, [(0, 20000), (1800, 8000)], purpose=Purpose.CHARGE_POINT_MAX,
                     unit=RateUnit.W, start=T0)  # fmt: skip
    state = install_all(c, ChargerState(), (0, cp_max))
    nearly_full = replace(EV, soc=0.99)
    out = charge_station(c, state, {1: EV, 2: nearly_full}, T0, HOUR)
    total = out[1][1] + out[2][1]
    assert total <= 20000 * 0.5 + 8000 * 0.5 + 1e-6
    assert out[1][1] > out[2][1]
