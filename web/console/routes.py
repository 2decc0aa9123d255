"""All console routers, and friendly error pages for them."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from web.console import audit, chargers, login, sessions, settings, site_pages, what_if
from web.console.render import render

ROUTERS: tuple[APIRouter, ...] = (
    login.router,
    site_pages.router,
    sessions.router,
    chargers.router,
    audit.router,
    settings.router,
    what_if.router,
)

TITLES = {
    401: "Please sign in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "Invalid input",
}

root = APIRouter(include_in_schema=False)


@root.get("/")
async def home() -> RedirectResponse:
    """The console is the front door (the API is under /api, its docs at /docs)."""
    return RedirectResponse("/console/", status_code=307)


def login_redirect(request: Request, next_url: str) -> Response:
    """Send an unsigned visitor to the sign-in page (HTMX: make the whole page go there)."""
    target = "/console/login?" + urlencode({"next": next_url})
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def is_console(request: Request) -> bool:
    """Does this request belong to the console (HTML errors) rather than the API (JSON)?"""
    return request.url.path == "/console" or request.url.path.startswith("/console/")


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    """An error as a console page (or as the target block's content for an HTMX request)."""
    title = TITLES.get(status, "Something went wrong")
    ctx: dict[str, object] = {"title": title, "detail": detail, "tab": ""}
    response = render(request, "error.html", ctx, status_code=status, block=None)
    if request.headers.get("HX-Request") == "true":
        # show the message where the partial would have gone instead of swapping in a page
        html = f'<p class="error" role="alert">{title}: {detail}</p>'
        response = HTMLResponse(html, status_code=status)
        response.headers["HX-Reswap"] = "beforebegin"
    return response
