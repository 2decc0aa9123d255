"""Who is asking, and what the page templates need on every request (user, CSRF token, sites)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from csms.runtime import Runtime
from csms.services.console import ConsoleQueries
from csms.services.users import Identity
from web.api.deps import runtime
from web.auth import ANONYMOUS, SAFE_METHODS, LoginRequiredError, check_csrf, csrf_token
from web.auth import session_identity as _session_identity


class Principal(Identity):
    """A console user (the identity, with what templates ask of it)."""

    __slots__ = ()

    @property
    def username(self) -> str:
        """The name shown in the header."""
        return self.name

    @property
    def can_operate(self) -> bool:
        """May send commands and change settings."""
        return self.role == "operator"


async def console_user(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Principal:
    """The signed-in user of a console page (redirect to sign-in otherwise); checks the CSRF
    token of every request that changes something; fills in what every template shows."""
    who: Identity | None = ANONYMOUS
    if rt.settings.web.auth_required:
        who = await _session_identity(request, rt)
        if who is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequiredError(target if request.method in SAFE_METHODS else "/console/")
    assert who is not None
    if request.method not in SAFE_METHODS:
        await check_csrf(request)
    user = Principal(who.name, who.role)
    request.state.console = {
        "user": user,
        "csrf_token": csrf_token(request),
        "sites": [s.id for s in await rt.sites.all_sites()],
    }
    return user


async def console_operator(user: Annotated[Principal, Depends(console_user)]) -> Principal:
    """Only operators may send commands or change settings."""
    if not user.can_operate:
        raise HTTPException(403, f"{user.name} is a viewer: only operators may do this")
    return user


def console_queries(rt: Annotated[Runtime, Depends(runtime)]) -> ConsoleQueries:
    """Read queries for the console."""
    return ConsoleQueries(rt.sessions)


UserDep = Annotated[Principal, Depends(console_user)]
OperatorDep = Annotated[Principal, Depends(console_operator)]
ConsoleDep = Annotated[ConsoleQueries, Depends(console_queries)]
