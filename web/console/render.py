"""Templates, rendered whole or one named block at a time (the jinja2-fragments idea in a few
lines): an HTMX request names its target element, and the element's id is the block's name, so
every live partial is the very block the full page was rendered from."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def _local(value: datetime | None, tz: str = "UTC", fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return "—"
    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def make_env() -> Environment:
    """The console's Jinja2 environment (autoescaped; filters for times and numbers)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local"] = _local
    env.filters["num"] = _num
    env.filters["pct"] = _pct
    return env


ENV = make_env()


def render_block(template_name: str, block: str, context: dict[str, Any]) -> str:
    """One block of a template, rendered with the page's context."""
    template = ENV.get_template(template_name)
    if block not in template.blocks:
        raise KeyError(f"template {template_name!r} has no block {block!r}")
    return "".join(template.blocks[block](template.new_context(dict(context))))


def render(
    request: Request,
    template_name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    block: str | None = None,
) -> HTMLResponse:
    """The full page, or for an HTMX request the block named by its target (``HX-Target``, the
    id of the element being replaced) when the template has one; ``block`` forces one."""
    ctx = {"request": request, **getattr(request.state, "console", {}), **context}
    if block is None and request.headers.get("HX-Request") == "true":
        target = request.headers.get("HX-Target", "")
        if target in ENV.get_template(template_name).blocks:
            block = target
    if block is not None:
        return HTMLResponse(render_block(template_name, block, ctx), status_code=status_code)
    html = ENV.get_template(template_name).render(ctx)
    return HTMLResponse(html, status_code=status_code)
