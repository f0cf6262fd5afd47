"""What the import tests share: one value from the database, and an import caught while it runs."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from dispatcher.settings import Settings
from dispatcher.storage.contacts import ContactImport
from dispatcher.storage.engine import create_engine


async def db_scalar(settings: Settings, statement: Any) -> int:
    engine = create_engine(settings.database_url)
    async with engine.connect() as conn:
        value = await conn.scalar(statement)
    await engine.dispose()
    return int(value or 0)


async def running_import(settings: Settings, list_id: int) -> int:
    """The import's id once its job has cleaned rows of the first chunk (the upload is still open)."""
    engine = create_engine(settings.database_url)
    query = sa.select(ContactImport.id, ContactImport.state, ContactImport.rows_done).where(
        ContactImport.list_id == list_id
    )
    try:
        for _ in range(400):
            async with engine.connect() as conn:
                found = (await conn.execute(query)).first()
            if found is not None and found[1] == "running" and found[2] > 0:
                return int(found[0])
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
    raise AssertionError("the job did not start before the upload completed")
