"""Contact-list queries, always scoped by workspace."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.contacts import ContactList


async def add_list(
    session: AsyncSession,
    *,
    workspace_id: int,
    name: str,
    description: str,
    default_region: str | None,
    default_timezone: str | None,
    now: datetime,
) -> ContactList:
    row = ContactList(
        workspace_id=workspace_id,
        name=name,
        description=description,
        default_region=default_region,
        default_timezone=default_timezone,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return row


async def get_list(session: AsyncSession, workspace_id: int, list_id: int) -> ContactList | None:
    return await session.scalar(
        sa.select(ContactList).where(ContactList.workspace_id == workspace_id, ContactList.id == list_id)
    )


async def page_lists(
    session: AsyncSession, workspace_id: int, *, after: int, limit: int
) -> list[ContactList]:
    rows = await session.scalars(
        sa.select(ContactList)
        .where(ContactList.workspace_id == workspace_id, ContactList.id > after)
        .order_by(ContactList.id)
        .limit(limit)
    )
    return list(rows)


async def delete_list(session: AsyncSession, workspace_id: int, list_id: int) -> bool:
    result = await session.execute(
        sa.delete(ContactList).where(ContactList.workspace_id == workspace_id, ContactList.id == list_id)
    )
    return bool(getattr(result, "rowcount", 0))
