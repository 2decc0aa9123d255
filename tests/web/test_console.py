"""Console routes: full pages, HTMX partials (the same template blocks), forms and errors."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from tests.web.conftest import Console

HX = {"HX-Request": "true"}


async def test_root_redirects_to_the_first_sites_overview(console: Console) -> None:
    r = await console.http.get("/", follow_redirects=True)
    assert r.status_code == 200
    assert str(r.url).endswith("/console/sites/S1")
    assert '<svg class="chart"' in r.text
    assert "/static/htmx.min.js" in r.text
    assert "cdn" not in r.text.lower()


async def test_static_htmx_is_vendored(console: Console) -> None:
    r = await console.http.get("/static/htmx.min.js")
    assert r.status_code == 200
    assert "htmx" in r.text[:200]


async def test_overview_partial_is_the_live_block_only(console: Console) -> None:
    full = await console.http.get("/console/sites/S1")
    assert full.text.startswith("<!doctype html>")
    assert "Headroom" in full.text
    assert "Cap now" in full.text
    part = await console.http.get("/console/sites/S1", headers={**HX, "HX-Target": "live"})
    assert part.status_code == 200
    assert part.text.lstrip().startswith('<section id="live"')
    assert "<html" not in part.text
    assert 'hx-trigger="every 5s"' in part.text


async def test_plan_view_shows_the_heatmap_and_the_session(console: Console) -> None:
    r = await console.http.get("/console/sites/S1/plan")
    assert r.status_code == 200
    assert 'class="heatmap"' in r.text
    assert "W-1/1" in r.text
    part = await console.http.get("/console/sites/S1/plan", headers={**HX, "HX-Target": "heatmap"})
    assert part.text.lstrip().startswith('<section id="heatmap"')


async def test_sessions_edit_needs_and_stop(console: Console) -> None:
    tx = console.transaction_id
    r = await console.http.get("/console/sites/S1/sessions")
    assert f'id="session-{tx}"' in r.text
    # a departure left as shown is not pinned as the operator's
    shown = "2030-01-01T08:00"
    r = await console.http.post(
        f"/console/sites/S1/sessions/{tx}/needs",
        data={"departure": shown, "departure_shown": shown, "energy_kwh": "9"},
        headers={**HX, "HX-Target": "sessions"},
    )
    assert '9.0 kWh <small class="src">(operator)' in r.text
    assert "(site_default)" in r.text  # the departure still comes from the site default
    local = (console.rt.clock.now() + timedelta(hours=3)).astimezone(ZoneInfo("Europe/Berlin"))
    r = await console.http.post(
        f"/console/sites/S1/sessions/{tx}/needs",
        data={"departure": local.strftime("%Y-%m-%dT%H:%M"), "energy_kwh": "12.5"},
        headers={**HX, "HX-Target": "sessions"},
    )
    assert r.status_code == 200, r.text
    assert r.text.lstrip().startswith('<section id="sessions"')
    assert f"needs of session {tx} set" in r.text
    assert "12.5 kWh" in r.text
    assert "(operator)" in r.text
    bad = await console.http.post(
        f"/console/sites/S1/sessions/{tx}/needs",
        data={"departure": "tomorrow", "energy_kwh": ""},
        headers={**HX, "HX-Target": "sessions"},
    )
    assert bad.status_code == 422
    assert "is not a date and time" in bad.text
    r = await console.http.post(
        f"/console/sites/S1/sessions/{tx}/stop", headers={**HX, "HX-Target": "sessions"}
    )
    assert r.status_code == 200
    assert f"stop of session {tx} accepted" in r.text


async def test_chargers_table_detail_and_commands(console: Console) -> None:
    r = await console.http.get("/console/chargers")
    assert "W-1" in r.text
    assert "1 chargers" in r.text
    r = await console.http.get("/console/chargers", params={"search": "nothing-like-it"})
    assert "0 chargers" in r.text
    r = await console.http.get("/console/chargers/W-1")
    assert "online" in r.text
    assert "BootNotification" in r.text
    r = await console.http.post(
        "/console/chargers/W-1/commands/reset", headers={**HX, "HX-Target": "charger"}
    )
    assert r.status_code == 200
    assert "reset: Accepted" in r.text
    r = await console.http.post(
        "/console/chargers/W-1/commands/trigger",
        data={"message": "StatusNotification"},
        headers={**HX, "HX-Target": "charger"},
    )
    assert "trigger: Accepted" in r.text
    r = await console.http.post("/console/chargers/W-1/commands/explode")
    assert "unknown command" in r.text


async def test_audit_lists_filters_pages_and_links_profiles_to_plans(console: Console) -> None:
    r = await console.http.get("/console/audit", params={"kind": "plans", "site_id": "S1"})
    assert r.status_code == 200
    assert "/console/audit/plans/" in r.text
    assert "/api/audit/plans?site_id=S1&amp;format=csv" in r.text
    r = await console.http.get("/console/audit", params={"charge_point_id": "W-1"})
    assert r.status_code == 200
    plan = await console.rt.smart.audit.latest_plan("S1")
    assert plan is not None
    r = await console.http.get(f"/console/audit/plans/{plan.id}")
    assert f"Plan #{plan.id}" in r.text
    r = await console.http.get("/console/audit", params={"since": "yesterday"})
    assert r.status_code == 422
    assert "is not a date and time" in r.text
    assert "<html" in r.text


async def test_settings_change_the_cap_and_replan(console: Console) -> None:
    before = await console.rt.smart.audit.latest_plan("S1")
    r = await console.http.get("/console/sites/S1/settings")
    assert 'name="capacity_kw"' in r.text
    form = {
        "name": "Depot",
        "timezone": "Europe/Berlin",
        "capacity_kw": "15",
        "capacity_schedule": "07:00 12\n19:00 15",
        "price_schedule": "",
        "safety_margin_kw": "0",
        "tx_default_kw": "0",
        "default_dwell_hours": "8",
        "default_energy_kwh": "20",
        "default_charger_max_kw": "22",
        "method": "lp",
        "smart_charging": "1",
    }
    r = await console.http.post("/console/sites/S1/settings", data=form)
    assert r.status_code == 200, r.text
    assert "re-planned" in r.text
    site = await console.rt.sites.get("S1")
    assert site is not None
    assert site.capacity_kw == 15.0
    assert site.capacity_schedule == [{"from": "07:00", "kw": 12.0}, {"from": "19:00", "kw": 15.0}]
    after = await console.rt.smart.audit.latest_plan("S1")
    assert before is not None
    assert after is not None
    assert after.id != before.id
    bad = await console.http.post(
        "/console/sites/S1/settings", data={**form, "capacity_schedule": "7 o'clock"}
    )
    assert bad.status_code == 422
    assert "cap schedule, line 1" in bad.text


async def test_unknown_things_are_friendly_pages_and_the_api_keeps_problems(
    console: Console,
) -> None:
    r = await console.http.get("/console/sites/nope")
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]
    assert "no site" in r.text
    r = await console.http.get("/console/chargers/nope", headers={**HX, "HX-Target": "charger"})
    assert r.status_code == 404
    assert "<html" not in r.text
    r = await console.http.get("/api/sites/nope")
    assert r.headers["content-type"] == "application/problem+json"


async def test_pages_stay_paged_with_a_thousand_chargers(console: Console) -> None:
    for i in range(1000):
        await console.rt.stations.register_charge_point(f"X-{i:04d}", site_id="S1")
    r = await console.http.get("/console/chargers")  # one page of 50, not 1001 rows
    assert "1001 chargers" in r.text
    assert r.text.count('href="/console/chargers/W-1"') == 1
    assert r.text.count('href="/console/chargers/X-') == 49
    assert "page 1 of 21" in r.text
    r = await console.http.get("/console/chargers", params={"page": 21})
    assert "X-0999" in r.text
    r = await console.http.get("/console/sites/S1")
    assert "2 chargers" not in r.text
    assert "of 1001 chargers connected" in r.text
