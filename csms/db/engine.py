"""The async engine: plain database URLs in, the right async driver out."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


class DatabaseUrlError(ValueError):
    """A database URL we cannot use, with what to write instead."""


def async_url(url: str) -> str:
    """``sqlite:///x.db`` → ``sqlite+aiosqlite:///x.db``; ``postgresql://`` → ``postgresql+asyncpg://``."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several types for bad URLs
        raise DatabaseUrlError(
            f"cannot read database URL {url!r} ({exc}); write e.g. sqlite:///csms.db or "
            "postgresql://user@127.0.0.1:5432/csms"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise DatabaseUrlError(
        f"unsupported database {backend!r} in {url!r}: use sqlite:///… or postgresql://…"
    )


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine for ``url``.

    SQLite: a busy timeout so concurrent writers wait, write-ahead logging so readers never block
    the writer, and synchronous=NORMAL — in WAL mode a commit survives a crash of the process (the
    central system killed mid-write loses nothing); only a power cut can lose the last commits.
    """
    target = async_url(url)
    if not target.startswith("sqlite"):
        return create_async_engine(target, echo=echo, pool_pre_ping=True, pool_size=10)
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
