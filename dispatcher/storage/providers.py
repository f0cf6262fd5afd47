"""Provider account queries, always scoped by workspace."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.errors import ConflictError
from dispatcher.storage.campaigns import Campaign
from dispatcher.storage.content import Provider


async def add_provider(session: AsyncSession, *, workspace_id: int, now: datetime, **values: Any) -> Provider:
    row = Provider(workspace_id=workspace_id, created_at=now, **values)
    session.add(row)
    try:
        await session.flush()
    except sqlalchemy.exc.IntegrityError:
        raise ConflictError(f"a provider named {values.get('name')!r} already exists") from None
    return row


async def get_provider(session: AsyncSession, workspace_id: int, provider_id: int) -> Provider | None:
    return await session.scalar(
        sa.select(Provider).where(Provider.workspace_id == workspace_id, Provider.id == provider_id)
    )


async def page_providers(
    session: AsyncSession, workspace_id: int, *, after: int, limit: int, channel: str | None
) -> list[Provider]:
    query = sa.select(Provider).where(Provider.workspace_id == workspace_id, Provider.id > after)
    if channel is not None:
        query = query.where(Provider.channel == channel)
    return list(await session.scalars(query.order_by(Provider.id).limit(limit)))


async def name_in_use(session: AsyncSession, workspace_id: int, name: str, *, exclude_id: int) -> bool:
    found = await session.scalar(
        sa.select(Provider.id)
        .where(Provider.workspace_id == workspace_id, Provider.name == name, Provider.id != exclude_id)
        .limit(1)
    )
    return found is not None


async def update_provider(session: AsyncSession, row: Provider, changes: Mapping[str, Any]) -> Provider:
    for name, value in changes.items():
        setattr(row, name, value)
    try:
        await session.flush()
    except sqlalchemy.exc.IntegrityError:
        raise ConflictError(f"a provider named {row.name!r} already exists") from None
    return row


async def campaigns_using(
    session: AsyncSession, workspace_id: int, provider_id: int, states: Iterable[str] | None = None
) -> list[tuple[int, str]]:
    """(id, state) of campaigns pointing at the provider, active ones first."""
    query = sa.select(Campaign.id, Campaign.state).where(
        Campaign.workspace_id == workspace_id, Campaign.provider_id == provider_id
    )
    if states is not None:
        query = query.where(Campaign.state.in_(list(states)))
    rows = await session.execute(query.order_by(Campaign.id).limit(20))
    return [(int(cid), str(state)) for cid, state in rows]


async def delete_provider(session: AsyncSession, workspace_id: int, provider_id: int) -> bool:
    """False when absent. A provider still named by a ledger row cannot go (the foreign key says so)."""
    try:
        async with session.begin_nested():
            result = await session.execute(
                sa.delete(Provider).where(Provider.workspace_id == workspace_id, Provider.id == provider_id)
            )
    except sqlalchemy.exc.IntegrityError:
        raise ConflictError(
            f"provider {provider_id} is recorded on sent messages; disable it (enabled=false) instead"
        ) from None
    return bool(getattr(result, "rowcount", 0))
