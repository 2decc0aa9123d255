"""Alembic environment: migrations run on a connection handed over by csms.db.migrate.

From the command line (for writing new revisions):
``alembic -c csms/db/alembic.ini -x url=sqlite:///dev.db revision --autogenerate -m "..."``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from csms.db import models  # noqa: F401 - registers the tables on SQLModel.metadata
from csms.db.engine import create_engine

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///csms.db")
    asyncio.run(_run_from_url(url))
