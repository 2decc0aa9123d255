"""Request-scoped access to the running central system, and the input types the routes share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import Depends, Path, Query, Request
from pydantic import AfterValidator, AwareDatetime

from csms.runtime import Runtime
from csms.services.queries import Queries

MAX_ROW_ID: Final = 2**63 - 1
"""Row ids are 64-bit (SQLite INTEGER, PostgreSQL BIGINT): a larger number names no row, and the
database driver fails on it instead of finding nothing."""

EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2200, 1, 1, tzinfo=UTC)
INSTANT_RANGE: Final = "between 1970-01-01 and 2200-01-01 (UTC), with a UTC offset"


def outside_range(value: datetime) -> str | None:
    """What is wrong with a time the system cannot compute with (None: nothing). Years 1 and 9999
    are valid ISO 8601 but overflow as soon as they are shifted to UTC, a site's zone, or by a
    day."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        return f"must be {INSTANT_RANGE} (got {value.isoformat()})"
    return None


def _instant(value: datetime) -> datetime:
    problem = outside_range(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_instant)]
"""An ISO 8601 time with a UTC offset, within ``EARLIEST`` and ``LATEST``."""

KEY_PATTERN: Final = r"^[^\x00-\x1f\x7f]+$"
"""No control characters (PostgreSQL refuses a NUL in text with an error, not a miss)."""

Key = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=KEY_PATTERN,
        description="an id (1 to 64 characters, no control characters)",
    ),
]
"""A site or charger id as stored (64 characters at most; PostgreSQL refuses longer ones and any
NUL character with an error rather than a miss)."""

KeyFilter = Annotated[
    str | None,
    Query(min_length=1, max_length=64, pattern=KEY_PATTERN, description="only this id"),
]
"""A site or charger id as a filter (the same rules as ``Key``)."""

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a row id (a positive integer)")]

RowIdFilter = Annotated[
    int | None, Query(ge=1, le=MAX_ROW_ID, description="only this row id (a positive integer)")
]

Offset = Annotated[int, Query(ge=0, le=MAX_ROW_ID, description="rows to skip")]


def runtime(request: Request) -> Runtime:
    """The Runtime started by the app's lifespan."""
    rt: Runtime = request.app.state.runtime
    return rt


def queries(request: Request) -> Queries:
    """Read queries over the runtime's database."""
    return Queries(runtime(request).sessions)


RuntimeDep = Annotated[Runtime, Depends(runtime)]
QueriesDep = Annotated[Queries, Depends(queries)]
