"""Errors in one documented shape: RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

PROBLEM: Final = "application/problem+json"

_TITLES: Final = {
    400: "Unreadable request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    422: "Invalid request",
    500: "Internal error",
}

_DESCRIPTIONS: Final = {
    400: "the body cannot be read: it is not UTF-8 encoded JSON",
    401: "no bearer token, or one that is unknown or revoked",
    403: "a viewer's token: only operators may change things",
    404: "no such resource (the detail names it)",
    409: "the request conflicts with the resource's state (the detail says how)",
    422: "invalid input: every wrong field is listed in `errors`",
    500: "an unexpected error (logged on the server; the answer carries no traceback)",
}


class FieldError(BaseModel):
    """One invalid input field."""

    field: str = Field(..., description='where, e.g. "query.limit" or "body.capacity_kw"')
    message: str = Field(..., description="what is wrong with it")


class Problem(BaseModel):
    """An error (RFC 9457). ``detail`` says what was wrong and how to put it right."""

    type: str = Field(..., description='a URI naming the problem type ("about:blank")')
    title: str = Field(..., description="short summary of the problem type")
    status: int = Field(..., description="the HTTP status code")
    detail: str = Field(..., description="what went wrong in this request")
    errors: list[FieldError] = Field(
        default_factory=list, description="invalid input only (422): every wrong field"
    )


def problem(status: int, title: str, detail: str, **extra: object) -> JSONResponse:
    """A problem-details response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def title(status: int) -> str:
    """The problem title for an HTTP status."""
    if status in _TITLES:
        return _TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status outside the standard ones
        return "Error"


def http_problem(
    exc: HTTPException, method: str = "", path: str = "", allow: Sequence[str] = ()
) -> JSONResponse:
    """An HTTP error as problem details (``method``, ``path`` and the methods the path ``allow``s:
    the request's, for the words and headers of the router's own 404 and 405)."""
    headers = dict(exc.headers or {})
    detail = str(exc.detail)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI's words for a body that is not UTF-8 ("There was an error parsing the body")
        # do not say what to change
        detail = f"the body must be JSON encoded as UTF-8: {exc.__cause__}"
    elif exc.status_code == 404 and detail == "Not Found":  # no route matched
        detail = f"there is no {path}: the API's endpoints are listed at /docs"
    elif exc.status_code == 405 and detail == "Method Not Allowed" and allow:
        # Starlette's Allow names the methods of the first route on the path only
        headers["Allow"] = ", ".join(allow)
        detail = f"{method} is not allowed on {path}; allowed: {headers['Allow']}"
    response = problem(exc.status_code, title(exc.status_code), detail)
    response.headers.update(headers)
    return response


def invalid(field: str, message: str) -> RequestValidationError:
    """Invalid input found by a route (not by the schema): raise it for a 422 that lists the
    field, like every other 422. ``field`` is dotted, e.g. ``query.since`` or ``body``."""
    loc = tuple(field.split("."))
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message}])


def validation_problem(exc: RequestValidationError) -> JSONResponse:
    """Invalid input as problem details listing every wrong field."""
    errors = [_field_error(e) for e in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, title(422), detail or "the request is invalid", errors=errors)


def _field_error(error: Mapping[str, Any]) -> dict[str, str]:
    if error.get("type") == "json_invalid":
        # FastAPI reports the character offset as the location and the reason in ctx
        reason = (error.get("ctx") or {}).get("error", "")
        where = error["loc"][1] if len(error["loc"]) > 1 else "?"
        return {"field": "body", "message": f"invalid JSON at character {where}: {reason}"}
    message = str(error["msg"])
    # pydantic prefixes what a validator raised; the field name already says it is invalid
    message = message.removeprefix("Value error, ")
    return {"field": ".".join(str(p) for p in error["loc"]), "message": message}


def server_problem() -> JSONResponse:
    """An unexpected error: no traceback or internals in the answer (the server logs them)."""
    return problem(
        500,
        title(500),
        "the server failed to handle this request; it has been logged, try again later",
    )


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (``document`` makes them problem+json)."""
    return {s: {"model": Problem, "description": _DESCRIPTIONS[s]} for s in statuses}


def document(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the spec say what the API does: every error response is ``application/problem+json``
    with the ``Problem`` schema (FastAPI documents them as application/json, and its default
    422 with a body shape we never send)."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    ref = {"$ref": "#/components/schemas/Problem"}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" in operation:
                # any body may fail to decode (FastAPI's 400), whatever the route declares
                operation["responses"].setdefault("400", {"description": _DESCRIPTIONS[400]})
            for status, response in operation.get("responses", {}).items():
                if status.startswith(("4", "5")):
                    response["content"] = {PROBLEM: {"schema": ref}}
                    if status == "422":
                        response["description"] = _DESCRIPTIONS[422]
    if "Problem" not in components:
        schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components["Problem"] = schema
    # FastAPI's own 422 body, no longer referenced once every 422 is a Problem
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in json.dumps(spec):
            components.pop(unused, None)
    return spec
