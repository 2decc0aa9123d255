"""The FastAPI application. Its lifespan starts and stops the central system runtime."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Match

from csms import runtime as csms_runtime
from csms.domain.clock import Clock
from csms.settings import Settings
from web.api import audit, charge_points, health, plan, problems, sites, transactions
from web.auth import LoginRequiredError, api_identity
from web.console import routes as console

STATIC = Path(__file__).resolve().parent / "static"

log = logging.getLogger(__name__)


def _hand_over(admin: tuple[str, str], path: Path | None) -> None:
    """Give the first-run password to the operator without logging it (logs are shipped and
    kept): in a file only its owner can read, whose path is logged."""
    name, password = admin
    if path is None:
        log.warning("first run: created console user %r (its password went to the caller)", name)
        return
    try:
        path.unlink(missing_ok=True)  # a leftover of an earlier database: its password is void
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{password}\n")
    except OSError as exc:
        log.error(
            "first run: created console user %r but could not write its password to %s (%s); "
            "create another operator with: python -m csms.accounts user NAME --role operator",
            name,
            path,
            exc.strerror or exc,
        )
        return
    log.warning(
        "first run: created console user %r; its password is in %s (readable by this user "
        "only): sign in, then delete the file",
        name,
        path.resolve(),
    )


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """Build the app for these settings (nothing is started until the lifespan runs)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with csms_runtime.run(settings, clock) as rt:
            app.state.runtime = rt
            app.state.first_run_admin = None
            if settings.web.auth_required:
                admin = await rt.users.first_run_admin()
                if admin is not None:
                    # shown once, on the first start of an empty database; never a fixed default
                    app.state.first_run_admin = admin
                    _hand_over(admin, settings.web.initial_password_file)
            yield

    app = FastAPI(
        title="EV smart-charging central system",
        version="0.1.0",
        description="OCPP 1.6J / 2.0.1 central system with an optimal planner in the loop.",
        lifespan=lifespan,
        responses=problems.responses(500),
    )
    _install_errors(app)
    _document_errors(app)
    app.include_router(health.router)  # public: liveness probes carry no credentials
    guarded = [Depends(api_identity)]
    for router in (
        charge_points.router,
        transactions.router,
        sites.router,
        plan.router,
        audit.router,
    ):
        app.include_router(router, dependencies=guarded, responses=problems.responses(401))
    for router in (console.root, *console.ROUTERS):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.web.session_secret or secrets.token_urlsafe(32),
        session_cookie="csms_session",
        max_age=settings.web.session_max_age_s,
        same_site="lax",
        https_only=settings.web.cookie_secure,
    )

    @app.exception_handler(LoginRequiredError)
    async def _login(request: Request, exc: LoginRequiredError) -> Response:
        return console.login_redirect(request, exc.next_url)

    return app


def _install_errors(app: FastAPI) -> None:
    """Console requests get error pages; the API answers with problem details (RFC 9457)."""

    async def _http(request: Request, exc: Exception) -> Response:
        if console.is_console(request) and isinstance(exc, HTTPException):
            return console.error_page(request, exc.status_code, str(exc.detail))
        assert isinstance(exc, HTTPException)
        allow = _allowed_methods(request) if exc.status_code == 405 else []
        return problems.http_problem(exc, request.method, request.url.path, allow)

    async def _invalid(request: Request, exc: Exception) -> Response:
        if console.is_console(request) and isinstance(exc, RequestValidationError):
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
            )
            return console.error_page(request, 422, detail)
        assert isinstance(exc, RequestValidationError)
        return problems.validation_problem(exc)

    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Starlette's ServerErrorMiddleware calls this, sends the answer, then re-raises so that
        # the server logs the traceback: the client gets the problem, never the traceback.
        if console.is_console(request):
            try:
                return console.error_page(request, 500, "the server failed to handle this request")
            except Exception:  # the page itself may be what failed: answer plainly
                log.exception("console error page failed")
        return problems.server_problem()

    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _unexpected)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on the request's path (asked of the routes themselves:
    FastAPI wraps included routers, so their routes are not listed at the top)."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def _document_errors(app: FastAPI) -> None:
    """The OpenAPI spec documents errors as the problem details they are."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problems.document(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
