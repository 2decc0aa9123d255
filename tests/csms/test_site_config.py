"""Site settings: time-of-day cap and price schedules in the site's local time (DST days included),
the usable cap of a step, and validation errors that name the field."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csms.domain.site_config import (
    DailySchedule,
    SiteConfig,
    SiteConfigError,
    parse_schedule,
    schedule_to_json,
    site_config_from_row,
)

BERLIN = "Europe/Berlin"
QUARTER = timedelta(minutes=15)
FAST = settings(max_examples=50, deadline=None)

DAY_CAPS = [
    {"from": "00:00", "kw": 100},
    {"from": "07:00", "kw": 60},
    {"from": "17:00", "kw": 40},
    {"from": "22:00", "kw": 100},
]


def caps(raw: list[dict[str, Any]]) -> DailySchedule:
    return parse_schedule(raw, "kw", field_name="capacity_schedule", minimum=0.0)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- DailySchedule ----------------------------------------------------------------------------


def test_empty_schedule_is_the_base_value_all_day() -> None:
    assert DailySchedule().value_at_minute(0, 42.0) == 42.0
    assert DailySchedule().value_at_minute(1439, 42.0) == 42.0
    assert DailySchedule().values == ()


def test_each_value_holds_until_the_next_entry_and_the_last_wraps_past_midnight() -> None:
    s = caps([{"from": "06:00", "kw": 10}, {"from": "18:30", "kw": 20}])
    assert s.value_at_minute(0, 99.0) == 20.0  # before the first entry: yesterday's last one
    assert s.value_at_minute(359, 99.0) == 20.0
    assert s.value_at_minute(360, 99.0) == 10.0
    assert s.value_at_minute(18 * 60 + 29, 99.0) == 10.0
    assert s.value_at_minute(18 * 60 + 30, 99.0) == 20.0
    assert s.value_at_minute(1439, 99.0) == 20.0
    assert s.values == (10.0, 20.0)


entry_minutes = st.lists(st.integers(0, 1439), min_size=1, max_size=6, unique=True)


@FAST
@given(minutes=entry_minutes, data=st.data())
def test_value_at_minute_is_the_latest_entry_at_or_before_it(
    minutes: list[int], data: st.DataObject
) -> None:
    values = data.draw(st.lists(st.integers(0, 500), min_size=len(minutes), max_size=len(minutes)))
    raw = [
        {"from": f"{m // 60}:{m % 60:02d}", "kw": v} for m, v in zip(minutes, values, strict=True)
    ]
    s = caps(raw)
    by_minute = dict(zip(minutes, values, strict=True))
    for minute in range(0, 1440, 7):
        started = [m for m in by_minute if m <= minute]
        expected = by_minute[max(started)] if started else by_minute[max(by_minute)]
        assert s.value_at_minute(minute, -1.0) == expected


# --- parsing and the stored form ---------------------------------------------------------------


def test_parse_sorts_normalises_and_round_trips() -> None:
    s = caps(
        [{"from": "17:00", "kw": 40}, {"from": "7:05", "kw": 60.5}, {"from": "00:00", "kw": 0}]
    )
    assert s.entries == ((0, 0.0), (425, 60.5), (1020, 40.0))
    stored = schedule_to_json(s, "kw")
    assert stored == [
        {"from": "00:00", "kw": 0.0},
        {"from": "07:05", "kw": 60.5},
        {"from": "17:00", "kw": 40.0},
    ]
    assert caps(stored) == s


def test_none_is_an_empty_schedule_and_prices_may_be_negative() -> None:
    assert caps(None) == DailySchedule()  # type: ignore[arg-type]
    prices = parse_schedule(
        [{"from": "12:00", "price": -0.05}], "price", field_name="price_schedule", minimum=None
    )
    assert prices.entries == ((720, -0.05),)


@FAST
@given(minutes=entry_minutes, data=st.data())
def test_stored_form_round_trips(minutes: list[int], data: st.DataObject) -> None:
    values = data.draw(
        st.lists(st.floats(0, 1e6, allow_nan=False), min_size=len(minutes), max_size=len(minutes))
    )
    s = DailySchedule(tuple(sorted(zip(minutes, values, strict=True))))
    assert caps(schedule_to_json(s, "kw")) == s


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("07:00", "capacity_schedule must be a list"),
        ({"from": "07:00", "kw": 1}, "capacity_schedule must be a list"),
        (b"07:00", "capacity_schedule must be a list"),
        ([1], "capacity_schedule[0] must be an object"),
        ([{"from": "24:00", "kw": 1}], "capacity_schedule[0].from must be a time of day"),
        ([{"from": "7:5", "kw": 1}], "capacity_schedule[0].from must be a time of day"),
        ([{"from": 700, "kw": 1}], "capacity_schedule[0].from must be a time of day"),
        ([{"kw": 1}], "capacity_schedule[0].from must be a time of day"),
        ([{"from": "07:00"}], "capacity_schedule[0].kw must be a number"),
        ([{"from": "07:00", "kw": True}], "capacity_schedule[0].kw must be a number"),
        ([{"from": "07:00", "kw": "5"}], "capacity_schedule[0].kw must be a number"),
        ([{"from": "07:00", "kw": -1}], "capacity_schedule[0].kw must be a finite number >= 0"),
        ([{"from": "07:00", "kw": math.nan}], "capacity_schedule[0].kw must be a finite number"),
        ([{"from": "07:00", "kw": math.inf}], "capacity_schedule[0].kw must be a finite number"),
        (
            [{"from": "07:00", "kw": 1}, {"from": "7:00", "kw": 2}],
            "capacity_schedule[1].from 7:00 appears twice",
        ),
        (
            [{"from": "00:00", "kw": 1}, {"from": "12:00", "kw": 1}, {"from": "x", "kw": 1}],
            "capacity_schedule[2].from",
        ),
    ],
)
def test_schedule_errors_name_the_entry_and_field(raw: Any, message: str) -> None:
    with pytest.raises(SiteConfigError) as info:
        caps(raw)
    assert message in str(info.value)


def test_a_huge_integer_value_is_a_named_validation_error() -> None:
    with pytest.raises(SiteConfigError, match=r"capacity_schedule\[0\]\.kw"):
        caps([{"from": "00:00", "kw": 10**400}])


# --- SiteConfig validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"capacity_kw": -1.0}, "capacity_kw"),
        ({"capacity_kw": math.nan}, "capacity_kw"),
        ({"safety_margin_kw": math.inf}, "safety_margin_kw"),
        ({"tx_default_kw": -0.1}, "tx_default_kw"),
        ({"default_energy_kwh": -5.0}, "default_energy_kwh"),
        ({"default_dwell_hours": 0.0}, "default_dwell_hours"),
        ({"default_charger_max_kw": 0.0}, "default_charger_max_kw"),
        ({"horizon_hours": -1.0}, "horizon_hours"),
        ({"horizon_hours": math.inf}, "horizon_hours"),
        ({"step_minutes": 0.5}, "step_minutes"),
        ({"step_minutes": 61.0}, "step_minutes"),
        ({"step_minutes": math.nan}, "step_minutes"),
        ({"horizon_hours": 48.5, "step_minutes": 1.0}, "2880 steps"),
        ({"method": "simplex"}, "method must be one of lp, milp, heuristic"),
    ],
)
def test_invalid_settings_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SiteConfigError) as info:
        SiteConfig(id="S1", **changes)
    assert field in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"capacity_kw": 0.0, "safety_margin_kw": 0.0, "default_energy_kwh": 0.0},
        {"step_minutes": 1.0, "horizon_hours": 48.0},  # exactly 2880 steps
        {"step_minutes": 60.0},
        {"method": "heuristic", "timezone": "America/New_York"},
    ],
)
def test_boundary_settings_are_accepted(changes: dict[str, Any]) -> None:
    SiteConfig(id="S1", **changes)


def _row(**over: Any) -> SimpleNamespace:
    base: dict[str, Any] = {
        "id": "S1",
        "timezone": None,
        "capacity_kw": 50,
        "capacity_schedule": [],
        "price_schedule": [{"from": "08:00", "price": 0.3}],
        "safety_margin_kw": 2,
        "tx_default_kw": 0,
        "default_dwell_hours": 8,
        "default_energy_kwh": 20,
        "default_charger_max_kw": 22,
        "method": "lp",
        "step_minutes": 15,
        "horizon_hours": 24,
        "smart_charging": 1,
    }
    return SimpleNamespace(**{**base, **over})


def test_config_from_a_row() -> None:
    cfg = site_config_from_row(_row())
    assert cfg.timezone == "UTC"  # no zone stored: UTC
    assert cfg.capacity_kw == 50.0
    assert cfg.price_schedule.entries == ((480, 0.3),)
    assert cfg.smart_charging is True
    assert cfg.step == QUARTER


def test_a_bad_stored_schedule_names_its_field() -> None:
    with pytest.raises(SiteConfigError, match=r"price_schedule\[0\]\.price"):
        site_config_from_row(_row(price_schedule=[{"from": "08:00", "price": "cheap"}]))
    with pytest.raises(SiteConfigError, match=r"capacity_schedule\[0\]\.kw"):
        site_config_from_row(_row(capacity_schedule=[{"from": "08:00", "kw": -3}]))


# --- cap and price at an instant, local time ---------------------------------------------------


def test_cap_follows_local_time_in_winter_and_summer() -> None:
    cfg = SiteConfig(id="S1", timezone=BERLIN, capacity_kw=999, capacity_schedule=caps(DAY_CAPS))
    # winter: UTC+1
    assert cfg.cap_at(utc(2026, 1, 15, 15, 59)) == 60.0  # 16:59 local
    assert cfg.cap_at(utc(2026, 1, 15, 16, 0)) == 40.0  # 17:00 local
    assert cfg.cap_at(utc(2026, 1, 15, 21, 0)) == 100.0  # 22:00 local
    # summer: UTC+2
    assert cfg.cap_at(utc(2026, 7, 15, 14, 59)) == 60.0
    assert cfg.cap_at(utc(2026, 7, 15, 15, 0)) == 40.0
    # any offset of the same instant gives the same answer
    instant = utc(2026, 7, 15, 15, 30)
    assert cfg.cap_at(instant.astimezone(ZoneInfo("Asia/Tokyo"))) == cfg.cap_at(instant)


def test_price_is_none_without_a_schedule_and_local_with_one() -> None:
    assert SiteConfig(id="S1").price_at(utc(2026, 1, 1)) is None
    prices = parse_schedule(
        [{"from": "06:00", "price": 0.4}, {"from": "22:00", "price": 0.1}],
        "price",
        field_name="price_schedule",
        minimum=None,
    )
    cfg = SiteConfig(id="S1", timezone=BERLIN, price_schedule=prices)
    assert cfg.price_at(utc(2026, 1, 15, 4, 59)) == 0.1  # 05:59 local
    assert cfg.price_at(utc(2026, 1, 15, 5, 0)) == 0.4
    assert cfg.price_at(utc(2026, 1, 15, 21, 0)) == 0.1


@pytest.mark.parametrize(
    ("day", "quarters", "night_quarters"),
    [
        (datetime(2026, 3, 29), 92, 24),  # spring forward: 23 h, the night is 6 h
        (datetime(2026, 10, 25), 100, 32),  # fall back: 25 h, the night is 8 h
        (datetime(2026, 6, 1), 96, 28),
    ],
)
def test_dst_days_have_the_right_number_of_steps_at_each_cap(
    day: datetime, quarters: int, night_quarters: int
) -> None:
    zone = ZoneInfo(BERLIN)
    cfg = SiteConfig(
        id="S1",
        timezone=BERLIN,
        capacity_kw=999,
        capacity_schedule=caps(DAY_CAPS),
        safety_margin_kw=5,
    )
    start = day.replace(tzinfo=zone).astimezone(UTC)
    end = (day + timedelta(days=1)).replace(tzinfo=zone).astimezone(UTC)
    n = round((end - start) / QUARTER)
    assert n == quarters
    usable = [cfg.usable_cap_kw(start + k * QUARTER, QUARTER) for k in range(n)]
    assert usable.count(35.0) == 20  # 17:00-22:00 local: 5 h every day
    assert usable.count(55.0) == 40  # 07:00-17:00 local
    assert usable.count(95.0) == night_quarters + 8  # 22:00-07:00
    for k, u in enumerate(usable):
        assert u == cfg.cap_at(start + k * QUARTER) - 5  # schedule changes on quarter-hours


def test_an_entry_in_the_skipped_hour_starts_when_the_clock_jumps_past_it() -> None:
    cfg = SiteConfig(
        id="S1",
        timezone=BERLIN,
        capacity_schedule=caps([{"from": "00:00", "kw": 100}, {"from": "02:30", "kw": 30}]),
    )
    assert cfg.cap_at(utc(2026, 3, 29, 0, 59)) == 100.0  # 01:59 CET
    assert cfg.cap_at(utc(2026, 3, 29, 1, 0)) == 30.0  # 03:00 CEST: 02:30 has passed


def test_an_entry_in_the_repeated_hour_applies_on_both_passes() -> None:
    cfg = SiteConfig(
        id="S1",
        timezone=BERLIN,
        capacity_schedule=caps(
            [{"from": "00:00", "kw": 100}, {"from": "02:30", "kw": 30}, {"from": "03:00", "kw": 80}]
        ),
    )
    seen = [cfg.cap_at(utc(2026, 10, 25, 0, 0) + k * QUARTER) for k in range(9)]
    # 02:00 CEST, 02:15, 02:30, 02:45, 02:00 CET, 02:15, 02:30, 02:45, 03:00 CET
    assert seen == [100, 100, 30, 30, 100, 100, 30, 30, 80]


# --- usable cap of a step and lowest cap ---------------------------------------------------------


def test_usable_cap_takes_the_lowest_cap_in_the_step_minus_the_margin() -> None:
    cfg = SiteConfig(
        id="S1",
        capacity_schedule=caps([{"from": "00:00", "kw": 100}, {"from": "17:00", "kw": 50}]),
        safety_margin_kw=5,
    )
    assert cfg.usable_cap_kw(utc(2026, 1, 5, 16, 45), QUARTER) == 95.0  # [16:45, 17:00)
    assert cfg.usable_cap_kw(utc(2026, 1, 5, 16, 50), QUARTER) == 45.0  # the drop is inside
    assert cfg.usable_cap_kw(utc(2026, 1, 5, 16, 59, 59), timedelta(seconds=2)) == 45.0


def test_a_one_minute_dip_inside_a_step_counts() -> None:
    cfg = SiteConfig(
        id="S1",
        capacity_schedule=caps(
            [
                {"from": "00:00", "kw": 100},
                {"from": "17:07", "kw": 20},
                {"from": "17:08", "kw": 100},
            ]
        ),
        safety_margin_kw=5,
    )
    assert cfg.usable_cap_kw(utc(2026, 1, 5, 17, 0), QUARTER) == 15.0
    assert cfg.usable_cap_kw(utc(2026, 1, 5, 17, 6, 30), timedelta(seconds=30)) == 95.0
    assert cfg.usable_cap_kw(utc(2026, 1, 5, 17, 6, 30), timedelta(seconds=31)) == 15.0
    assert cfg.usable_cap_kw(utc(2026, 1, 5, 17, 8), QUARTER) == 95.0


def test_usable_and_lowest_cap_never_go_below_zero() -> None:
    cfg = SiteConfig(id="S1", capacity_kw=10, safety_margin_kw=25)
    assert cfg.usable_cap_kw(utc(2026, 1, 5), QUARTER) == 0.0
    assert cfg.lowest_cap_kw == 0.0


def test_lowest_cap_is_the_schedule_minimum_minus_the_margin() -> None:
    assert SiteConfig(id="S1", capacity_kw=80, safety_margin_kw=3).lowest_cap_kw == 77.0
    cfg = SiteConfig(id="S1", capacity_kw=10, capacity_schedule=caps(DAY_CAPS), safety_margin_kw=3)
    assert cfg.lowest_cap_kw == 37.0  # the base is never in force when a schedule exists


ZONES = ["UTC", BERLIN, "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


@FAST
@given(
    minutes=entry_minutes,
    data=st.data(),
    zone=st.sampled_from(ZONES),
    margin=st.sampled_from([0.0, 2.5, 20.0]),
    start_s=st.integers(0, 366 * 86400),
    length_s=st.integers(1, 3 * 3600),
)
def test_usable_cap_is_the_exact_minimum_over_the_interval(
    minutes: list[int],
    data: st.DataObject,
    zone: str,
    margin: float,
    start_s: int,
    length_s: int,
) -> None:
    values = data.draw(st.lists(st.integers(0, 200), min_size=len(minutes), max_size=len(minutes)))
    raw = [
        {"from": f"{m // 60:02d}:{m % 60:02d}", "kw": v}
        for m, v in zip(minutes, values, strict=True)
    ]
    cfg = SiteConfig(id="S1", timezone=zone, capacity_schedule=caps(raw), safety_margin_kw=margin)
    start = utc(2026, 1, 1) + timedelta(seconds=start_s)
    end = start + timedelta(seconds=length_s)
    # the schedule only changes on whole minutes: the instants to look at are the start and every
    # minute boundary inside the interval
    points = [start]
    t = start.replace(second=0) + timedelta(minutes=1)
    while t < end:
        points.append(t)
        t += timedelta(minutes=1)
    expected = max(0.0, min(cfg.cap_at(p) for p in points) - margin)
    got = cfg.usable_cap_kw(start, end - start)
    assert got == expected
    assert cfg.lowest_cap_kw <= got
    assert got <= max(0.0, cfg.cap_at(start) - margin)
