"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from csms.db import models  # noqa: F401 - registers the tables
from csms.db.engine import create_engine
from csms.db.migrate import upgrade_to_head


async def test_migrations_match_the_models_and_are_idempotent(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade_to_head(engine)
        await upgrade_to_head(engine)  # a second start changes nothing

        def diff(conn: object) -> list[object]:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})  # type: ignore[arg-type]
            return list(compare_metadata(ctx, SQLModel.metadata))

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()
