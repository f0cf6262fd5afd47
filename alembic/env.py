"""Async alembic environment: the URL comes from the config (set by `dispatcher migrate`) or DATABASE_URL."""

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from dispatcher.storage.engine import create_engine
from dispatcher.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: run `dispatcher migrate` or set DATABASE_URL")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_url())
    async with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite's procedure for changes that rebuild a table: with foreign keys on, dropping the old
            # copy would delete (or refuse to delete) the rows that point at it. The pragma only takes
            # effect outside a transaction, so it comes first; the check below replaces the enforcement.
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        await connection.run_sync(_run)
        if sqlite:
            broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).fetchall()
            if broken:
                await connection.rollback()
                raise RuntimeError(f"migration left {len(broken)} rows with dangling foreign keys")
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    existing = config.attributes.get("connection")
    if existing is not None:
        _run(existing)
    else:
        asyncio.run(_run_async())
