"""Suppressions and the consent records that go with them, always scoped by workspace: the API's, the send
path's re-check, and those that replies (STOP, START), bounces and complaints write. Addresses arrive
normalised (E.164 / clean e-mail)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.base import any_of, insert_ignoring_duplicates
from dispatcher.storage.contacts import ConsentRecord, Suppression


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
    values = {"channel": channel, "address": address, "reason": reason, "source": source}
    new = await _insert_new(session, workspace_id, now, **values)
    row = await session.scalar(
        sa.select(Suppression).where(
            Suppression.workspace_id == workspace_id,
            Suppression.channel == channel,
            Suppression.address == address,
        )
    )
    assert row is not None  # just inserted or already there; suppressions are only removed by id
    return row, new


async def _insert_new(session: AsyncSession, workspace_id: int, now: datetime, **values: str) -> bool:
    """Insert unless the address is already suppressed on the channel; True when this call added it."""
    new_id = await session.scalar(
        insert_ignoring_duplicates(session, Suppression, ["workspace_id", "channel", "address"])
        .values(workspace_id=workspace_id, created_at=now, **values)
        .returning(Suppression.id)
    )
    return new_id is not None


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


async def suppress_address(
    session: AsyncSession,
    *,
    workspace_id: int,
    channel: str,
    address: str,
    reason: str,
    source: str,
    now: datetime,
) -> bool:
    """Suppress and, the first time only, append a consent withdrawal; True when newly suppressed."""
    values = {"channel": channel, "address": address, "reason": reason, "source": source[:200]}
    if not await _insert_new(session, workspace_id, now, **values):
        return False
    await add_consent(
        session,
        workspace_id=workspace_id,
        channel=channel,
        address=address,
        granted=False,
        source=source,
        now=now,
    )
    return True


async def lift_suppression(
    session: AsyncSession, *, workspace_id: int, channel: str, address: str, reason: str
) -> bool:
    """Remove a suppression only if it has ``reason``: START lifts a STOP, never a bounce or a manual one."""
    result = await session.execute(
        sa.delete(Suppression).where(
            Suppression.workspace_id == workspace_id,
            Suppression.channel == channel,
            Suppression.address == address,
            Suppression.reason == reason,
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def add_consent(
    session: AsyncSession,
    *,
    workspace_id: int,
    channel: str,
    address: str,
    granted: bool,
    source: str,
    now: datetime,
) -> None:
    """Consent records are append-only: a change of mind is a new row."""
    session.add(
        ConsentRecord(
            workspace_id=workspace_id,
            address=address,
            channel=channel,
            granted=granted,
            source=source[:200],
            created_at=now,
        )
    )
    await session.flush()
