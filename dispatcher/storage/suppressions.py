"""Suppression queries, always scoped by workspace. Addresses arrive normalised (E.164 / clean e-mail)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.base import any_of, insert_ignoring_duplicates
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


async def suppressed_among(
    session: AsyncSession, workspace_id: int, channel: str, addresses: Sequence[str]
) -> set[str]:
    """Checked again at send time: a suppression added after planning still stops the message."""
    if not addresses:
        return set()
    rows = await session.scalars(
        sa.select(Suppression.address).where(
            Suppression.workspace_id == workspace_id,
            Suppression.channel.in_((channel, "all")),
            any_of(session, Suppression.address, sorted(set(addresses)), sa.String),
        )
    )
    return set(rows)


async def add_suppressions(
    session: AsyncSession,
    workspace_id: int,
    channel: str,
    entries: Sequence[tuple[str, str, str]],
    now: datetime,
) -> None:
    """``(address, reason, source)`` rows; an address already suppressed on the channel stays as it was."""
    if not entries:
        return
    await session.execute(
        insert_ignoring_duplicates(session, Suppression, ["workspace_id", "channel", "address"]).values(
            [
                {
                    "workspace_id": workspace_id,
                    "channel": channel,
                    "address": a,
                    "reason": r,
                    "source": s,
                    "created_at": now,
                }
                for a, r, s in entries
            ]
        )
    )
