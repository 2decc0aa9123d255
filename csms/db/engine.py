"""The async engine: plain database URLs in, the right async driver out."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# How long a write waits for the database to come back (a PostgreSQL restart takes a few seconds)
# before it gives up and the charger gets a CALLERROR (it then sends the message again). Shorter
# than a charger's usual call timeout (30 s), so the answer still reaches a charger that waited.
RETRY_BUDGET_S = 15.0
RETRY_FIRST_DELAY_S = 0.1
RETRY_MAX_DELAY_S = 2.0
# SQLSTATE classes that mean "the server is away", not "the statement is wrong": 08 connection
# exception, 57P01-57P03 admin shutdown, crash shutdown, cannot connect now (starting up).
_TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03")
# The task running a retried unit of work (a nested unit in the same task is not retried on its
# own; a task started from inside one inherits the variable but is another task, so it retries).
_retrying: contextvars.ContextVar[asyncio.Task[Any] | None] = contextvars.ContextVar(
    "db_retrying", default=None
)


class DatabaseUrlError(ValueError):
    """A database URL we cannot use, with what to write instead."""


def async_url(url: str) -> str:
    """``sqlite:///x.db`` → ``sqlite+aiosqlite:///x.db``; ``postgresql://`` → ``postgresql+asyncpg://``."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types for bad URLs
        # Not echoed: an unreadable URL may still hold a password.
        raise DatabaseUrlError(
            f"cannot read the database URL ({type(exc).__name__}); write e.g. sqlite:///csms.db "
            "or postgresql://user@127.0.0.1:5432/csms"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise DatabaseUrlError(
        f"unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///… or postgresql://…"
    )


def create_engine(
    url: str, *, echo: bool = False, pool_size: int = 10, max_overflow: int = 10
) -> AsyncEngine:
    """An async engine for ``url``.

    SQLite: a busy timeout so concurrent writers wait, write-ahead logging so readers never block
    the writer, and synchronous=NORMAL — in WAL mode a commit survives a crash of the process (the
    central system killed mid-write loses nothing); only a power cut can lose the last commits.
    """
    target = async_url(url)
    if not target.startswith("sqlite"):
        # pre_ping: after a PostgreSQL restart every pooled connection is dead; each is tested
        # (and replaced) when checked out instead of failing the first statement that uses it.
        return create_async_engine(
            target,
            echo=echo,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
    engine = create_async_engine(target, echo=echo, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def is_transient(exc: BaseException) -> bool:
    """Does ``exc`` (or what caused it) say the database is unreachable for now — refused or
    dropped connection, server shutting down or starting up — rather than that the work is wrong?
    Such work may be done again once the database is back."""
    todo: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, OSError):  # refused, reset, unreachable (ConnectionError is an OSError)
            return True
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_TRANSIENT_SQLSTATES):
            return True
        # asyncpg's client-side "connection is closed" (the server went away mid-session).
        if type(e).__name__ == "InterfaceError" and "connection is closed" in str(e):
            return True
        todo.extend([getattr(e, "orig", None), e.__cause__, e.__context__])
    return False


async def retry_transient(
    work: Callable[[], Awaitable[T]], what: str, budget_s: float = RETRY_BUDGET_S
) -> T:
    """Run ``work`` (one whole database transaction); while the database is unreachable, run it
    again with exponential backoff, for up to ``budget_s``; then (or on any other error) raise.

    The work must be safe to run twice: a commit whose answer was lost with the connection may
    have been applied. Every write of the station service is idempotent for that reason.
    """
    task = asyncio.current_task()
    if task is not None and _retrying.get() is task:  # inside a retried unit: it retries all
        return await work()
    token = _retrying.set(task)
    try:
        deadline = time.monotonic() + budget_s
        delay = RETRY_FIRST_DELAY_S
        attempt = 0
        while True:
            try:
                return await work()
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                attempt += 1
                # One line per operation (the first retry), not one per attempt: an outage makes
                # hundreds of operations retry at once.
                level = logging.WARNING if attempt == 1 else logging.DEBUG
                log.log(level, "database unavailable, retrying %s: %s", what, _short(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY_S)
    finally:
        _retrying.reset(token)


def retried(
    method: Callable[P, Awaitable[T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorator: the method runs under :func:`retry_transient` (it must be idempotent)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return await retry_transient(lambda: method(*args, **kwargs), method.__qualname__)

    return wrapper


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
