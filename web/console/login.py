"""Sign in and out of the console."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from web.api.deps import RuntimeDep
from web.auth import SESSION_CSRF, SESSION_USER, check_csrf, csrf_token
from web.console.render import render

router = APIRouter(prefix="/console", include_in_schema=False)


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
    """Check the password; on success start a fresh session (new id, new CSRF token)."""
    await check_csrf(request)
    who = await rt.users.authenticate(username, password)
    if who is None:
        ctx = {
            "next": _safe_next(next),
            "csrf_token": csrf_token(request),
            "user": None,
            "error": "wrong username or password",
            "username": username,
        }
        return render(request, "login.html", ctx, status_code=401)
    request.session.clear()
    request.session[SESSION_USER] = who.name
    request.session[SESSION_CSRF] = secrets.token_urlsafe(32)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", response_model=None)
async def logout(request: Request) -> Response:
    """End the session."""
    await check_csrf(request)
    request.session.clear()
    return RedirectResponse("/console/login", status_code=303)
