"""Campaigns, their batches, the per-recipient send ledger and inbound events.

The ledger (``messages``) is the source of truth for every message: one row per (campaign, contact), moved
only by guarded UPDATEs (``WHERE state = <expected>``), so a repeated or late job changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from dispatcher.storage.base import Base, BigId, Money, WorkspaceOwned, utcnow


class Campaign(WorkspaceOwned, Base):
    __tablename__ = "campaigns"

    name: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[str] = mapped_column(sa.String(16), default="draft")
    channel: Mapped[str] = mapped_column(sa.String(16))
    list_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contact_lists.id"))
    segment_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("segments.id"))
    provider_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("providers.id"))
    sender: Mapped[str | None] = mapped_column(sa.String(320))
    variants: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {"A": {"template_version_id", "weight"}}
    schedule: Mapped[dict[str, Any]] = mapped_column(default=dict)  # windows, allowed hours, start/end
    limits: Mapped[dict[str, Any]] = mapped_column(default=dict)  # caps, throughput, bounce threshold
    pilot_percent: Mapped[int | None]
    pilot_delay_minutes: Mapped[int | None]  # release the rest this long after the pilot's first send
    pilot_release_at: Mapped[datetime | None]
    budget: Mapped[Decimal | None] = mapped_column(Money)
    spent: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    duplicate_policy: Mapped[str] = mapped_column(sa.String(16), default="never")  # never | resend
    audience_max_id: Mapped[int | None] = mapped_column(BigId)  # frozen at start: later contacts stay out
    excluded: Mapped[int] = mapped_column(default=0)  # audience members with no usable address
    started_at: Mapped[datetime | None]
    # the instant recipients' zones are judged at (planning's start), so every later tick agrees with it
    zones_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(sa.String(64))  # None: paused by a person
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Batch(WorkspaceOwned, Base):
    """A slice of a campaign released together; its ``code`` tags every message for tracing."""

    __tablename__ = "batches"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "seq"),)

    campaign_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    seq: Mapped[int]
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default="main")  # pilot | main | resend
    state: Mapped[str] = mapped_column(sa.String(16), default="planned")  # held | released
    size: Mapped[int] = mapped_column(default=0)
    release_at: Mapped[datetime | None]


_LEASED_STATES = ("queued", "sending")
_WAITING_STATES = ("planned", "queued")


def _state_sql(states: tuple[str, ...], *, negate: bool = False) -> str:
    listed = ", ".join(f"'{state}'" for state in states)
    return f"state {'NOT IN' if negate else 'IN'} ({listed})"


LEASED = _state_sql(_LEASED_STATES)
NOT_LEASED = _state_sql(_LEASED_STATES, negate=True)
PAST_QUEUE = _state_sql(_WAITING_STATES, negate=True)
HAS_PROVIDER_ID = "provider_message_id IS NOT NULL"


class Message(WorkspaceOwned, Base):
    """The send ledger.

    planned → queued → sending → sent → delivered | failed | expired | suppressed | capped.
    """

    __tablename__ = "messages"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "contact_id"),
        # The ledger's indexes are paid on every state change of every message (three per send): each
        # keeps only the rows its readers look for (migrations 0011, 0016). A reader names the predicate
        # in the same words (the expressions below this class): SQLite uses a partial index only then.
        # Counts per state: leased rows are counted through ix_messages_state_lease instead.
        sa.Index(
            "ix_messages_campaign_state",
            "campaign_id",
            "state",
            postgresql_where=sa.text(NOT_LEASED),
            sqlite_where=sa.text(NOT_LEASED),
        ),
        # The sweeper reads leased rows only.
        sa.Index(
            "ix_messages_state_lease",
            "state",
            "lease_until",
            postgresql_where=sa.text(LEASED),
            sqlite_where=sa.text(LEASED),
        ),
        # receipts look a message up by the id its provider gave, which it has only once sent
        sa.Index(
            "ix_messages_provider_msgid",
            "provider_message_id",
            postgresql_where=sa.text(HAS_PROVIDER_ID),
            sqlite_where=sa.text(HAS_PROVIDER_ID),
        ),
        # send-time cap history and reply attribution go by address (bench/dispatch.py: 24 ms → 1.3 ms);
        # both want only rows that reached the send step
        sa.Index(
            "ix_messages_workspace_channel_address",
            "workspace_id",
            "channel",
            "address",
            postgresql_where=sa.text(PAST_QUEUE),
            sqlite_where=sa.text(PAST_QUEUE),
        ),
        # claims read a campaign's due rows in order and stop at their limit (migration 0010)
        sa.Index(
            "ix_messages_due",
            "campaign_id",
            "not_before",
            "id",
            postgresql_where=sa.text("state = 'planned'"),
            sqlite_where=sa.text("state = 'planned'"),
        ),
    )

    # not indexed alone (unlike other workspace-owned tables): ix_messages_workspace_channel_address leads
    # with it
    workspace_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    # not indexed: a batch's rows are read through their campaign (batches are never deleted on their own)
    batch_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("batches.id"))
    contact_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("contacts.id"))
    variant: Mapped[str] = mapped_column(sa.String(8), default="A")
    channel: Mapped[str] = mapped_column(sa.String(16))
    address: Mapped[str] = mapped_column(sa.String(320))
    # the recipient's IANA zone when planned (contact field, else the number's first zone; None: UTC):
    # local-time reports group by it without joining a million contacts
    zone: Mapped[str | None] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16), default="planned")
    attempts: Mapped[int] = mapped_column(default=0)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(64))
    not_before: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(sa.String(100))
    provider_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("providers.id"))
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(100))
    segments: Mapped[int | None]
    cost: Mapped[Decimal | None] = mapped_column(Money)
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error_detail: Mapped[str | None] = mapped_column(sa.Text)
    possible_duplicate: Mapped[bool] = mapped_column(default=False)
    # the last attempt may have reached provider_id (timeout, killed worker): routing pins the retry there
    ambiguous: Mapped[bool] = mapped_column(default=False, server_default=sa.false())  # bulk INSERTs omit it
    queued_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def _state_term(states: tuple[str, ...], *, negate: bool = False) -> sa.ColumnElement[bool]:
    """The predicate of a partial index as a query term: values inline, as the index spells them."""
    values: list[sa.ColumnElement[str]] = [sa.literal_column(f"'{state}'") for state in states]
    return Message.state.not_in(values) if negate else Message.state.in_(values)


def still_in(*states: str, column: Any = Message.state) -> Any:
    """``state IN <states>`` for rows already found by id, in a form no index on ``state`` can serve.

    Statistics taken before a campaign ran say no row is ``queued`` or ``sending``; the planner then reads
    a chunk's 1,000 rows through the state index, visiting every leased row of every running chunk
    (20,000 per statement in bench/dispatch.py: twice the time of the update itself) instead of looking
    the ids up in the primary key."""
    found = sa.func.coalesce(column, "")
    return found == states[0] if len(states) == 1 else found.in_(states)


#: Query terms matching the partial indexes' predicates, for readers that want those indexes.
IS_LEASED = _state_term(_LEASED_STATES)
IS_NOT_LEASED = _state_term(_LEASED_STATES, negate=True)
IS_PAST_QUEUE = _state_term(_WAITING_STATES, negate=True)


class Event(WorkspaceOwned, Base):
    """Receipts, replies, clicks, opens, conversions. ``dedupe_key`` makes every callback count once."""

    __tablename__ = "events"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "dedupe_key"),
        # unique-contact counts per campaign and kind (response, opt-out, conversion rates)
        sa.Index("ix_events_campaign_kind_contact", "campaign_id", "kind", "contact_id"),
        # a campaign report's engagement per message, read from the index alone (migration 0012)
        sa.Index(
            "ix_events_campaign_kind_message",
            "campaign_id",
            "kind",
            "message_id",
            postgresql_include=["machine", "value", "workspace_id"],
        ),
        # engagement segments: who clicked or replied in the last N days
        sa.Index(
            "ix_events_workspace_contact_kind_time", "workspace_id", "contact_id", "kind", "occurred_at"
        ),
    )

    kind: Mapped[str] = mapped_column(sa.String(24))
    dedupe_key: Mapped[str] = mapped_column(sa.String(200))
    message_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("messages.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(BigId)
    value: Mapped[Decimal | None] = mapped_column(Money)
    machine: Mapped[bool] = mapped_column(default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
