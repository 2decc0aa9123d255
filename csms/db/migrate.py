"""Schema migrations, applied automatically when the central system starts."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(_config(connection), "head")


# Any fixed 64-bit number, the same in every worker: the PostgreSQL advisory lock under which
# migrations run.
_MIGRATION_LOCK = 0x6373_6D73_6D69_67  # "csmsmig"


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the schema up to the newest revision (idempotent). On PostgreSQL, under an advisory
    lock held to the end of the transaction: cluster workers starting together migrate one after
    the other (the later ones find nothing to do) instead of racing to create the same tables."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        await conn.run_sync(_upgrade)
