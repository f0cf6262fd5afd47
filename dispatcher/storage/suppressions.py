"""Suppression queries, always scoped by workspace. Addresses arrive normalised (E.164 / clean e-mail)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.base import insert_ignoring_duplicates
from dispatcher.storage.contacts import Suppression


async def add_suppression(
    session: AsyncSession,
    *,
    workspace_id: int,
    channel: str,
    address: str,
    reason: str,
    source: str,
    now: datetime,
) -> tuple[Suppression, bool]:
    """Insert unless (channel, address) is already suppressed; returns the row and whether it is new.

    ``ON CONFLICT DO NOTHING`` rather than check-then-insert: two requests suppressing the same address at
    once both succeed, one of them creating the row.
    """
    new_id = await session.scalar(
        insert_ignoring_duplicates(session, Suppression, ["workspace_id", "channel", "address"])
        .values(
            workspace_id=workspace_id,
            channel=channel,
            address=address,
            reason=reason,
            source=source,
            created_at=now,
        )
        .returning(Suppression.id)
    )
    row = await session.scalar(
        sa.select(Suppression).where(
            Suppression.workspace_id == workspace_id,
            Suppression.channel == channel,
            Suppression.address == address,
        )
    )
    assert row is not None  # just inserted or already there; suppressions are only removed by id
    return row, new_id is not None


async def get_suppression(
    session: AsyncSession, workspace_id: int, suppression_id: int
) -> Suppression | None:
    return await session.scalar(
        sa.select(Suppression).where(
            Suppression.workspace_id == workspace_id, Suppression.id == suppression_id
        )
    )


async def page_suppressions(
    session: AsyncSession,
    workspace_id: int,
    *,
    channel: str | None,
    reason: str | None,
    address: str | None,
    after: int,
    limit: int,
) -> list[Suppression]:
    query = sa.select(Suppression).where(Suppression.workspace_id == workspace_id, Suppression.id > after)
    if channel is not None:
        query = query.where(Suppression.channel == channel)
    if reason is not None:
        query = query.where(Suppression.reason == reason)
    if address is not None:
        query = query.where(Suppression.address == address)
    return list(await session.scalars(query.order_by(Suppression.id).limit(limit)))


async def delete_suppression(session: AsyncSession, workspace_id: int, suppression_id: int) -> bool:
    result = await session.execute(
        sa.delete(Suppression).where(
            Suppression.workspace_id == workspace_id, Suppression.id == suppression_id
        )
    )
    return bool(getattr(result, "rowcount", 0))
