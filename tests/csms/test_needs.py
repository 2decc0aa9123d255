"""What a session needs (ev > operator > site default, field by field) and what it draws
(``active_power_w`` from meter samples)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csms.domain.events import MeterSample, active_power_w
from csms.domain.needs import Needs, NeedsValues, energy_still_needed_wh, resolve_needs

START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
DWELL = timedelta(hours=8)
FAST = settings(max_examples=50, deadline=None)


def resolve(**inputs: NeedsValues) -> Needs:
    return resolve_needs(inputs, started_at=START, default_dwell=DWELL, default_energy_wh=20_000.0)


# --- precedence -----------------------------------------------------------------------------------


def test_no_source_gives_the_site_defaults() -> None:
    n = resolve()
    assert n.departure == START + DWELL
    assert n.energy_wh == 20_000.0
    assert n.max_power_w is None
    assert n.min_power_w is None
    assert (n.departure_source, n.energy_source, n.power_source) == (
        "site_default",
        "site_default",
        None,
    )


def test_operator_values_replace_the_defaults() -> None:
    n = resolve(operator=NeedsValues(START + timedelta(hours=2), 9_000.0, 7_400.0))
    assert (n.departure, n.energy_wh, n.max_power_w) == (
        START + timedelta(hours=2),
        9_000.0,
        7_400.0,
    )
    assert (n.departure_source, n.energy_source, n.power_source) == ("operator",) * 3


def test_the_ev_wins_field_by_field_and_an_empty_field_does_not_hide_a_lower_source() -> None:
    n = resolve(
        ev=NeedsValues(departure=START + timedelta(hours=3)),
        operator=NeedsValues(START + timedelta(hours=1), 15_000.0, 11_000.0, 1_400.0),
    )
    assert n.departure == START + timedelta(hours=3)
    assert n.departure_source == "ev"
    assert (n.energy_wh, n.energy_source) == (15_000.0, "operator")
    assert (n.max_power_w, n.power_source) == (11_000.0, "operator")
    assert n.min_power_w == 1_400.0


def test_the_ev_overrides_every_field_it_gives() -> None:
    n = resolve(
        ev=NeedsValues(START + timedelta(hours=5), 30_000.0, 50_000.0, 4_000.0),
        operator=NeedsValues(START + timedelta(hours=1), 15_000.0, 11_000.0, 1_400.0),
    )
    assert (n.departure, n.energy_wh, n.max_power_w, n.min_power_w) == (
        START + timedelta(hours=5),
        30_000.0,
        50_000.0,
        4_000.0,
    )
    assert (n.departure_source, n.energy_source, n.power_source) == ("ev", "ev", "ev")


def test_negative_values_are_ignored_but_zero_is_a_value() -> None:
    n = resolve(
        ev=NeedsValues(energy_wh=-1.0, max_power_w=-5.0, min_power_w=-1.0),
        operator=NeedsValues(energy_wh=0.0, max_power_w=3_000.0),
    )
    assert (n.energy_wh, n.energy_source) == (0.0, "operator")  # full: needs nothing
    assert (n.max_power_w, n.power_source) == (3_000.0, "operator")
    assert n.min_power_w is None


def test_unknown_sources_are_ignored() -> None:
    n = resolve(site_default=NeedsValues(energy_wh=1.0), driver=NeedsValues(energy_wh=2.0))
    assert (n.energy_wh, n.energy_source) == (20_000.0, "site_default")


def _maybe(strategy: st.SearchStrategy[float]) -> st.SearchStrategy[float | None]:
    return st.none() | strategy


needs_values = st.builds(
    NeedsValues,
    departure=st.none() | st.integers(-600, 3000).map(lambda m: START + timedelta(minutes=m)),
    energy_wh=_maybe(st.floats(-1000, 1e5, allow_nan=False)),
    max_power_w=_maybe(st.floats(-1000, 5e4, allow_nan=False)),
    min_power_w=_maybe(st.floats(-1000, 1e4, allow_nan=False)),
)


@FAST
@given(ev=st.none() | needs_values, operator=st.none() | needs_values)
def test_each_field_comes_from_the_highest_source_that_gives_it(
    ev: NeedsValues | None, operator: NeedsValues | None
) -> None:
    inputs = {k: v for k, v in (("ev", ev), ("operator", operator)) if v is not None}
    n = resolve_needs(inputs, started_at=START, default_dwell=DWELL, default_energy_wh=20_000.0)
    ordered = [(src, inputs[src]) for src in ("ev", "operator") if src in inputs]

    def first(attr: str, valid: object) -> tuple[object, str | None]:
        for src, v in ordered:
            value = getattr(v, attr)
            if value is not None and valid(value):  # type: ignore[operator]
                return value, src
        return None, None

    dep, dep_src = first("departure", lambda _: True)
    assert (n.departure, n.departure_source) == (
        (dep, dep_src) if dep is not None else (START + DWELL, "site_default")
    )
    energy, energy_src = first("energy_wh", lambda x: x >= 0)
    assert (n.energy_wh, n.energy_source) == (
        (energy, energy_src) if energy is not None else (20_000.0, "site_default")
    )
    assert (n.max_power_w, n.power_source) == first("max_power_w", lambda x: x >= 0)
    assert n.min_power_w == first("min_power_w", lambda x: x >= 0)[0]


# --- energy still needed --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("need", "delivered", "left"),
    [(20_000, 0, 20_000), (20_000, 5_000, 15_000), (20_000, 25_000, 0), (20_000, -300, 20_000)],
)
def test_energy_still_needed(need: float, delivered: float, left: float) -> None:
    n = resolve(operator=NeedsValues(energy_wh=need))
    assert energy_still_needed_wh(n, delivered) == left


@FAST
@given(
    need=st.floats(0, 1e6, allow_nan=False),
    a=st.floats(-1e6, 1e6, allow_nan=False),
    b=st.floats(-1e6, 1e6, allow_nan=False),
)
def test_energy_still_needed_is_bounded_and_never_grows_with_delivery(
    need: float, a: float, b: float
) -> None:
    n = resolve(operator=NeedsValues(energy_wh=need))
    lo, hi = sorted((a, b))
    assert 0.0 <= energy_still_needed_wh(n, hi) <= energy_still_needed_wh(n, lo) <= need


# --- active power from meter samples --------------------------------------------------------------

T = START


def power(value: float, unit: str = "W", phase: str = "", context: str = "") -> MeterSample:
    return MeterSample(T, "Power.Active.Import", value, unit=unit, phase=phase, context=context)


def test_no_power_sample_is_none() -> None:
    assert active_power_w([]) is None
    assert active_power_w([MeterSample(T, "Energy.Active.Import.Register", 5.0, "kWh")]) is None
    assert active_power_w([MeterSample(T, "Current.Import", 16.0, "A", phase="L1")]) is None


def test_a_total_in_watts_or_kilowatts() -> None:
    assert active_power_w([power(7400.0)]) == 7400.0
    assert active_power_w([power(7.4, "kW")]) == 7400.0


def test_per_phase_values_are_summed_when_no_total_is_given() -> None:
    samples = [power(2.3, "kW", "L1-N"), power(2300.0, "W", "L2-N"), power(2300.0, "W", "L3-N")]
    assert active_power_w(samples) == pytest.approx(6900.0)
    assert active_power_w([power(1000.0, phase="L1"), power(500.0, phase="L2")]) == 1500.0


def test_a_total_wins_over_phases_whatever_the_order() -> None:
    phases = [power(1000.0, phase="L1"), power(1000.0, phase="L2")]
    assert active_power_w([*phases, power(5000.0)]) == 5000.0
    assert active_power_w([power(5000.0), *phases]) == 5000.0


def test_the_last_reading_wins() -> None:
    assert active_power_w([power(1000.0), power(2000.0)]) == 2000.0
    assert active_power_w([power(1000.0, phase="L1"), power(300.0, phase="L1")]) == 300.0


def test_transaction_begin_readings_are_ignored() -> None:
    assert active_power_w([power(9000.0, context="Transaction.Begin")]) is None
    samples = [power(1000.0, context="Sample.Periodic"), power(9000.0, context="Transaction.Begin")]
    assert active_power_w(samples) == 1000.0
    assert active_power_w([power(800.0, context="Transaction.End")]) == 800.0
