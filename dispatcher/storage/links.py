"""Tracked-link rows, click events and unsubscribe suppressions written from the public tracking endpoints.

A link code is looked up across workspaces on purpose: the public redirect has no API key, and the code (a
random value handed out only inside a campaign's messages) is what names the link. Everything written
after that carries the workspace of the row found. Writes that a repeated request could duplicate (a
second click, a second unsubscribe) are ``INSERT … ON CONFLICT DO NOTHING`` on their uniqueness guards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.base import insert_ignoring_duplicates
from dispatcher.storage.campaigns import Event, Message
from dispatcher.storage.contacts import ConsentRecord, Suppression
from dispatcher.storage.content import TrackedLink


async def link_by_code(session: AsyncSession, code: str) -> TrackedLink | None:
    return await session.scalar(sa.select(TrackedLink).where(TrackedLink.code == code))


async def ensure_links(
    session: AsyncSession,
    *,
    workspace_id: int,
    campaign_id: int | None,
    urls: Iterable[str],
    new_code: Callable[[], str],
    now: datetime,
) -> dict[str, str]:
    """URL → link code for one campaign, creating the rows that are missing (call once, at campaign start)."""
    wanted = list(dict.fromkeys(urls))
    if not wanted:
        return {}
    rows = await session.execute(
        sa.select(TrackedLink.url, TrackedLink.code).where(
            TrackedLink.workspace_id == workspace_id,
            TrackedLink.campaign_id.is_(None)
            if campaign_id is None
            else TrackedLink.campaign_id == campaign_id,
            TrackedLink.url.in_(wanted),
        )
    )
    codes: dict[str, str] = {url: code for url, code in rows}
    missing = [url for url in wanted if url not in codes]
    fresh = await _unused_codes(session, len(missing), new_code)
    for url, code in zip(missing, fresh, strict=True):
        session.add(
            TrackedLink(
                workspace_id=workspace_id, campaign_id=campaign_id, url=url, code=code, created_at=now
            )
        )
        codes[url] = code
    await session.flush()
    return codes


async def _unused_codes(session: AsyncSession, count: int, new_code: Callable[[], str]) -> list[str]:
    codes: list[str] = []
    while len(codes) < count:
        batch = list({new_code() for _ in range(count - len(codes))} - set(codes))
        taken = set(await session.scalars(sa.select(TrackedLink.code).where(TrackedLink.code.in_(batch))))
        codes += [code for code in batch if code not in taken]
    return codes


async def message_by_id(session: AsyncSession, workspace_id: int, message_id: int) -> Message | None:
    return await session.scalar(
        sa.select(Message).where(Message.workspace_id == workspace_id, Message.id == message_id)
    )


async def record_click(session: AsyncSession, *, link: TrackedLink, message: Message, now: datetime) -> bool:
    """One click event per (message, link): repeated clicks and scanner prefetches count once."""
    statement = insert_ignoring_duplicates(session, Event, ["workspace_id", "dedupe_key"]).values(
        workspace_id=message.workspace_id,
        kind="click",
        dedupe_key=f"click:{message.id}:{link.id}",
        message_id=message.id,
        campaign_id=message.campaign_id,
        contact_id=message.contact_id,
        machine=False,
        payload={"link_id": link.id, "batch_id": message.batch_id, "channel": message.channel},
        occurred_at=now,
        created_at=now,
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


async def unsubscribe_message(
    session: AsyncSession, message: Message, *, channel: str, now: datetime
) -> bool:
    """Suppress the message's address on ``channel``; True when it was not suppressed before.

    A first unsubscribe also appends a consent withdrawal and an ``unsubscribe`` event (for the opt-out
    rate); repeats change nothing.
    """
    suppress = insert_ignoring_duplicates(session, Suppression, ["workspace_id", "channel", "address"])
    result = await session.execute(
        suppress.values(
            workspace_id=message.workspace_id,
            channel=channel,
            address=message.address,
            reason="unsubscribe",
            source=f"unsubscribe link, message {message.id}",
            created_at=now,
        )
    )
    if not getattr(result, "rowcount", 0):
        return False
    session.add(
        ConsentRecord(
            workspace_id=message.workspace_id,
            address=message.address,
            channel=channel,
            granted=False,
            source="unsubscribe link",
            created_at=now,
        )
    )
    event = insert_ignoring_duplicates(session, Event, ["workspace_id", "dedupe_key"])
    await session.execute(
        event.values(
            workspace_id=message.workspace_id,
            kind="unsubscribe",
            dedupe_key=f"unsubscribe:{message.id}",
            message_id=message.id,
            campaign_id=message.campaign_id,
            contact_id=message.contact_id,
            machine=False,
            payload={"channel": channel, "batch_id": message.batch_id},
            occurred_at=now,
            created_at=now,
        )
    )
    await session.flush()
    return True
