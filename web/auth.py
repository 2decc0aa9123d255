"""Sign-in for the console (signed session cookie + CSRF token) and bearer tokens for the JSON
API, with the same two roles. ``web.auth_required`` off: everyone is an operator."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Final

from fastapi import Depends, HTTPException, Request

from csms.runtime import Runtime
from csms.services.users import Identity
from web.api.deps import runtime

SESSION_USER: Final = "user"
SESSION_CSRF: Final = "csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
ANONYMOUS: Final = Identity("anonymous", "operator")


class LoginRequiredError(Exception):
    """The console needs a signed-in user: answered with a redirect to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        super().__init__("sign in first")
        self.next_url = next_url


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use). Every console form and HTMX request sends
    it back; a page of another site cannot read it, so it cannot forge a request."""
    token = request.session.get(SESSION_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[SESSION_CSRF] = token
    return token


async def check_csrf(request: Request) -> None:
    """403 unless the request carries this session's CSRF token (header or form field)."""
    expected = request.session.get(SESSION_CSRF)
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(str(expected), sent):
        raise HTTPException(
            403, "the form's security token is missing or stale: reload the page and try again"
        )


async def session_identity(request: Request, rt: Runtime) -> Identity | None:
    """The console user signed in with this request's cookie (checked against the database, so
    a removed or disabled user is out at once)."""
    name = request.session.get(SESSION_USER)
    if not isinstance(name, str):
        return None
    return await rt.users.identity(name)


async def api_identity(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Identity:
    """Who calls the JSON API: a bearer token, or (for reading only, e.g. an export link in the
    console) a console session. Writing needs the operator role."""
    if not rt.settings.web.auth_required:
        return ANONYMOUS
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    who: Identity | None = None
    if scheme.lower() == "bearer" and secret.strip():
        who = await rt.users.token_identity(secret.strip())
        if who is None:
            raise HTTPException(
                401,
                "the bearer token is unknown or revoked",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
    elif request.method in SAFE_METHODS:
        who = await session_identity(request, rt)
    if who is None:
        raise HTTPException(
            401,
            "send an API token: Authorization: Bearer <token> (operators create tokens with "
            "`python -m csms.accounts token NAME --role viewer|operator`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in SAFE_METHODS and who.role != "operator":
        raise HTTPException(403, f"{who.name} is a viewer: only operators may change things")
    return who
