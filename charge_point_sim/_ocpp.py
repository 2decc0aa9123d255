"""A typed face for the untyped ``ocpp`` package's ``@on`` decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from ocpp.routing import on as _on

F = TypeVar("F", bound=Callable[..., Any])


def on(action: str) -> Callable[[F], F]:
    """Route incoming ``action`` CALLs to the decorated method (handlers get snake_case kwargs)."""
    return cast(Callable[[F], F], _on(action))
