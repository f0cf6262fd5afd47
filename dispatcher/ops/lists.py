"""Contact-list services shared by the API and the CLI."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.errors import NotFoundError
from dispatcher.storage import lists as list_store
from dispatcher.storage.contacts import ContactList


async def create_list(
    session: AsyncSession,
    workspace_id: int,
    *,
    name: str,
    description: str = "",
    default_region: str | None = None,
    default_timezone: str | None = None,
    now: datetime,
) -> ContactList:
    return await list_store.add_list(
        session,
        workspace_id=workspace_id,
        name=name,
        description=description,
        default_region=default_region.upper() if default_region else None,
        default_timezone=default_timezone,
        now=now,
    )


async def get_list(session: AsyncSession, workspace_id: int, list_id: int) -> ContactList:
    found = await list_store.get_list(session, workspace_id, list_id)
    if found is None:
        raise NotFoundError(f"list {list_id} not found")
    return found


async def delete_list(session: AsyncSession, workspace_id: int, list_id: int) -> None:
    if not await list_store.delete_list(session, workspace_id, list_id):
        raise NotFoundError(f"list {list_id} not found")
