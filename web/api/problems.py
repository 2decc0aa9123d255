"""Errors in one documented shape: RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: object) -> JSONResponse:
    """A problem-details response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def http_problem(exc: HTTPException) -> JSONResponse:
    """An HTTP error as problem details."""
    response = problem(exc.status_code, _title(exc.status_code), str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def validation_problem(exc: RequestValidationError) -> JSONResponse:
    """Invalid input as problem details listing every wrong field."""
    errors = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "Invalid request", detail, errors=errors)


def install(app: FastAPI) -> None:
    """Map HTTP and validation errors to problem details."""

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return http_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(exc)


def _title(status: int) -> str:
    return {404: "Not found", 401: "Unauthorized", 403: "Forbidden", 409: "Conflict"}.get(
        status, "Error"
    )
