"""Delivery receipts that arrive before the ledger knows the provider's message id, kept until it does.

A provider may answer the send call, fire the status callback (or the SMSC its deliver_sm receipt) at once,
and the callback can be handled before the worker's ``sent`` write commits. Such a receipt finds no ledger
row, so it waits here, one row per (provider, provider message id) however often it is delivered: the
first final status is kept, like the first one to reach the ledger would win.

:func:`apply_held` runs from the maintenance sweep: it joins waiting receipts to ledger rows that now carry
their id, moves those rows with one guarded UPDATE (only from ``sending``/``sent``, so a receipt applied
live meanwhile, or a duplicate, changes nothing), writes each outcome event with the same dedupe key the
live path uses (``status:{message}:{status}``), and forgets every receipt it matched. Receipts whose id
never shows up are dropped after a week (:func:`purge_held`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from dispatcher.core.inbound import LEDGER_STATE_OF
from dispatcher.storage.base import Base, BigId, UTCDateTime, WorkspaceOwned, insert_ignoring_duplicates
from dispatcher.storage.campaigns import Event, Message
from dispatcher.storage.content import Provider

__all__ = ["AppliedReceipt", "EarlyReceipt", "apply_held", "hold_receipt", "purge_held"]

_AWAITING_OUTCOME = ("sending", "sent")


class EarlyReceipt(WorkspaceOwned, Base):
    """A final receipt whose provider message id no ledger row had yet; ``created_at`` is the receipt's own
    time (the arrival of a webhook, the SMSC's done date of an SMPP receipt), which the week's wait counts
    from."""

    __tablename__ = "early_receipts"
    __table_args__ = (
        sa.UniqueConstraint("provider_id", "provider_message_id"),
        sa.Index("ix_early_receipts_created_at", "created_at"),
    )

    provider_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("providers.id", ondelete="CASCADE"))
    provider_message_id: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(16))  # delivered | undelivered | failed
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    # decided at the edge that knows the provider's error codes; applied with the receipt
    suppress_reason: Mapped[str | None] = mapped_column(sa.String(32))
    occurred_at: Mapped[datetime]


@dataclass(frozen=True, slots=True)
class AppliedReceipt:
    """A ledger row a held receipt moved, with what the caller may still have to do about it."""

    message_id: int
    workspace_id: int
    channel: str
    address: str
    status: str
    suppress_reason: str | None


async def hold_receipt(
    session: AsyncSession,
    *,
    provider_id: int,
    provider_message_id: str,
    status: str,
    error_code: str | None,
    occurred_at: datetime,
    suppress_reason: str | None = None,
) -> bool:
    """Keep a final receipt for later; True when this call stored it (False: one was already waiting)."""
    values = sa.select(
        Provider.workspace_id,
        sa.literal(occurred_at, UTCDateTime()).label("created_at"),
        sa.literal(provider_id, sa.BigInteger()).label("provider_id"),
        sa.literal(provider_message_id[:100]).label("provider_message_id"),
        sa.literal(status).label("status"),
        sa.literal(error_code[:64] if error_code else None, sa.String()).label("error_code"),
        sa.literal(suppress_reason, sa.String()).label("suppress_reason"),
        sa.literal(occurred_at, UTCDateTime()).label("occurred_at"),
    ).where(Provider.id == provider_id)  # the provider names the workspace: one statement, no lookup first
    statement = insert_ignoring_duplicates(
        session, EarlyReceipt, ["provider_id", "provider_message_id"]
    ).from_select(list(values.selected_columns.keys()), values)
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


async def apply_held(session: AsyncSession, *, now: datetime, limit: int = 5_000) -> list[AppliedReceipt]:
    """Apply waiting receipts whose message id has reached the ledger; returns the rows that moved."""
    matched = (
        await session.execute(
            sa.select(EarlyReceipt.id, Message.id.label("message_id"), *_HELD)
            .join(Message, _same_message())
            .order_by(EarlyReceipt.id)
            .limit(limit)
        )
    ).all()
    if not matched:
        return []
    held_of = {int(row.message_id): _Held(row.status, row.error_code, row.suppress_reason) for row in matched}
    moved = (await session.execute(_advance(sorted(held_of), now))).all()
    await _record_outcomes(session, moved, held_of)
    await session.execute(sa.delete(EarlyReceipt).where(EarlyReceipt.id.in_([row.id for row in matched])))
    return [
        AppliedReceipt(row.id, row.workspace_id, row.channel, row.address, *_outcome(held_of[int(row.id)]))
        for row in moved
    ]


@dataclass(frozen=True, slots=True)
class _Held:
    status: str
    error_code: str | None
    suppress_reason: str | None


_HELD = (EarlyReceipt.status, EarlyReceipt.error_code, EarlyReceipt.suppress_reason)


def _outcome(held: _Held) -> tuple[str, str | None]:
    return held.status, held.suppress_reason


async def purge_held(session: AsyncSession, *, older_than: datetime) -> int:
    """Forget receipts whose message id never reached the ledger."""
    result = await session.execute(sa.delete(EarlyReceipt).where(EarlyReceipt.created_at < older_than))
    return int(getattr(result, "rowcount", 0) or 0)


def _same_message() -> Any:
    return sa.and_(
        Message.provider_message_id.is_not(None),  # lets the planner use the partial index (0011)
        Message.provider_message_id == EarlyReceipt.provider_message_id,
        Message.provider_id == EarlyReceipt.provider_id,
    )


def _held(column: Any) -> Any:
    """``column`` of the receipt waiting for the ledger row being updated (unique per provider id)."""
    return sa.select(column).where(_same_message()).scalar_subquery()


def _advance(message_ids: Sequence[int], now: datetime) -> Any:
    """One guarded UPDATE moving every matched row still awaiting an outcome, each by its own receipt.

    The receipt may predate ``sent_at`` (it beat the ledger write by a few milliseconds): the outcome is
    stamped no earlier than the send, so times to delivery never come out negative.
    """
    status, occurred = _held(EarlyReceipt.status), _held(EarlyReceipt.occurred_at)
    delivered = status == "delivered"
    at = sa.case((Message.sent_at > occurred, Message.sent_at), else_=occurred)
    state = sa.case(*((status == word, state) for word, state in LEDGER_STATE_OF.items()))
    error = sa.func.substr(sa.func.coalesce(_held(EarlyReceipt.error_code), status), 1, 64)
    return (
        sa.update(Message)
        .where(Message.id.in_(message_ids), Message.state.in_(_AWAITING_OUTCOME))
        .values(
            state=state,
            finished_at=at,
            delivered_at=sa.case((delivered, at), else_=Message.delivered_at),
            error_code=sa.case((delivered, Message.error_code), else_=error),
            updated_at=now,
        )
        .returning(
            Message.id,
            Message.workspace_id,
            Message.campaign_id,
            Message.contact_id,
            Message.batch_id,
            Message.channel,
            Message.address,
            Message.provider_id,
            Message.finished_at,
        )
        .execution_options(synchronize_session=False)
    )


async def _record_outcomes(session: AsyncSession, moved: Sequence[Any], held_of: dict[int, _Held]) -> None:
    """The outcome events of the moved rows, in one statement; keys as the live path writes them."""
    if not moved:
        return
    rows = []
    for row in moved:
        held = held_of[int(row.id)]
        status = held.status
        payload: dict[str, Any] = {
            "batch_id": row.batch_id,
            "channel": row.channel,
            "provider_id": row.provider_id,
        }
        if held.error_code:
            payload["error_code"] = held.error_code
        rows.append(
            {
                "workspace_id": row.workspace_id,
                "kind": status,
                "dedupe_key": f"status:{row.id}:{status}",
                "message_id": row.id,
                "campaign_id": row.campaign_id,
                "contact_id": row.contact_id,
                "value": None,
                "machine": False,
                "payload": payload,
                "occurred_at": row.finished_at,
                "created_at": row.finished_at,
            }
        )
    await session.execute(insert_ignoring_duplicates(session, Event, ["workspace_id", "dedupe_key"]), rows)
