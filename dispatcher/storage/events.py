"""Inbound events and the receipts that advance the send ledger.

Every event row has a ``dedupe_key`` unique per workspace and is written with ``INSERT … ON CONFLICT DO
NOTHING``: a callback delivered 50 times, or by two requests at once, leaves one row, and the caller learns
whether it was the first. Keys name the fact, not the delivery (``status:{message}:{status}``,
``bounce:{message}``, ``inbound:{provider}:{sid}``), so the same bounce reported by a webhook and by a DSN
counts once.

A receipt moves a ledger row with one guarded UPDATE: only from a state ranked below the new one, and
never away from a final state, so receipts arriving late, twice or out of order change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.inbound import LEDGER_STATE_OF, is_final
from dispatcher.storage.base import insert_ignoring_duplicates
from dispatcher.storage.campaigns import IS_PAST_QUEUE, Event, Message
from dispatcher.storage.content import Provider
from dispatcher.storage.early_receipts import hold_receipt

# Ledger states a final receipt may leave: the provider has (or may have) the message and no outcome is known.
_AWAITING_OUTCOME = ("sending", "sent")


@dataclass(frozen=True, slots=True)
class MessageRow:
    """What an event needs of the message it is about."""

    id: int
    workspace_id: int
    campaign_id: int
    contact_id: int
    batch_id: int | None
    channel: str
    address: str
    provider_id: int | None
    state: str
    sent_at: datetime | None


_COLUMNS = (
    Message.id,
    Message.workspace_id,
    Message.campaign_id,
    Message.contact_id,
    Message.batch_id,
    Message.channel,
    Message.address,
    Message.provider_id,
    Message.state,
    Message.sent_at,
)


def _row(found: Any) -> MessageRow | None:
    return None if found is None else MessageRow(*found)


async def record_event(
    session: AsyncSession,
    *,
    workspace_id: int,
    kind: str,
    dedupe_key: str,
    occurred_at: datetime,
    message: MessageRow | None = None,
    value: Decimal | None = None,
    machine: bool = False,
    payload: dict[str, Any] | None = None,
) -> bool:
    """Insert the event unless its key is known; True when this call wrote it."""
    body = dict(payload or {})
    if message is not None:
        body.setdefault("batch_id", message.batch_id)
        body.setdefault("channel", message.channel)
        body.setdefault("provider_id", message.provider_id)
    statement = insert_ignoring_duplicates(session, Event, ["workspace_id", "dedupe_key"]).values(
        workspace_id=workspace_id,
        kind=kind,
        dedupe_key=dedupe_key[:200],
        message_id=message.id if message else None,
        campaign_id=message.campaign_id if message else None,
        contact_id=message.contact_id if message else None,
        value=value,
        machine=machine,
        payload=body,
        occurred_at=occurred_at,
        created_at=occurred_at,
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


async def event_by_key(session: AsyncSession, workspace_id: int, dedupe_key: str) -> Event | None:
    return await session.scalar(
        sa.select(Event).where(Event.workspace_id == workspace_id, Event.dedupe_key == dedupe_key[:200])
    )


async def advance_message(
    session: AsyncSession,
    condition: sa.ColumnElement[bool],
    *,
    status: str,
    error_code: str | None,
    occurred_at: datetime,
) -> MessageRow | None:
    """Move the one message matching ``condition`` to the final ``status``; None when it did not move.

    ``status`` is delivered / undelivered / failed. A single UPDATE … WHERE state IN (sending, sent) …
    RETURNING: two receipts racing for the same row cannot both win.
    """
    if not is_final(status):
        return None
    values: dict[str, Any] = {
        "state": LEDGER_STATE_OF[status],
        "finished_at": occurred_at,
        "updated_at": occurred_at,
    }
    if status == "delivered":
        values["delivered_at"] = occurred_at
    else:
        values["error_code"] = (error_code or status)[:64]
    found = await session.execute(
        sa.update(Message)
        .where(condition, Message.state.in_(_AWAITING_OUTCOME))
        .values(**values)
        .returning(*_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    return _row(found.first())


async def apply_receipt(
    session: AsyncSession,
    *,
    provider_id: int,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    occurred_at: datetime,
    suppress_reason: str | None = None,
) -> tuple[MessageRow | None, bool]:
    """A delivery receipt for a provider's message id: (the message, whether this receipt moved it).

    The receipt's event is recorded only when the ledger moved, so a message has at most one outcome event
    (``delivered``, ``undelivered`` or ``failed``), whatever arrives later. A final receipt that finds no
    row, or a row whose ``sent`` write committed just after the UPDATE looked, is held for the maintenance
    sweep (:mod:`dispatcher.storage.early_receipts`) with ``suppress_reason`` for its address.
    """
    condition = sa.and_(
        Message.provider_message_id == provider_message_id, Message.provider_id == provider_id
    )
    moved = await advance_message(
        session, condition, status=status, error_code=error_code, occurred_at=occurred_at
    )
    if moved is None:
        found = await message_by_provider_id(session, provider_id, provider_message_id)
        if is_final(status) and (found is None or found.state in _AWAITING_OUTCOME):
            await hold_receipt(
                session,
                provider_id=provider_id,
                provider_message_id=provider_message_id,
                status=status,
                error_code=error_code,
                occurred_at=occurred_at,
                suppress_reason=suppress_reason,
            )
        return found, False
    await record_event(
        session,
        workspace_id=moved.workspace_id,
        kind=status,
        dedupe_key=f"status:{moved.id}:{status}",
        occurred_at=occurred_at,
        message=moved,
        payload={"error_code": error_code} if error_code else None,
    )
    return moved, True


async def message_by_provider_id(
    session: AsyncSession, provider_id: int, provider_message_id: str
) -> MessageRow | None:
    found = await session.execute(
        sa.select(*_COLUMNS)
        .where(Message.provider_message_id == provider_message_id, Message.provider_id == provider_id)
        .limit(1)
    )
    return _row(found.first())


async def message_by_key(
    session: AsyncSession, workspace_id: int, campaign_id: int, message_id: int
) -> MessageRow | None:
    """The message named by ``dsp-{campaign}-{message}`` (an e-mail's Message-ID), in this workspace."""
    found = await session.execute(
        sa.select(*_COLUMNS).where(
            Message.id == message_id,
            Message.campaign_id == campaign_id,
            Message.workspace_id == workspace_id,
        )
    )
    return _row(found.first())


async def message_in_workspace(
    session: AsyncSession, workspace_id: int, message_id: int
) -> MessageRow | None:
    found = await session.execute(
        sa.select(*_COLUMNS).where(Message.id == message_id, Message.workspace_id == workspace_id)
    )
    return _row(found.first())


async def message_for_contact(
    session: AsyncSession, workspace_id: int, campaign_id: int, contact_id: int
) -> MessageRow | None:
    found = await session.execute(
        sa.select(*_COLUMNS).where(
            Message.workspace_id == workspace_id,
            Message.campaign_id == campaign_id,
            Message.contact_id == contact_id,
        )
    )
    return _row(found.first())


async def latest_message_to(
    session: AsyncSession, workspace_id: int, channel: str, address: str
) -> MessageRow | None:
    """The last message that went out to an address: a reply is attributed to it."""
    found = await session.execute(
        sa.select(*_COLUMNS)
        .where(
            Message.workspace_id == workspace_id,
            Message.channel == channel,
            Message.address == address,
            Message.sent_at.is_not(None),
            IS_PAST_QUEUE,  # always true once sent: names ix_messages_workspace_channel_address's rows
        )
        .order_by(Message.sent_at.desc(), Message.id.desc())
        .limit(1)
    )
    return _row(found.first())


async def provider_by_id(session: AsyncSession, provider_id: int) -> Provider | None:
    """Across workspaces on purpose: a public webhook is named by its provider, then signature-checked."""
    return await session.scalar(sa.select(Provider).where(Provider.id == provider_id))
