"""The audit log (CSV export, row dicts, the SQLite-backed AuditLog: filters, pages, retention,
verification once) and the metered site peak (``peak_kw``) from energy registers."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from csms.db.engine import create_engine, session_factory
from csms.db.migrate import upgrade_to_head
from csms.db.models import PlanAudit, ProfileAudit, as_utc
from csms.services.audit import (
    MAX_PAGE,
    PLAN_COLUMNS,
    PROFILE_COLUMNS,
    AuditFilter,
    AuditLog,
    row_dict,
    to_csv,
)
from csms.services.site_kpis import peak_kw

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
FAST = settings(max_examples=50, deadline=None)


# --- CSV and row dicts ----------------------------------------------------------------------------


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_has_a_header_then_one_line_per_row_in_column_order() -> None:
    text = to_csv([{"b": 2, "a": 1, "extra": "ignored"}, {"a": "x"}], ["a", "b"])
    assert text == "a,b\r\n1,2\r\nx,\r\n"  # RFC 4180 line ends


def test_csv_quotes_commas_quotes_and_newlines() -> None:
    rows = [{"a": 'say "hi", then\nleave', "b": None, "c": 1.5, "d": True}]
    text = to_csv(rows, ["a", "b", "c", "d"])
    assert read_csv(text) == [["a", "b", "c", "d"], ['say "hi", then\nleave', "", "1.5", "True"]]
    assert '"say ""hi"", then\nleave"' in text


def test_nested_values_are_compact_json_in_one_cell() -> None:
    payload = {"csChargingProfiles": {"chargingSchedule": {"limit": [16.0, 0.0]}}, "ok": None}
    rows = [{"payload": payload, "warnings": ["cap, lowered", 'a "b"'], "empty": {}}]
    parsed = read_csv(to_csv(rows, ["payload", "warnings", "empty"]))
    assert len(parsed) == 2
    cells = parsed[1]
    assert json.loads(cells[0]) == payload
    assert " " not in cells[0]  # compact separators
    assert json.loads(cells[1]) == ["cap, lowered", 'a "b"']
    assert cells[2] == "{}"


text = st.text(alphabet=st.characters(blacklist_characters="\r"))  # see the test below
cell = st.none() | text | st.integers() | st.dictionaries(st.text(max_size=5), st.integers())


@FAST
@given(rows=st.lists(st.fixed_dictionaries({"a": cell, "b": cell}), max_size=5))
def test_csv_round_trips_any_text_and_nesting(rows: list[dict[str, Any]]) -> None:
    parsed = read_csv(to_csv(rows, ["a", "b"]))
    assert parsed[0] == ["a", "b"]
    assert len(parsed) == len(rows) + 1
    for row, line in zip(rows, parsed[1:], strict=True):
        for col, got in zip(("a", "b"), line, strict=True):
            value = row[col]
            if value is None:
                assert got == ""
            elif isinstance(value, dict):
                assert json.loads(got) == value
            else:
                assert got == str(value)


def test_a_carriage_return_in_a_cell_survives_the_round_trip() -> None:
    rows = [{"a": "line one\rline two", "b": 1}]
    assert read_csv(to_csv(rows, ["a", "b"])) == [["a", "b"], ["line one\rline two", "1"]]


def test_row_dict_makes_datetimes_iso_utc() -> None:
    row = SimpleNamespace(
        id=3,
        created_at=datetime(2026, 1, 5, 9, 0, tzinfo=timezone(timedelta(hours=1))),
        verified_at=datetime(2026, 1, 5, 8, 30),  # naive, as SQLite returns it: UTC
        payload={"x": [1]},
        error=None,
    )
    assert row_dict(row, ["id", "created_at", "verified_at", "payload", "error"]) == {
        "id": 3,
        "created_at": "2026-01-05T08:00:00+00:00",
        "verified_at": "2026-01-05T08:30:00+00:00",
        "payload": {"x": [1]},
        "error": None,
    }


def test_listing_columns_cover_the_tables() -> None:
    assert set(PLAN_COLUMNS) <= set(PlanAudit.model_fields)
    assert set(PROFILE_COLUMNS) == set(ProfileAudit.model_fields)
    assert "inputs" not in PLAN_COLUMNS  # large: in the single-plan view only


# --- AuditLog on SQLite ---------------------------------------------------------------------------


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    await upgrade_to_head(engine)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def audit(sessions: async_sessionmaker[AsyncSession]) -> AuditLog:
    return AuditLog(sessions)


def plan_row(site: str = "S1", minutes: int = 0, status: str = "optimal") -> PlanAudit:
    return PlanAudit(
        site_id=site,
        created_at=T0 + timedelta(minutes=minutes),
        trigger="test",
        method="lp",
        status=status,
        inputs={"problem": None, "reservations": [], "cap_kw": [50.0]},
        plan={"start": T0.isoformat(), "step_s": 900, "sessions": {}},
        warnings=["w"],
    )


def profile_row(
    cp: str = "A",
    minutes: int = 0,
    *,
    plan_id: int | None = None,
    site: str = "S1",
    tx: int | None = 1,
    status: str = "Accepted",
) -> ProfileAudit:
    return ProfileAudit(
        plan_id=plan_id,
        site_id=site,
        charge_point_id=cp,
        evse_id=1,
        transaction_id=tx,
        ocpp_transaction_id=None if tx is None else str(tx),
        purpose="TxProfile",
        phase="decrease",
        limit_w=11_000.0,
        payload={"connectorId": 1},
        status=status,
        answer={"status": status},
        created_at=T0 + timedelta(minutes=minutes),
    )


async def test_plans_are_appended_and_read_back_newest_first(audit: AuditLog) -> None:
    ids = [await audit.add_plan(plan_row(minutes=m)) for m in range(3)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert [p.id for p in await audit.plans(AuditFilter())] == ids[::-1]
    one = await audit.plan(ids[1])
    assert one is not None
    assert one.inputs == {"problem": None, "reservations": [], "cap_kw": [50.0]}
    assert one.plan["step_s"] == 900
    assert one.warnings == ["w"]
    assert as_utc(one.created_at) == T0 + timedelta(minutes=1)
    assert await audit.plan(10_000) is None


async def test_plan_filters(audit: AuditLog) -> None:
    await audit.add_plan(plan_row("S1", 0))
    await audit.add_plan(plan_row("S2", 10, status="failed"))
    await audit.add_plan(plan_row("S1", 20, status="failed"))
    await audit.add_plan(plan_row("S1", 30))

    async def minutes(**f: Any) -> list[int]:
        rows = await audit.plans(AuditFilter(**f))
        return [int((as_utc(r.created_at) - T0).total_seconds() // 60) for r in rows]  # type: ignore[operator]

    assert await minutes(site_id="S1") == [30, 20, 0]
    assert await minutes(status="failed") == [20, 10]
    assert await minutes(site_id="S1", status="failed") == [20]
    # since is inclusive, until exclusive
    assert await minutes(since=T0 + timedelta(minutes=10)) == [30, 20, 10]
    assert await minutes(until=T0 + timedelta(minutes=20)) == [10, 0]
    assert await minutes(since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=30)) == [
        20,
        10,
    ]
    assert await minutes(site_id="nowhere") == []
    latest = await audit.latest_plan("S1")
    assert latest is not None
    assert as_utc(latest.created_at) == T0 + timedelta(minutes=30)
    assert await audit.latest_plan("nowhere") is None


async def test_filter_times_with_an_offset_mean_the_same_instant(audit: AuditLog) -> None:
    await audit.add_plan(plan_row("S1", 0))
    await audit.add_profiles([profile_row("A", 0)])
    berlin = timezone(timedelta(hours=1))
    since = (T0 - timedelta(minutes=30)).astimezone(berlin)  # 08:30+01:00, before the row
    assert len(await audit.plans(AuditFilter(since=since))) == 1
    assert len(await audit.profiles(AuditFilter(since=since))) == 1


async def test_profiles_filters_and_pages(audit: AuditLog) -> None:
    plan_id = await audit.add_plan(plan_row())
    ids = await audit.add_profiles(
        [
            profile_row("A", 0, plan_id=plan_id, tx=1),
            profile_row("B", 1, plan_id=plan_id, tx=2, status="Rejected"),
            profile_row("A", 2, tx=1, status="held"),
            profile_row("C", 3, site="S2", tx=None),
            profile_row("A", 4, tx=3),
        ]
    )
    assert len(ids) == 5
    assert ids == sorted(ids)

    async def cps(plan: int | None = None, **f: Any) -> list[tuple[str, int | None]]:
        rows = await audit.profiles(AuditFilter(**f), plan_id=plan)
        return [(r.charge_point_id, r.transaction_id) for r in rows]

    assert await cps() == [("A", 3), ("C", None), ("A", 1), ("B", 2), ("A", 1)]
    assert await cps(site_id="S1", charge_point_id="A") == [("A", 3), ("A", 1), ("A", 1)]
    assert await cps(transaction_id=1) == [("A", 1), ("A", 1)]
    assert await cps(status="Rejected") == [("B", 2)]
    assert await cps(status="held") == [("A", 1)]
    assert await cps(plan=plan_id) == [("B", 2), ("A", 1)]
    assert await cps(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == [
        ("A", 1),
        ("B", 2),
    ]
    assert await cps(limit=2) == [("A", 3), ("C", None)]
    assert await cps(limit=2, offset=2) == [("A", 1), ("B", 2)]
    assert await cps(limit=2, offset=4) == [("A", 1)]
    assert await cps(offset=5) == []
    assert await audit.add_profiles([]) == []


async def test_a_page_never_exceeds_max_page(audit: AuditLog) -> None:
    await audit.add_profiles([profile_row("A", 0) for _ in range(MAX_PAGE + 5)])
    assert len(await audit.profiles(AuditFilter(limit=MAX_PAGE * 10))) == MAX_PAGE
    assert len(await audit.profiles(AuditFilter(limit=MAX_PAGE * 10, offset=MAX_PAGE))) == 5


async def test_prune_deletes_only_rows_older_than_the_limit_from_both_tables(
    audit: AuditLog,
) -> None:
    for m in (0, 10, 20):
        await audit.add_plan(plan_row(minutes=m))
    await audit.add_profiles([profile_row("A", m) for m in (0, 5, 10, 30)])
    assert await audit.prune(T0 + timedelta(minutes=10)) == 3  # 1 plan + 2 profiles
    plans = await audit.plans(AuditFilter())
    assert [as_utc(p.created_at) for p in plans] == [
        T0 + timedelta(minutes=20),
        T0 + timedelta(minutes=10),  # exactly at the limit: kept
    ]
    assert len(await audit.profiles(AuditFilter())) == 2
    assert await audit.prune(T0 + timedelta(minutes=10)) == 0


async def test_verification_is_written_once_unless_a_meter_finding_overrides(
    audit: AuditLog,
) -> None:
    (pid, other) = await audit.add_profiles([profile_row("A", 0), profile_row("B", 0)])
    t1, t2, t3 = (T0 + timedelta(minutes=m) for m in (1, 2, 3))
    await audit.set_verification(pid, "applied: composite limit 11000 W", t1)
    await audit.set_verification(pid, "not applied: something else", t2)  # ignored: once only

    async def get(profile_id: int) -> ProfileAudit:
        rows = await audit.profiles(AuditFilter())
        return next(r for r in rows if r.id == profile_id)

    row = await get(pid)
    assert row.verification == "applied: composite limit 11000 W"
    assert as_utc(row.verified_at) == t1
    await audit.set_verification(pid, "non-compliant: draws 20000 W", t3, overrides=True)
    row = await get(pid)
    assert row.verification == "non-compliant: draws 20000 W"
    assert as_utc(row.verified_at) == t3
    untouched = await get(other)
    assert untouched.verification is None
    assert untouched.verified_at is None
    await audit.set_verification(other, "x" * 300, t1)
    assert (await get(other)).verification == "x" * 255
    await audit.set_verification(10_000, "nothing to verify", t1)  # unknown id: no error


# --- metered peak ---------------------------------------------------------------------------------


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_no_readings_or_one_reading_has_no_peak() -> None:
    assert peak_kw([]) == (0.0, None)
    assert peak_kw([("m", at(0), 100.0)]) == (0.0, None)


def test_a_constant_draw_over_a_window() -> None:
    # 2.5 kWh in 15 minutes = 10 kW
    assert peak_kw([("m", at(0), 1_000.0), ("m", at(15), 3_500.0)]) == (10.0, at(0).isoformat())


def test_energy_is_spread_over_the_windows_an_interval_covers() -> None:
    # 1 kWh from 08:10 to 08:20: half in each window → 0.5 kWh / 0.25 h = 2 kW
    readings = [("m", at(10), 0.0), ("m", at(20), 1_000.0)]
    assert peak_kw(readings) == (2.0, at(0).isoformat())
    # per minute: 100 Wh / min = 6 kW, first minute wins ties
    assert peak_kw(readings, 1) == (6.0, at(10).isoformat())


def test_meters_add_up_and_the_busiest_window_wins() -> None:
    readings = [
        ("a", at(0), 0.0),
        ("a", at(15), 1_000.0),  # 4 kW in 08:00
        ("a", at(30), 4_000.0),  # 12 kW in 08:15
        ("b", at(30), 500.0),
        ("b", at(15), 0.0),  # out of order: sorted per meter
        ("b", at(45), 3_500.0),  # 2 kW in 08:15, 12 kW in 08:30
    ]
    assert peak_kw(readings) == (14.0, at(15).isoformat())


def test_register_resets_and_duplicate_times_are_skipped() -> None:
    readings = [
        ("m", at(0), 5_000.0),
        ("m", at(15), 100.0),  # reset: skipped
        ("m", at(15), 100.0),  # same time: skipped
        ("m", at(30), 600.0),  # 0.5 kWh in 08:15 → 2 kW
    ]
    assert peak_kw(readings) == (2.0, at(15).isoformat())


def test_seconds_are_split_across_minutes() -> None:
    readings = [("m", at(0.5), 0.0), ("m", at(1.5), 60.0)]  # 60 Wh over [08:00:30, 08:01:30)
    assert peak_kw(readings, 1) == (1.8, at(0).isoformat())  # 30 Wh in a minute = 1.8 kW
    assert peak_kw(readings, 15) == (0.24, at(0).isoformat())


@FAST
@given(
    kw=st.integers(1, 500),
    windows=st.integers(1, 8),
    cuts=st.lists(st.integers(1, 8 * 900 - 1), max_size=10, unique=True),
)
def test_a_constant_draw_read_at_any_times_peaks_at_that_power(
    kw: int, windows: int, cuts: list[int]
) -> None:
    end = windows * 900
    times = sorted({0, end, *(c for c in cuts if c < end)})
    readings = [("m", T0 + timedelta(seconds=s), kw * 1000.0 * s / 3600.0) for s in times]
    peak, when = peak_kw(readings)
    assert peak == pytest.approx(kw, abs=2e-3)
    assert when is not None
    assert datetime.fromisoformat(when) < T0 + timedelta(seconds=end)
