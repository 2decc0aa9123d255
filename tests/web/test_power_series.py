"""The metered site power per step behind the overview chart (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from csms.services.console import power_per_step

T0 = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)


def test_energy_between_readings_is_spread_over_the_steps_it_spans() -> None:
    # 11 kW for 30 min on one meter, 5.5 kW for the first 15 min on another
    regs = [
        ("a", T0, 0.0),
        ("a", T0 + timedelta(minutes=30), 5500.0),
        ("b", T0, 100.0),
        ("b", T0 + timedelta(minutes=15), 1475.0),
    ]
    assert power_per_step(regs, T0, STEP, 3) == [16.5, 11.0, None]


def test_the_step_under_way_is_averaged_over_its_elapsed_part() -> None:
    regs = [("a", T0, 0.0), ("a", T0 + timedelta(minutes=5), 500.0)]
    assert power_per_step(regs, T0, STEP, 2) == [2.0, None]
    # at 07:07 the readings cover the first 5 minutes: 500 Wh in 5 min is 6 kW
    assert power_per_step(regs, T0, STEP, 2, T0 + timedelta(minutes=7)) == [6.0, None]
    # a finished step keeps its mean over the whole step
    assert power_per_step(regs, T0, STEP, 2, T0 + timedelta(minutes=20)) == [2.0, None]


def test_a_meter_reset_and_readings_outside_the_window_are_ignored() -> None:
    regs = [
        ("a", T0 - timedelta(minutes=15), 0.0),
        ("a", T0, 2750.0),  # before the window: 11 kW, not counted
        ("a", T0 + timedelta(minutes=15), 10.0),  # register went down: skipped
    ]
    assert power_per_step(regs, T0, STEP, 2) == [None, None]
