"""Request-scoped access to the running central system."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from csms.runtime import Runtime
from csms.services.queries import Queries


def runtime(request: Request) -> Runtime:
    """The Runtime started by the app's lifespan."""
    rt: Runtime = request.app.state.runtime
    return rt


def queries(request: Request) -> Queries:
    """Read queries over the runtime's database."""
    return Queries(runtime(request).sessions)


RuntimeDep = Annotated[Runtime, Depends(runtime)]
QueriesDep = Annotated[Queries, Depends(queries)]
