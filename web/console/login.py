"""Sign in and out of the console.

Failed sign-ins are throttled per user name and per remote address (csms.domain.login_throttle):
after ``web.login_max_failures`` failures the name (or address) is locked out, and while it is,
sign-ins get 429 with Retry-After before the password is checked. Neither the password nor the
typed user name is ever logged (people type a password into the name field now and then).
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from csms.domain.clock import SystemClock
from csms.domain.login_throttle import (
    LoginGuard,
    address_key,
    retry_after_header,
)
from csms.settings import WebSettings
from web.api.deps import RuntimeDep
from web.auth import SESSION_CSRF, SESSION_USER, check_csrf, csrf_token
from web.console.render import render

log = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)


def login_guard(settings: WebSettings) -> LoginGuard:
    """The sign-in throttle the settings ask for (on wall-clock time: people and attackers
    guess in real time, whatever speed a replay runs at)."""
    return LoginGuard.from_limits(
        per_identity=settings.login_max_failures,
        per_address=settings.login_max_failures_per_address,
        window_s=settings.login_failure_window_s,
        lockout_s=settings.login_lockout_s,
        max_lockout_s=settings.login_max_lockout_s,
        clock=SystemClock(),
    )


def _guard(request: Request, settings: WebSettings) -> LoginGuard:
    """This app's throttle, made on first use from the app's settings (one per app)."""
    guard = getattr(request.app.state, "login_guard", None)
    if not isinstance(guard, LoginGuard):
        guard = login_guard(settings)
        request.app.state.login_guard = guard
    return guard


def _safe_next(target: str) -> str:
    """Only a console path: never an open redirect to another site."""
    if target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console/"


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/console/") -> HTMLResponse:
    """The sign-in form."""
    ctx = {"next": _safe_next(next), "csrf_token": csrf_token(request), "user": None}
    return render(request, "login.html", ctx)


@router.post("/login", response_model=None)
async def login(
    request: Request,
    rt: RuntimeDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/console/",
) -> Response:
    """Check the password (unless locked out); on success start a fresh session (new id, new
    CSRF token)."""
    await check_csrf(request)
    guard = _guard(request, rt.settings.web)
    host = request.client.host if request.client else None
    address = address_key(host)
    ctx: dict[str, Any] = {
        "next": _safe_next(next),
        "csrf_token": csrf_token(request),
        "user": None,
        "username": username,
    }
    wait = guard.retry_after(username, address)
    if wait is not None:
        return _locked_out(request, ctx, wait)
    who = await rt.users.authenticate(username, password)
    if who is None:
        log.warning("console sign-in failed (from %s)", host)
        lockout = guard.failed(username, address)
        if lockout is not None:
            log.warning("console sign-ins locked out for %.0f s (from %s)", lockout, host)
            return _locked_out(request, ctx, lockout)
        return render(
            request, "login.html", {**ctx, "error": "wrong username or password"}, status_code=401
        )
    guard.succeeded(username)
    request.session.clear()
    request.session[SESSION_USER] = who.name
    request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return RedirectResponse(_safe_next(next), status_code=303)


def _locked_out(request: Request, ctx: dict[str, Any], wait_s: float) -> Response:
    """429 with Retry-After (RFC 6585 §4): the form again, saying when to try."""
    retry = retry_after_header(wait_s)
    error = f"too many failed sign-ins: try again in {retry} s"
    response = render(request, "login.html", {**ctx, "error": error}, status_code=429)
    response.headers["Retry-After"] = retry
    return response


@router.post("/logout", response_model=None)
async def logout(request: Request) -> Response:
    """End the session."""
    await check_csrf(request)
    request.session.clear()
    return RedirectResponse("/console/login", status_code=303)
