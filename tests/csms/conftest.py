"""Fixtures: a fresh database per test (SQLite file and, where reachable, PostgreSQL) and a running
central system on ephemeral ports."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from csms import runtime
from csms.runtime import Runtime
from csms.settings import DatabaseSettings, OcppSettings, Settings, WebSettings

PG_ADMIN = os.environ.get("CSMS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg_reachable() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL with nothing in it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'csms.db'}"
        return
    import asyncpg

    problem = await _pg_reachable()
    if problem is not None:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {problem}")
    name = f"csms_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def make_settings(db_url: str, **ocpp: object) -> Settings:
    """Settings for a test: loopback, ephemeral port."""
    base: dict[str, object] = {"host": "127.0.0.1", "port": 0, "response_timeout_s": 5}
    return Settings(
        ocpp=OcppSettings(**{**base, **ocpp}),  # type: ignore[arg-type]
        database=DatabaseSettings(url=db_url),
        web=WebSettings(initial_password_file=None),  # the test takes it from app.state
    )


RunCsms = Callable[..., AbstractAsyncContextManager[Runtime]]


@pytest.fixture
def run_csms(db_url: str) -> RunCsms:
    """Start the central system on the test database: ``async with run_csms(**ocpp) as rt``."""

    def start(**ocpp: object) -> AbstractAsyncContextManager[Runtime]:
        return runtime.run(make_settings(db_url, **ocpp))

    return start
