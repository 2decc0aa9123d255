"""Sign-in, roles, CSRF, and API tokens."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import httpx
import pytest

from tests.csms.conftest import make_settings
from tests.web.conftest import CSRF, VIEWER, Console, csrf_of, sign_in
from web.app import create_app


async def test_console_needs_sign_in(console: Console) -> None:
    async with console.client() as anon:
        r = await anon.get("/console/sites/S1/sessions?page=1")
        assert r.status_code == 303
        assert (
            r.headers["location"]
            == "/console/login?next=%2Fconsole%2Fsites%2FS1%2Fsessions%3Fpage%3D1"
        )
        r = await anon.get("/console/sites/S1", headers={"HX-Request": "true"})
        assert r.headers["HX-Redirect"].startswith("/console/login")
        r = await sign_in(anon, "olga", "wrong password")
        assert r.status_code == 401
        assert "wrong username or password" in r.text
        r = await sign_in(anon, "nobody", "whatever-it-is")
        assert r.status_code == 401


async def test_sign_in_cookie_is_signed_secure_and_http_only(console: Console) -> None:
    async with console.client() as c:
        r = await sign_in(c, "olga", "operator-password")
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "secure" in cookie
        assert "samesite=lax" in cookie
        assert (await c.get("/console/sites/S1")).status_code == 200
        c.cookies.clear()
        c.cookies.set("csms_session", "forged")
        assert (await c.get("/console/sites/S1")).status_code == 303


async def test_login_and_logout_need_the_csrf_token(console: Console) -> None:
    async with console.client() as c:
        await c.get("/console/login")
        r = await c.post(
            "/console/login", data={"username": "olga", "password": "operator-password"}
        )
        assert r.status_code == 403
        assert "security token" in r.text
    r = await console.http.post("/console/logout", headers={"X-CSRF-Token": ""})
    assert r.status_code == 403
    r = await console.http.post("/console/logout")
    assert r.status_code == 303
    assert (await console.http.get("/console/sites/S1")).status_code == 303


async def test_posts_without_the_csrf_token_are_refused(console: Console) -> None:
    tx = console.transaction_id
    del console.http.headers["X-CSRF-Token"]
    r = await console.http.post(
        f"/console/sites/S1/sessions/{tx}/stop", headers={"HX-Request": "true"}
    )
    assert r.status_code == 403
    r = await console.http.post(f"/console/sites/S1/sessions/{tx}/stop", data={"csrf_token": "x"})
    assert r.status_code == 403
    token = await csrf_of(console.http)
    r = await console.http.post(f"/console/sites/S1/sessions/{tx}/stop", data={"csrf_token": token})
    assert r.status_code == 200


async def test_viewers_see_but_cannot_act(console: Console) -> None:
    async with console.client() as v:
        assert (await sign_in(v, *VIEWER)).status_code == 303
        page = await v.get("/console/sites/S1/sessions")
        assert page.status_code == 200
        assert "Stop</button>" not in page.text
        assert "view only" in page.text
        detail = await v.get("/console/chargers/W-1")
        assert "Reset (soft)" not in detail.text
        settings = await v.get("/console/sites/S1/settings")
        assert "<fieldset disabled>" in settings.text
        token = CSRF.search(page.text)
        assert token is not None
        headers = {"X-CSRF-Token": token.group(1)}
        for url in (
            f"/console/sites/S1/sessions/{console.transaction_id}/stop",
            "/console/chargers/W-1/commands/reset",
            "/console/sites/S1/settings",
        ):
            r = await v.post(url, headers=headers)
            assert r.status_code == 403, url
            assert "viewer" in r.text
        # reading the API with the console's session is fine (export links); writing is not
        assert (await v.get("/api/audit/plans?format=csv")).status_code == 200
        r = await v.put("/api/sites/S1/capacity", json={"capacity_kw": 5}, headers=headers)
        assert r.status_code == 401


async def test_api_tokens_carry_roles(console: Console) -> None:
    viewer = await console.rt.users.create_token("dash", "viewer")
    operator = await console.rt.users.create_token("ops", "operator")
    async with console.client() as c:
        r = await c.get("/api/sites")
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == "Bearer"
        r = await c.get("/api/sites", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        assert "unknown or revoked" in r.json()["detail"]
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        assert (await c.get("/api/sites", headers=as_viewer)).status_code == 200
        r = await c.put("/api/sites/S1/capacity", json={"capacity_kw": 18}, headers=as_viewer)
        assert r.status_code == 403
        assert r.json()["title"] == "Forbidden"
        as_operator = {"Authorization": f"Bearer {operator}"}
        r = await c.put("/api/sites/S1/capacity", json={"capacity_kw": 18}, headers=as_operator)
        assert r.status_code == 200
        assert (await c.get("/api/health")).status_code == 200  # public
        await console.rt.users.revoke_token("dash")
        assert (await c.get("/api/sites", headers=as_viewer)).status_code == 401


async def test_first_run_creates_a_random_admin_once(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/first.db"
    seen = []
    for _ in range(2):
        app = create_app(make_settings(url))
        async with app.router.lifespan_context(app):
            seen.append(app.state.first_run_admin)
    assert seen[1] is None
    assert seen[0] is not None
    name, password = seen[0]
    assert name == "admin"
    assert len(password) >= 16
    app = create_app(make_settings(url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c,
    ):
        assert (await sign_in(c, name, password)).status_code == 303


async def test_auth_off_makes_everyone_an_operator(tmp_path: object) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/open.db")
    settings.web.auth_required = False
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://t") as c,
    ):
        assert app.state.first_run_admin is None
        assert (await c.get("/api/sites")).status_code == 200
        r = await c.get("/console/new-site")
        assert r.status_code == 200
        assert "Create</button>" in r.text


async def test_the_first_run_password_goes_to_an_owner_only_file_never_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/file.db")
    settings.web.initial_password_file = tmp_path / "initial-password"
    (tmp_path / "initial-password").write_text("stale\n")  # from an earlier database
    app = create_app(settings)
    with caplog.at_level(logging.DEBUG):
        async with app.router.lifespan_context(app):
            _name, password = app.state.first_run_admin
    written = tmp_path / "initial-password"
    assert written.read_text() == f"{password}\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert password not in caplog.text
    assert str(written) in caplog.text
