"""What frequency caps count, read back from the ledger: Redis holds the caps, and the ledger rebuilds them
for some addresses (a chunk meeting contacts Redis has no history for) or for everyone (Redis restarted)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.capping import contact_key, send_key
from dispatcher.storage.base import any_of, on_postgresql
from dispatcher.storage.campaigns import IS_PAST_QUEUE, Message

CAP_COUNTED = ("sending", "sent", "delivered")
"""States whose sends frequency caps count: everything not known to have failed (doubt counts as sent)."""


async def cap_history(
    session: AsyncSession, workspace_id: int, channel: str, addresses: Sequence[str], since: datetime
) -> dict[str, list[tuple[str, datetime]]]:
    """What the ledger says was sent to these addresses: rebuilds Redis caps after a restart."""
    by_address = sa.select(
        Message.address, Message.campaign_id, Message.id, Message.sent_at, Message.updated_at, Message.state
    ).where(
        Message.workspace_id == workspace_id,
        Message.channel == channel,
        any_of(session, Message.address, sorted(set(addresses)), sa.String),
        IS_PAST_QUEUE,  # ix_messages_workspace_channel_address holds only these; CAP_COUNTED are among them
    )
    if on_postgresql(session):
        # OFFSET 0 keeps the rows found by address apart from the state filter: with statistics taken
        # before a campaign sent anything, the planner otherwise read every sent row of the table through
        # the state index for each chunk (394 ms a chunk at 50,000 sent, growing with the campaign)
        by_address = by_address.offset(0)
    found_rows = by_address.subquery()
    rows = await session.execute(
        sa.select(
            found_rows.c.address,
            found_rows.c.campaign_id,
            found_rows.c.id,
            found_rows.c.sent_at,
            found_rows.c.updated_at,
        ).where(
            found_rows.c.state.in_(CAP_COUNTED),
            found_rows.c.updated_at >= since,
        )
    )
    found: dict[str, list[tuple[str, datetime]]] = {}
    for address, campaign_id, message_id, sent_at, updated_at in rows:
        found.setdefault(address, []).append((send_key(campaign_id, message_id), sent_at or updated_at))
    return found


CapSend = tuple[str, str, str, datetime]
"""``(channel, contact key, send key, at)`` of one send the caps count."""


async def sends_since(
    session: AsyncSession, since: datetime, *, batch: int = 10_000
) -> AsyncIterator[list[CapSend]]:
    """Every send of every workspace that frequency caps count (as :func:`cap_history`), in batches, read
    in one statement: rebuilds Redis's whole cap history after a restart."""
    rows = await session.stream(
        sa.select(
            Message.channel,
            Message.workspace_id,
            Message.address,
            Message.campaign_id,
            Message.id,
            sa.func.coalesce(Message.sent_at, Message.updated_at),
        )
        .where(Message.state.in_(CAP_COUNTED), Message.updated_at >= since)
        .execution_options(yield_per=batch)
    )
    async for part in rows.partitions(batch):
        yield [
            (channel, contact_key(workspace_id, address), send_key(campaign_id, message_id), at)
            for channel, workspace_id, address, campaign_id, message_id, at in part
        ]
