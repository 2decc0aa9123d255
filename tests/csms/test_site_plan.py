"""A site's state → the optimizer's Problem → power schedules: reservations, the cap per step, each
session's max, window and energy, and the safety invariant over random sites (solved for real)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csms.domain.needs import Needs, Source
from csms.domain.profiles import PowerSchedule
from csms.domain.site_config import SiteConfig, parse_schedule
from csms.services.site_plan import (
    ConnectorState,
    PlanInputs,
    Reservation,
    SessionState,
    SiteSnapshot,
    committed_w,
    direction,
    grid_start,
    limit_range,
    lowered,
    plan_inputs,
    reservation,
    schedules,
)
from optimizer.planner import solve

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # on the site's 15-minute grid
NOW = START + timedelta(minutes=5, microseconds=250_000)  # planning happens inside a step
STEP = timedelta(minutes=15)
MIN_3PH = 6 * 3 * 230.0  # 6 A on three phases


def cfg(**over: Any) -> SiteConfig:
    base: dict[str, Any] = {"id": "S1", "capacity_kw": 100.0, "method": "lp", "horizon_hours": 24.0}
    return SiteConfig(**{**base, **over})


def needs(
    departure: datetime | None = None,
    energy_wh: float = 20_000.0,
    max_power_w: float | None = None,
    min_power_w: float | None = None,
    energy_source: Source = "operator",
) -> Needs:
    return Needs(
        departure=departure or START + timedelta(hours=8),
        energy_wh=energy_wh,
        max_power_w=max_power_w,
        min_power_w=min_power_w,
        departure_source="operator",
        energy_source=energy_source,
        power_source=None if max_power_w is None else "ev",
    )


def session(tx: int = 1, *, delivered_wh: float = 0.0, **over: Any) -> SessionState:
    ev_limit = over.pop("ev_limit_w", None)
    unmanaged = over.pop("unmanaged_reason", None)
    return SessionState(
        transaction_id=tx,
        ocpp_transaction_id=str(tx),
        started_at=START - timedelta(hours=1),
        needs=needs(**over),
        delivered_wh=delivered_wh,
        ev_limit_w=ev_limit,
        unmanaged_reason=unmanaged,
    )


def conn(
    cp: str = "A",
    evse: int = 1,
    *,
    connected: bool = True,
    controllable: bool = True,
    max_w: float = 22_000.0,
    min_w: float = MIN_3PH,
    default: float | None = None,
    sess: SessionState | None = None,
) -> ConnectorState:
    return ConnectorState(cp, evse, "ocpp1.6", connected, controllable, max_w, min_w, default, sess)


def snap(*connectors: ConnectorState, now: datetime = NOW, **config: Any) -> SiteSnapshot:
    return SiteSnapshot(cfg(**config), now, connectors)


# --- reservations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "watts", "reason"),
    [
        (conn(default=3_680.0), 3_680.0, "idle: TxDefaultProfile limit"),
        (conn(default=50_000.0), 22_000.0, "idle: TxDefaultProfile limit"),
        (conn(default=None), 22_000.0, "idle: no confirmed TxDefaultProfile"),
        (conn(default=0.0, controllable=False), 22_000.0, "idle: no confirmed TxDefaultProfile"),
        (conn(default=3_680.0, connected=False), 3_680.0, "idle: TxDefaultProfile limit"),
        (conn(connected=False, default=0.0, sess=session()), 22_000.0, "offline with a session"),
        (
            conn(connected=False, controllable=False, sess=session(unmanaged_reason="x")),
            22_000.0,
            "offline with a session",
        ),
        (conn(controllable=False, default=0.0, sess=session()), 22_000.0, "no smart charging"),
        (
            conn(default=0.0, sess=session(unmanaged_reason="TxProfile not accepted (Rejected)")),
            22_000.0,
            "TxProfile not accepted (Rejected)",
        ),
    ],
)
def test_reservation_rules(c: ConnectorState, watts: float, reason: str) -> None:
    assert reservation(c) == Reservation(("A", 1), watts, reason)


def test_idle_with_a_confirmed_zero_default_and_a_managed_session_reserve_nothing() -> None:
    assert reservation(conn(default=0.0)) is None
    assert reservation(conn(sess=session())) is None
    assert reservation(conn(default=None, sess=session(ev_limit_w=1_000.0))) is None


# --- plan inputs ----------------------------------------------------------------------------------


def test_plans_start_on_the_sites_step_grid() -> None:
    assert grid_start(START, 900) == START
    assert grid_start(NOW, 900) == START
    assert grid_start(START - timedelta(microseconds=1), 900) == START - STEP
    assert grid_start(datetime(2026, 1, 5, 8, 59, 59, tzinfo=UTC), 3600) == START
    assert grid_start(NOW, 300) == START + timedelta(minutes=5)


def test_no_connectors_plan_nothing_up_to_a_step_from_now() -> None:
    inputs = plan_inputs(snap(capacity_kw=50.0), min_power=False)
    assert inputs.problem is None
    assert inputs.start == START
    assert inputs.step_s == 900
    assert inputs.cap_kw == (50.0, 50.0)  # [08:00, 08:30) covers now + one step
    assert inputs.reservations == ()
    assert inputs.warnings == ()
    assert dict(inputs.planned) == {}


def test_only_idle_connectors_reserve_and_plan_nothing() -> None:
    inputs = plan_inputs(snap(conn("A"), conn("B", default=0.0)), min_power=False)
    assert inputs.problem is None
    assert inputs.reservations == (
        Reservation(("A", 1), 22_000.0, "idle: no confirmed TxDefaultProfile"),
    )
    assert inputs.reserved_w == 22_000.0


def test_planner_cap_is_the_usable_cap_minus_reservations() -> None:
    s = snap(
        conn("A", sess=session(1)),
        conn("B", default=11_000.0),  # idle, confirmed TxDefault 11 kW
        conn("C", connected=False, max_w=7_400.0, sess=session(3)),
        capacity_kw=50.0,
        safety_margin_kw=5.0,
    )
    inputs = plan_inputs(s, min_power=False)
    assert inputs.problem is not None
    assert inputs.reserved_w == 18_400.0
    assert set(inputs.cap_kw) == {45.0}
    assert all(c == pytest.approx(45.0 - 18.4) for c in inputs.problem.site.capacity_kw)
    assert [x.id for x in inputs.problem.sessions] == ["A/1"]
    assert dict(inputs.planned) == {"A/1": ("A", 1)}
    assert dict(inputs.transactions) == {"A/1": 1}
    assert inputs.warnings == ()


def test_reservations_above_the_cap_give_a_zero_planner_cap_and_a_warning() -> None:
    s = snap(
        conn("A", sess=session(1)),
        conn("B", connected=False, sess=session(2)),
        conn("C", connected=False, sess=session(3)),
        capacity_kw=40.0,
    )
    inputs = plan_inputs(s, min_power=False)
    assert inputs.problem is not None
    assert set(inputs.problem.site.capacity_kw) == {0.0}
    assert len(inputs.warnings) == 1
    assert "44.0 kW is reserved" in inputs.warnings[0]
    assert "usable cap of 40.0 kW" in inputs.warnings[0]
    result = solve(inputs.problem, "lp")
    assert all(w == 0.0 for w in schedules(inputs, result)[("A", 1)].watts)


def test_a_warning_when_reservations_exceed_the_cap_of_any_step_only() -> None:
    sched = parse_schedule(
        [{"from": "00:00", "kw": 100}, {"from": "09:00", "kw": 20}, {"from": "10:00", "kw": 100}],
        "kw",
        field_name="capacity_schedule",
        minimum=0.0,
    )
    s = snap(
        conn("A", sess=session(1)),
        conn("B", connected=False, max_w=30_000.0, sess=session(2)),
        capacity_schedule=sched,
        horizon_hours=4.0,
    )
    inputs = plan_inputs(s, min_power=False)
    assert inputs.problem is not None
    assert "30.0 kW is reserved" in inputs.warnings[0]
    assert "20.0 kW" in inputs.warnings[0]
    planner = inputs.problem.site.capacity_kw
    assert inputs.cap_kw[3:9] == (100.0, 20.0, 20.0, 20.0, 20.0, 100.0)  # 08:45 .. 10:00
    assert planner[3:9] == (70.0, 0.0, 0.0, 0.0, 0.0, 70.0)
    assert min(planner) >= 0.0


@pytest.mark.parametrize(
    ("max_w", "min_w", "ev_max", "ev_limit", "expected_w"),
    [
        (22_000.0, MIN_3PH, None, None, 22_000.0),
        (22_000.0, MIN_3PH, 11_000.0, None, 11_000.0),
        (22_000.0, MIN_3PH, 11_000.0, 7_000.0, 7_000.0),
        (22_000.0, MIN_3PH, 5_000.0, 9_000.0, 5_000.0),
        (22_000.0, MIN_3PH, 3_000.0, None, MIN_3PH),  # a slow EV is given the charger minimum
        (22_000.0, MIN_3PH, None, 1_000.0, MIN_3PH),
        (22_000.0, MIN_3PH, 0.0, None, MIN_3PH),
        (3_000.0, MIN_3PH, None, None, 3_000.0),  # the charger cannot do its minimum
        (3_000.0, MIN_3PH, 1_000.0, None, 1_000.0),
        (11_000.0, 0.0, 2_000.0, None, 2_000.0),
    ],
)
def test_session_max_power(
    max_w: float, min_w: float, ev_max: float | None, ev_limit: float | None, expected_w: float
) -> None:
    c = conn(max_w=max_w, min_w=min_w, sess=session(max_power_w=ev_max, ev_limit_w=ev_limit))
    for min_power in (False, True):
        inputs = plan_inputs(snap(c), min_power=min_power)
        assert inputs.problem is not None
        (s,) = inputs.problem.sessions
        assert s.max_power_kw == pytest.approx(expected_w / 1000.0)
        assert s.min_power_kw == (
            pytest.approx(min(min_w, expected_w) / 1000.0) if min_power else 0.0
        )


def test_window_energy_and_horizon() -> None:
    c = conn(sess=session(departure=START + timedelta(hours=1, minutes=7), delivered_wh=4_500.0))
    inputs = plan_inputs(snap(c), min_power=False)
    assert inputs.problem is not None
    (s,) = inputs.problem.sessions
    assert s.arrival == NOW
    assert s.departure == START + timedelta(hours=1, minutes=7)
    assert s.energy_kwh == pytest.approx(15.5)
    assert len(inputs.cap_kw) == 5  # ceil(67 / 15)
    assert inputs.problem.site.horizon_steps == 5
    assert inputs.problem.site.start == START


def test_departure_beyond_the_horizon_is_clipped() -> None:
    c = conn(sess=session(departure=START + timedelta(hours=30)))
    inputs = plan_inputs(snap(c, horizon_hours=4.0), min_power=False)
    assert inputs.problem is not None
    assert inputs.problem.sessions[0].departure == START + timedelta(hours=4)
    assert len(inputs.cap_kw) == 16


def test_an_overdue_session_gets_one_step_and_the_horizon_follows_the_latest() -> None:
    late = conn("A", sess=session(1, departure=START - timedelta(hours=2)))
    inputs = plan_inputs(snap(late), min_power=False)
    assert inputs.problem is not None
    assert inputs.problem.sessions[0].departure == NOW + STEP
    assert len(inputs.cap_kw) == 2
    on_grid = plan_inputs(snap(late, now=START), min_power=False)
    assert len(on_grid.cap_kw) == 1
    other = conn("B", sess=session(2, departure=START + timedelta(hours=2)))
    inputs = plan_inputs(snap(late, other), min_power=False)
    assert inputs.problem is not None
    assert [x.departure for x in inputs.problem.sessions] == [
        NOW + STEP,
        START + timedelta(hours=2),
    ]
    assert len(inputs.cap_kw) == 8


@pytest.mark.parametrize("source", ["ev", "operator"])
def test_a_known_need_that_was_delivered_plans_zero_energy(source: Source) -> None:
    c = conn(sess=session(energy_wh=10_000.0, delivered_wh=12_000.0, energy_source=source))
    inputs = plan_inputs(snap(c), min_power=False)
    assert inputs.problem is not None
    assert inputs.problem.sessions[0].energy_kwh == 0.0
    assert inputs.problem.sessions[0].priority == 1.0
    result = solve(inputs.problem, "lp")
    assert not any(schedules(inputs, result)[("A", 1)].watts)


def test_a_default_need_that_was_delivered_gets_another_default_amount_at_lower_priority() -> None:
    two_hours = START + timedelta(hours=2)
    topped = conn(
        "A",
        sess=session(
            1,
            departure=two_hours,
            energy_wh=20_000.0,
            delivered_wh=25_000.0,
            energy_source="site_default",
        ),
    )
    known = conn(
        "B", sess=session(2, departure=two_hours, energy_wh=20_000.0, delivered_wh=5_000.0)
    )
    inputs = plan_inputs(snap(topped, known, capacity_kw=11.0), min_power=False)
    assert inputs.problem is not None
    a, b = inputs.problem.sessions
    assert (a.energy_kwh, a.priority) == (20.0, 0.5)
    assert (b.energy_kwh, b.priority) == (15.0, 1.0)
    # 11 kW for 1 h 55 min cannot serve both: the known need is served first
    result = solve(inputs.problem, "lp")
    delivered = dict(zip(result.session_ids, result.delivered_kwh, strict=True))
    assert delivered["B/1"] == pytest.approx(15.0)
    assert delivered["A/1"] == pytest.approx(11.0 * (115 / 60) - 15.0, abs=0.01)
    still = conn(
        "C",
        sess=session(3, energy_wh=20_000.0, delivered_wh=5_000.0, energy_source="site_default"),
    )
    inputs = plan_inputs(snap(still), min_power=False)
    assert inputs.problem is not None
    (c,) = inputs.problem.sessions
    assert (c.energy_kwh, c.priority) == (15.0, 1.0)


def test_prices_follow_the_local_schedule_at_each_step_midpoint() -> None:
    prices = parse_schedule(
        [{"from": "00:00", "price": 0.1}, {"from": "09:30", "price": 0.5}],
        "price",
        field_name="price_schedule",
        minimum=None,
    )
    c = conn(sess=session(departure=START + timedelta(hours=3)))
    inputs = plan_inputs(
        snap(c, timezone="Europe/Berlin", price_schedule=prices), min_power=False
    )  # 09:05 local now, 09:00 at the start of the step
    assert inputs.problem is not None
    assert inputs.problem.site.price_per_kwh == (0.1, 0.1) + (0.5,) * 10
    assert plan_inputs(snap(c), min_power=False).problem.site.price_per_kwh is None  # type: ignore[union-attr]


def test_caps_follow_the_local_schedule_across_a_dst_change() -> None:
    sched = parse_schedule(
        [{"from": "00:00", "kw": 100}, {"from": "03:00", "kw": 40}, {"from": "04:00", "kw": 100}],
        "kw",
        field_name="capacity_schedule",
        minimum=0.0,
    )
    now = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 01:00 CET; at 01:00 UTC it is 03:00 CEST
    c = conn(sess=session(departure=now + timedelta(hours=4)))
    inputs = plan_inputs(
        snap(c, now=now, timezone="Europe/Berlin", capacity_schedule=sched), min_power=False
    )
    assert inputs.cap_kw == (100.0,) * 4 + (40.0,) * 4 + (100.0,) * 8


def test_the_cap_of_a_step_covers_the_whole_planned_step() -> None:
    sched = parse_schedule(
        [{"from": "00:00", "kw": 100}, {"from": "10:30", "kw": 10}, {"from": "10:32", "kw": 100}],
        "kw",
        field_name="capacity_schedule",
        minimum=0.0,
    )
    now = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    c = conn(sess=session(departure=now + timedelta(hours=4), energy_wh=200_000.0))
    # 1.01 min = 60.6 s, but the planner's steps are 61 s: 0.4 s of drift per step, so after
    # about 150 steps a step holds the drop at 10:30 while its cap was taken over an interval
    # ending before it
    inputs = plan_inputs(
        snap(c, now=now, capacity_schedule=sched, step_minutes=1.01), min_power=False
    )
    assert inputs.problem is not None
    watts = schedules(inputs, solve(inputs.problem, "lp"))[("A", 1)].watts
    step = timedelta(seconds=inputs.step_s)
    for k, w in enumerate(watts):
        lowest = inputs_config_cap(sched, now + k * step, step)
        assert w <= lowest * 1000.0, f"step {k}: {w} W planned, the cap falls to {lowest} kW"


def inputs_config_cap(sched: Any, start: datetime, length: timedelta) -> float:
    return cfg(capacity_schedule=sched).usable_cap_kw(start, length)


# --- schedules and commitment ---------------------------------------------------------------------


def test_without_a_result_every_planned_session_gets_zero() -> None:
    s = snap(conn("A", sess=session(1)), conn("B", sess=session(2)), conn("C"))
    inputs = plan_inputs(s, min_power=False)
    out = schedules(inputs, None)
    assert set(out) == {("A", 1), ("B", 1)}
    for sched in out.values():
        assert sched.start == START
        assert sched.step_s == 900
        assert sched.watts == (0.0,) * len(inputs.cap_kw)


def test_schedules_are_watts_with_solver_noise_clipped_and_missing_sessions_zero() -> None:
    s = snap(conn("A", sess=session(1)), conn("B", sess=session(2)), horizon_hours=0.5)
    inputs = plan_inputs(s, min_power=False)
    fake = SimpleNamespace(session_ids=("A/1",), session_power=lambda sid: np.array([-1e-9, 7.5]))
    out = schedules(inputs, fake)  # type: ignore[arg-type]
    assert out[("A", 1)].watts == (0.0, 7500.0)
    assert out[("B", 1)].watts == (0.0, 0.0)


def test_committed_is_reservations_plus_limits_of_planned_connectors() -> None:
    inputs = PlanInputs(
        START,
        900,
        None,
        {},
        (Reservation(("B", 1), 22_000.0, "offline"), Reservation(("C", 1), 3_000.0, "idle")),
        (50.0,),
    )
    limits = {("A", 1): 11_000.0, ("B", 1): 5_000.0}  # B is reserved: its max counts, not 5 kW
    assert committed_w(limits, inputs) == 36_000.0
    assert committed_w({}, inputs) == 25_000.0


# --- which way a new profile moves a limit -----------------------------------------------------


def ps(*watts: float) -> PowerSchedule:
    return PowerSchedule(START, 900, watts)


WINDOW = (NOW, START + 2 * STEP)  # what a dispatch started now may meet: this step and the next


def test_limit_range_over_an_interval_uses_the_fallback_outside_the_schedule() -> None:
    old = ps(11_000.0, 4_000.0)
    assert limit_range(old, 22_000.0, START, START + STEP) == (11_000.0, 11_000.0)
    assert limit_range(old, 22_000.0, NOW, START + 2 * STEP) == (4_000.0, 11_000.0)
    assert limit_range(old, 22_000.0, START + STEP, START + 3 * STEP) == (4_000.0, 22_000.0)
    assert limit_range(None, 7_000.0, START, START + STEP) == (7_000.0, 7_000.0)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (ps(11_000.0, 11_000.0), ps(5_000.0, 5_000.0), "decrease"),
        (ps(11_000.0, 11_000.0), ps(11_000.0, 11_000.0), "decrease"),  # no change: never up
        (ps(5_000.0, 5_000.0), ps(11_000.0, 11_000.0), "increase"),
        (ps(11_000.0, 11_000.0), ps(5_000.0, 15_000.0), "mixed"),
        (ps(11_000.0, 11_000.0), ps(5_000.0, 5_000.0, 22_000.0), "decrease"),  # after the window
        (None, ps(5_000.0, 5_000.0), "decrease"),  # against the fallback (TxDefault or maximum)
        (None, ps(30_000.0, 30_000.0), "increase"),
    ],
)
def test_direction_within_the_dispatch_window(
    old: PowerSchedule | None, new: PowerSchedule, expected: str
) -> None:
    assert direction(old, new, 22_000.0, WINDOW) == expected


def test_a_mixed_change_is_first_lowered_to_the_old_limits_in_the_window() -> None:
    old = ps(11_000.0, 11_000.0, 11_000.0)
    new = ps(5_000.0, 15_000.0, 15_000.0)
    first = lowered(old, new, 22_000.0, WINDOW)
    assert first.watts == (5_000.0, 11_000.0, 15_000.0)
    assert direction(old, first, 22_000.0, WINDOW) == "decrease"
    assert direction(first, new, 22_000.0, WINDOW) == "increase"


# --- the safety invariant on random sites ---------------------------------------------------------

BASE = datetime(2026, 3, 27, 0, 0, tzinfo=UTC)  # a DST change in Berlin two days later


@st.composite
def sites(draw: st.DrawFn) -> SiteSnapshot:
    zone = draw(st.sampled_from(["UTC", "Europe/Berlin"]))
    entries = draw(
        st.none()
        | st.lists(
            st.tuples(st.integers(0, 1439), st.integers(0, 150)),
            min_size=1,
            max_size=4,
            unique_by=lambda e: e[0],
        )
    )
    schedule = parse_schedule(
        [{"from": f"{m // 60:02d}:{m % 60:02d}", "kw": kw} for m, kw in entries or []],
        "kw",
        field_name="capacity_schedule",
        minimum=0.0,
    )
    config = SiteConfig(
        id="S1",
        timezone=zone,
        capacity_kw=float(draw(st.integers(0, 150))),
        capacity_schedule=schedule,
        safety_margin_kw=draw(st.sampled_from([0.0, 2.0, 10.0])),
        step_minutes=draw(st.sampled_from([5.0, 15.0, 30.0])),
        horizon_hours=draw(st.sampled_from([2.0, 6.0, 12.0])),
        method="lp",
    )
    now = BASE + timedelta(
        seconds=draw(st.integers(0, 3 * 86400)), microseconds=draw(st.integers(0, 999_999))
    )
    start = now.replace(microsecond=0)
    connectors = []
    for i in range(draw(st.integers(1, 7))):
        max_w = draw(st.sampled_from([3_680.0, 7_400.0, 11_000.0, 22_000.0]))
        min_w = draw(st.sampled_from([0.0, 1_380.0, MIN_3PH, 8_000.0]))
        sess = None
        if draw(st.integers(0, 3)) > 0:
            sess = SessionState(
                transaction_id=i + 1,
                ocpp_transaction_id=str(i + 1),
                started_at=start - timedelta(hours=1),
                needs=needs(
                    departure=start + timedelta(minutes=draw(st.integers(-120, 2000))),
                    energy_wh=float(draw(st.integers(0, 80_000))),
                    max_power_w=draw(st.none() | st.floats(0, 50_000)),
                    energy_source=draw(st.sampled_from(["ev", "operator", "site_default"])),
                ),
                delivered_wh=float(draw(st.integers(0, 30_000))),
                ev_limit_w=draw(st.none() | st.floats(500, 20_000)),
                unmanaged_reason=draw(st.sampled_from([None] * 5 + ["non-compliant"])),
            )
        connectors.append(
            ConnectorState(
                charge_point_id=f"cp{i}",
                evse_id=draw(st.integers(1, 2)),
                ocpp_version="ocpp1.6",
                connected=draw(st.integers(0, 9)) > 0,
                controllable=draw(st.integers(0, 9)) > 0,
                max_power_w=max_w,
                min_power_w=min_w,
                default_limit_w=draw(st.sampled_from([None, 0.0, 0.0, 1_000.0, 30_000.0])),
                session=sess,
            )
        )
    return SiteSnapshot(config, now, tuple(connectors))


def expected_max_w(c: ConnectorState) -> float:
    assert c.session is not None
    limit = min(
        x
        for x in (c.max_power_w, c.session.needs.max_power_w, c.session.ev_limit_w)
        if x is not None
    )
    return c.min_power_w if limit < c.min_power_w <= c.max_power_w else limit


@settings(max_examples=50, deadline=None)
@given(
    snapshot=sites(),
    method=st.sampled_from(["lp", "heuristic"]),
    min_power=st.booleans(),
)
def test_planned_power_plus_reservations_never_exceed_the_usable_cap(
    snapshot: SiteSnapshot, method: str, min_power: bool
) -> None:
    inputs = plan_inputs(snapshot, min_power=min_power)
    cfg_ = snapshot.config
    start, step = inputs.start, timedelta(seconds=inputs.step_s)
    n = len(inputs.cap_kw)
    assert 1 <= n <= max(1, int(cfg_.horizon_hours * 3600 // inputs.step_s))
    for k, cap in enumerate(inputs.cap_kw):
        assert cap == cfg_.usable_cap_kw(start + k * step, step)
    reserved = {r.key for r in inputs.reservations}
    assert reserved == {c.key for c in snapshot.connectors if reservation(c) is not None}
    reserved_kw = inputs.reserved_w / 1000.0
    if reserved_kw > min(inputs.cap_kw) + 1e-9:
        assert inputs.warnings
    result = None if inputs.problem is None else solve(inputs.problem, method, fallback=True)
    out = schedules(inputs, result)
    planned = {
        c.key: c for c in snapshot.connectors if c.session is not None and c.key not in reserved
    }
    assert set(out) == set(planned)
    horizon_end = start + n * step
    for key, sched in out.items():
        c = planned[key]
        assert c.session is not None
        assert len(sched.watts) == n
        max_w = expected_max_w(c)
        now = snapshot.now
        departure = min(horizon_end, max(c.session.needs.departure, now + step))
        need_wh = max(0.0, c.session.needs.energy_wh - c.session.delivered_wh)
        if need_wh == 0 and c.session.needs.energy_source == "site_default":
            need_wh = c.session.needs.energy_wh  # an unknown need is topped up
        need_kwh = need_wh / 1000.0
        energy = 0.0
        for k, w in enumerate(sched.watts):
            assert w <= max_w * (1 + 1e-6) + 1e-6, f"{key} step {k}: {w} W above {max_w} W"
            begin = start + k * step
            if begin >= departure:
                assert w == 0.0, f"{key} step {k}: {w} W after its departure"
            share = max(timedelta(0), min(departure, begin + step) - max(now, begin)) / step
            energy += w / 1000.0 * share * step.total_seconds() / 3600.0
        assert energy <= need_kwh * (1 + 1e-6) + 1e-6
    for k, cap in enumerate(inputs.cap_kw):
        planned_kw = sum(s.watts[k] for s in out.values()) / 1000.0
        assert planned_kw <= max(0.0, cap - reserved_kw) + 1e-6
        if reserved_kw <= cap:
            assert planned_kw + reserved_kw <= cap + 1e-6


def test_committed_power_of_a_plan_stays_under_the_cap_in_its_first_step() -> None:
    s = snap(
        conn("A", sess=session(1)),
        conn("B", sess=session(2, max_power_w=7_400.0)),
        conn("C", default=3_000.0),
        conn("D", connected=False, max_w=11_000.0, sess=session(4)),
        capacity_kw=30.0,
    )
    inputs = plan_inputs(s, min_power=False)
    assert inputs.problem is not None
    result = solve(inputs.problem, "lp")
    limits = {k: v.watts[0] for k, v in schedules(inputs, result).items()}
    assert math.isclose(sum(limits.values()), 16_000.0, rel_tol=1e-6)  # everything left is used
    assert committed_w(limits, inputs) <= inputs.cap_kw[0] * 1000.0 + 1e-6
    assert replace(inputs, reservations=()).reserved_w == 0.0
