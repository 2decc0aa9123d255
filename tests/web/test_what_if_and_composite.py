"""The what-if panel (preview a plan, then apply) and the charger's composite schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from csms.domain.composite import composite_request, parse_composite
from csms.domain.needs import NeedsValues
from csms.domain.site_config import SiteConfig, SiteConfigError
from csms.services.audit import AuditFilter
from csms.services.site_state import LoadedSite, TransactionInfo
from csms.services.what_if import NeedsEdit, WhatIf, apply_what_if
from tests.web.conftest import VIEWER, Console, csrf_of, sign_in
from web.console.what_if import parse_form

HX = {"HX-Request": "true"}
T0 = datetime(2030, 1, 1, 8, tzinfo=UTC)


# --- pure parts --------------------------------------------------------------------------------


def _site(**needs: NeedsValues) -> LoadedSite:
    tx = TransactionInfo(
        id=7,
        ocpp_id="7",
        charge_point_id="A",
        evse_id=1,
        started_at=T0,
        delivered_wh=0.0,
        needs=dict(needs),
    )
    return LoadedSite(SiteConfig(id="S", capacity_kw=50.0), (), (tx,))


def test_what_if_edits_enter_as_the_operators_and_keep_unedited_fields() -> None:
    dep = T0 + timedelta(hours=9)
    site = _site(operator=NeedsValues(departure=dep, max_power_w=7000.0))
    out = apply_what_if(site, WhatIf(capacity_kw=12.0, needs={7: NeedsEdit(energy_wh=5000.0)}))
    assert out.config.capacity_kw == 12.0
    assert out.transactions[0].needs["operator"] == NeedsValues(
        departure=dep, energy_wh=5000.0, max_power_w=7000.0
    )
    assert site.transactions[0].needs["operator"].energy_wh is None  # the input is untouched
    # unknown sessions (ended since the form was drawn) are ignored
    assert apply_what_if(site, WhatIf(needs={99: NeedsEdit(energy_wh=1.0)})) == site


def test_what_if_refuses_bad_values_by_name() -> None:
    with pytest.raises(SiteConfigError, match="capacity_kw"):
        apply_what_if(_site(), WhatIf(capacity_kw=-1.0))
    with pytest.raises(SiteConfigError, match="capacity_schedule"):
        apply_what_if(_site(), WhatIf(capacity_schedule=[{"from": "25:00", "kw": 3}]))


def test_form_counts_only_fields_that_differ_from_what_was_shown() -> None:
    form = {
        "capacity_kw": "40",
        "shown_capacity_kw": "40",
        "capacity_schedule": "07:00 20\n",
        "shown_capacity_schedule": "07:00 20",
        "sessions": "7,8",
        "departure_7": "2030-01-01T18:30",
        "shown_departure_7": "2030-01-01T17:00",
        "energy_7": "10",
        "shown_energy_7": "10",
        "departure_8": "2030-01-01T12:00",
        "shown_departure_8": "2030-01-01T12:00",
        "energy_8": "3",
        "shown_energy_8": "4",
    }
    what = parse_form(form, "Europe/Berlin")
    assert what.capacity_kw is None
    assert what.capacity_schedule is None
    assert what.needs == {
        7: NeedsEdit(departure=datetime(2030, 1, 1, 18, 30, tzinfo=ZoneInfo("Europe/Berlin"))),
        8: NeedsEdit(energy_wh=3000.0),
    }
    assert parse_form({**form, "capacity_kw": "35"}, "UTC").capacity_kw == 35.0
    for bad, message in [
        ({"capacity_kw": "lots"}, "is not a number"),
        ({"capacity_kw": "-3"}, ">= 0"),
        ({"energy_8": "nan"}, ">= 0"),
        ({"departure_7": "soon"}, "is not a date and time"),
        ({"capacity_schedule": "7 o'clock"}, "line 1"),
    ]:
        with pytest.raises((ValueError, SiteConfigError), match=message):
            parse_form({**form, **bad}, "UTC")


def test_composite_answers_of_both_versions_are_read() -> None:
    v16 = {
        "status": "Accepted",
        "connectorId": 1,
        "scheduleStart": "2030-01-01T08:00:00Z",
        "chargingSchedule": {
            "duration": 3600,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [
                {"startPeriod": 600, "limit": 6.0, "numberPhases": 1},
                {"startPeriod": 0, "limit": 16},
            ],
        },
    }
    s = parse_composite(v16)
    assert s is not None
    assert s.unit == "A"
    assert s.duration_s == 3600
    assert [(p.offset_s, p.limit, p.phases) for p in s.periods] == [(0, 16.0, None), (600, 6.0, 1)]
    assert s.periods[1].start == T0 + timedelta(minutes=10)
    v201 = {
        "status": "Accepted",
        "schedule": {
            "evseId": 1,
            "duration": 60,
            "scheduleStart": "2030-01-01T08:00:00+00:00",
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.0}, {"limit": "x"}],
        },
    }
    s = parse_composite(v201)
    assert s is not None
    assert s.unit == "W"
    assert s.start == T0
    assert [p.limit for p in s.periods] == [7400.0]  # the malformed period is dropped
    assert parse_composite({"status": "Rejected"}) is None
    assert parse_composite({"schedule": {"chargingSchedulePeriod": "no"}}) is None
    assert composite_request("ocpp1.6", 2, 60, "W") == {
        "connectorId": 2,
        "duration": 60,
        "chargingRateUnit": "W",
    }
    assert "evseId" in composite_request("ocpp2.0.1", 2, 60, "A")


# --- routes ------------------------------------------------------------------------------------


async def _counts(console: Console) -> tuple[int, int]:
    """Plans stored, and profiles sent for a plan (TxDefault installs at boot have no plan and may
    still be landing while a test runs)."""
    f = AuditFilter(site_id="S1", limit=1000)
    audit = console.rt.smart.audit
    planned = [p for p in await audit.profiles(f) if p.plan_id is not None]
    return len(await audit.plans(f)), len(planned)


async def _what_if_rows(console: Console) -> list[object]:
    """Anything stored by a preview: plans it triggered, profiles of such plans. (Counting all
    plans would race the loop's own re-plans, e.g. after the charger's meter values.)"""
    audit = console.rt.smart.audit
    f = AuditFilter(site_id="S1", limit=1000)
    plans = [p for p in await audit.plans(f) if p.trigger.startswith("what-if")]
    ids = {p.id for p in plans}
    return [*plans, *(p for p in await audit.profiles(f) if p.plan_id in ids)]


async def test_preview_stores_and_sends_nothing_and_shows_the_difference(
    console: Console,
) -> None:
    tx = console.transaction_id
    page = await console.http.get("/console/sites/S1/what-if")
    assert page.status_code == 200
    assert f'name="energy_{tx}"' in page.text
    assert 'id="whatif-apply"' in page.text
    r = await console.http.post(
        "/console/sites/S1/what-if/preview",
        data={"capacity_kw": "0", "shown_capacity_kw": "22", "sessions": str(tx)},
        headers={**HX, "HX-Target": "result"},
    )
    assert r.status_code == 200, r.text
    assert r.text.lstrip().startswith('<section id="result"')
    assert "Preview: cap 0 kW" in r.text
    assert 'class="heatmap"' in r.text
    assert "W-1/1" in r.text  # its planned energy falls to nothing
    assert await _what_if_rows(console) == []  # no plan stored, no profile sent
    site = await console.rt.sites.get("S1")
    assert site is not None
    assert site.capacity_kw == 22.0
    bad = await console.http.post(
        "/console/sites/S1/what-if/preview",
        data={"capacity_kw": "a lot", "shown_capacity_kw": "22"},
        headers={**HX, "HX-Target": "result"},
    )
    assert bad.status_code == 422
    assert "cap: &#39;a lot&#39; is not a number" in bad.text


async def test_apply_stores_the_changes_and_replans(console: Console) -> None:
    tx = console.transaction_id
    plans_before, _ = await _counts(console)
    r = await console.http.post(
        "/console/sites/S1/what-if/apply",
        data={
            "capacity_kw": "15",
            "shown_capacity_kw": "22",
            "sessions": str(tx),
            f"energy_{tx}": "6",
            f"shown_energy_{tx}": "20",
        },
        headers={**HX, "HX-Target": "whatif"},
    )
    assert r.status_code == 200, r.text
    assert r.text.lstrip().startswith('<section id="whatif"')
    assert f"applied: cap 15 kW; session {tx}: 6 kWh" in r.text
    site = await console.rt.sites.get("S1")
    assert site is not None
    assert site.capacity_kw == 15.0
    plan = await console.rt.smart.audit.latest_plan("S1")
    assert plan is not None
    assert plan.capacity_kw == 15.0
    assert (await _counts(console))[0] > plans_before
    problem = plan.inputs["problem"]["sessions"]
    assert [s["energy_kwh"] for s in problem] == [pytest.approx(6.0 - 1.0, abs=0.01)]


async def test_viewer_previews_but_cannot_apply(console: Console) -> None:
    async with console.client() as http:
        await sign_in(http, *VIEWER)
        http.headers["X-CSRF-Token"] = await csrf_of(http)
        page = await http.get("/console/sites/S1/what-if")
        assert 'id="whatif-apply"' not in page.text
        r = await http.post("/console/sites/S1/what-if/preview", data={"capacity_kw": "5"})
        assert r.status_code == 200
        r = await http.post("/console/sites/S1/what-if/apply", data={"capacity_kw": "5"})
        assert r.status_code == 403
    site = await console.rt.sites.get("S1")
    assert site is not None
    assert site.capacity_kw == 22.0


async def test_composite_schedule_is_asked_of_the_charger(console: Console) -> None:
    r = await console.http.get("/console/chargers/W-1/composite")
    assert r.status_code == 200
    assert "the charger answered Rejected" in r.text
    console.cp.composite = {
        "schedule_start": "2030-01-01T08:00:00Z",
        "charging_schedule": {
            "duration": 3600,
            "charging_rate_unit": "A",
            "charging_schedule_period": [{"start_period": 0, "limit": 16.0}],
        },
    }
    r = await console.http.get(
        "/console/chargers/W-1/composite",
        params={"evse_id": 1, "duration": 3600},
        headers={**HX, "HX-Target": "composite"},
    )
    assert r.text.lstrip().startswith('<section id="composite"')
    assert "unit A" in r.text
    assert "11.04" in r.text  # 16 A × 3 phases × 230 V
    r = await console.http.get("/console/chargers/W-1/composite", params={"duration": 5})
    assert r.status_code == 422
    r = await console.http.get("/console/chargers/NOPE/composite")
    assert r.status_code == 404


async def test_api_previews_a_what_if_and_stores_nothing(console: Console) -> None:
    tx = console.transaction_id
    token = await console.rt.users.create_token("planner-bot", "operator")
    console.http.headers["Authorization"] = f"Bearer {token}"
    r = await console.http.post(
        "/api/sites/S1/what-if",
        json={"capacity_kw": 0, "needs": [{"transaction_id": tx, "energy_kwh": 3}]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["as_now"]["capacity_kw"] == 22.0
    assert body["what_if"]["capacity_kw"] == 0.0
    assert body["what_if"]["kpis"]["energy_delivered_kwh"] == 0.0
    assert body["as_now"]["kpis"]["energy_delivered_kwh"] > 0
    assert "plan_id" not in body["what_if"]
    assert await _what_if_rows(console) == []
    r = await console.http.post(
        "/api/sites/S1/what-if", json={"needs": [{"transaction_id": 999, "energy_kwh": 3}]}
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "no active session 999" in r.json()["detail"]
    r = await console.http.post("/api/sites/nope/what-if", json={})
    assert r.status_code == 404
