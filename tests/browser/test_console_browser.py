"""The console in a real headless Chromium: an operator runs a simulated site from it alone; a
viewer sees the same pages without the buttons."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import OPERATOR, VIEWER, LiveSite, shot

TIMEOUT = 15_000  # ms: a live poll comes every 5 s


async def sign_in(browser: Browser, site: LiveSite, who: tuple[str, str]) -> Page:
    """A fresh browser context, signed in through the form."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 860}, accept_downloads=True
    )
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT)
    await page.goto(site.base + "/")
    await expect(page).to_have_url(re.compile(r"/console/login"))
    await page.get_by_label("Username").fill(who[0])
    await page.get_by_label("Password").fill(who[1])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/console/sites/S1$"))
    return page


async def test_operator_runs_the_site_from_the_console(
    browser: Browser, live_site: LiveSite
) -> None:
    page = await sign_in(browser, live_site, OPERATOR)
    # the site, its chargers and the chart
    await expect(page.locator("h1")).to_contain_text("Depot")
    await expect(page.locator("#live")).to_contain_text("4 of 4 chargers connected")
    await expect(page.locator("svg.chart")).to_be_visible()
    await expect(page.locator("#cap-now")).to_have_text("22.0 kW")
    await expect(page.locator("svg.chart path.metered").first).to_be_attached(timeout=30_000)
    await shot(page, "overview")

    # change the cap in a second tab; the first one follows by itself (HTMX polling)
    settings = await page.context.new_page()
    settings.set_default_timeout(TIMEOUT)
    await settings.goto(live_site.base + "/console/sites/S1/settings")
    # a mistake is explained in place (the 422 answer is swapped in, not dropped)
    await settings.get_by_label("Cap schedule").fill("7 o'clock")
    await settings.get_by_role("button", name="Save and re-plan").click()
    await expect(settings.get_by_role("alert")).to_contain_text("cap schedule, line 1")
    await settings.get_by_label("Cap schedule").fill("")
    await settings.locator("#capacity_kw").fill("15")
    await settings.get_by_role("button", name="Save and re-plan").click()
    await expect(settings.get_by_role("status")).to_contain_text("re-planned")
    await shot(settings, "settings")
    await expect(page.locator("#cap-now")).to_have_text("15.0 kW")
    await expect(page.locator("#live")).to_contain_text("settings changed")
    await shot(page, "overview-after-cap-change")

    # the plan follows the new cap
    await page.get_by_role("link", name="Plan", exact=True).click()
    await expect(page.locator("svg.heatmap")).to_be_visible()
    await expect(page.locator("#heatmap")).to_contain_text("cap 15.0 kW")
    await shot(page, "plan")

    # edit a session's departure: the needs now come from the operator
    await page.get_by_role("link", name="Sessions").click()
    row = page.locator("table.sessions tbody tr").first
    session_id = (await row.locator("td").first.inner_text()).strip()
    await row.get_by_label("departure").fill("2026-01-05T12:30")
    await row.get_by_role("button", name="Set").click()
    await expect(page.get_by_role("status")).to_contain_text(f"needs of session {session_id} set")
    edited = page.locator(f"#session-{session_id}")
    await expect(edited).to_contain_text("by 12:30 (operator)")
    await shot(page, "sessions")

    # stop it: the charger ends the transaction and it moves to the ended list
    page.once("dialog", lambda d: d.accept())
    await edited.get_by_role("button", name="Stop").click()
    await expect(page.get_by_role("status")).to_contain_text(
        f"stop of session {session_id} accepted"
    )
    await expect(page.locator(f"#session-{session_id}")).to_have_count(0, timeout=TIMEOUT)

    # a charger's page and a command
    await page.get_by_role("link", name="Chargers").click()
    await expect(page.locator("#chargers")).to_contain_text("4 chargers")
    await shot(page, "chargers")
    await page.get_by_role("link", name="CP-16-A").click()
    await page.get_by_role("button", name="Trigger message").click()
    await expect(page.get_by_role("status")).to_contain_text("trigger: Accepted")
    await expect(page.locator("table.log")).to_contain_text("TriggerMessage")
    await shot(page, "charger")

    # the audit log, and its export
    await page.get_by_role("link", name="Audit log").click()
    await expect(page.locator("#audit tbody tr").first).to_contain_text("TxProfile")
    await shot(page, "audit")
    async with page.expect_download() as download_info:
        await page.locator("#export-csv").click()
    download = await download_info.value
    assert download.suggested_filename == "profiles.csv"
    path = await download.path()
    text = path.read_text()
    assert text.startswith("id,plan_id,site_id,charge_point_id")
    assert "CP-16-A" in text
    # from a profile to the plan that produced it
    await (
        page.locator("#audit tbody tr")
        .first.get_by_role("link", name=re.compile(r"^#\d+$"))
        .click()
    )
    await expect(page.locator("h1")).to_contain_text("Plan #")
    await page.context.close()


async def test_what_if_preview_then_apply_and_the_composite_schedule(
    browser: Browser, live_site: LiveSite
) -> None:
    page = await sign_in(browser, live_site, OPERATOR)
    await page.get_by_role("link", name="Plan", exact=True).click()
    await expect(page.locator("svg.heatmap")).to_be_visible()
    await page.get_by_role("link", name="What if…").click()
    await expect(page.locator("#whatif")).to_contain_text("Sessions")
    await page.locator("#whatif-cap").fill("5")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#result")).to_contain_text("Preview: cap 5 kW")
    await expect(page.locator("#whatif-kpis")).to_contain_text("Energy planned")
    await shot(page, "what-if")
    # nothing applied yet: the overview still shows the old cap
    overview = await page.context.new_page()
    await overview.goto(live_site.base + "/console/sites/S1")
    await expect(overview.locator("#cap-now")).to_have_text("22.0 kW")
    page.once("dialog", lambda d: d.accept())
    await page.get_by_role("button", name="Apply").click()
    await expect(page.get_by_role("status")).to_contain_text("applied: cap 5 kW")
    await expect(overview.locator("#cap-now")).to_have_text("5.0 kW")
    # the charger's own view of the limit it applies
    await page.goto(live_site.base + "/console/chargers/CP-16-A")
    await page.get_by_role("link", name="Composite schedule").click()
    await expect(page.locator("#composite")).to_contain_text("Starts")
    await expect(page.locator("#composite tbody tr").first).to_be_visible()
    await shot(page, "composite")
    await page.context.close()


async def test_viewer_cannot_press_operator_buttons(browser: Browser, live_site: LiveSite) -> None:
    page = await sign_in(browser, live_site, VIEWER)
    await expect(page.locator(".user")).to_contain_text("viktor · viewer")
    await page.get_by_role("link", name="Sessions").click()
    await expect(page.locator("table.sessions")).to_be_visible()
    await expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    await expect(page.get_by_role("button", name="Set")).to_have_count(0)
    await page.get_by_role("link", name="Settings").click()
    await expect(page.locator("#capacity_kw")).to_be_disabled()
    await expect(page.get_by_role("button", name="Save and re-plan")).to_have_count(0)
    await page.goto(live_site.base + "/console/chargers/CP-16-A")
    await expect(page.get_by_role("button", name="Reset (soft)")).to_have_count(0)
    # a hand-made request with the session's own CSRF token is still refused
    status = await page.evaluate(
        """async () => {
            const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];
            const r = await fetch('/console/chargers/CP-16-A/commands/reset',
                                  {method: 'POST', headers: {'X-CSRF-Token': token}});
            return r.status;
        }"""
    )
    assert status == 403
    await shot(page, "viewer-charger")
    await page.context.close()
