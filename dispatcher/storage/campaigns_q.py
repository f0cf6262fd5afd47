"""Campaign and batch queries: CRUD, guarded state moves, batch release, live progress.

State changes are guarded UPDATEs (``WHERE state = <what the caller saw>``): of two concurrent requests
one wins and the other finds nothing to move. Queries a marketer reaches filter on the workspace; the few
that run for the planner or a cron (no workspace at hand) say so.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.errors import ConflictError
from dispatcher.storage.base import by_index_on_postgresql, insert_ignoring_duplicates
from dispatcher.storage.campaigns import IS_LEASED, IS_NOT_LEASED, Batch, Campaign, Message
from dispatcher.storage.contacts import Contact

# Rows the dispatcher has not touched yet: cancelling takes them back; 'sending' ones are its to finish.
CANCELLABLE_ROWS = ("planned", "queued")


def new_batch_code() -> str:
    """Short, unique, case-insensitive tracking code (13 characters of base32)."""
    return base64.b32encode(secrets.token_bytes(8)).decode().rstrip("=")


async def add_campaign(session: AsyncSession, *, workspace_id: int, now: datetime, **values: Any) -> Campaign:
    row = Campaign(workspace_id=workspace_id, created_at=now, updated_at=now, **values)
    session.add(row)
    await session.flush()
    return row


async def get_campaign(session: AsyncSession, workspace_id: int, campaign_id: int) -> Campaign | None:
    return await session.scalar(
        sa.select(Campaign).where(Campaign.workspace_id == workspace_id, Campaign.id == campaign_id)
    )


async def load_campaign(session: AsyncSession, campaign_id: int) -> Campaign | None:
    """By id alone: for jobs, which carry only the id (the row names its workspace)."""
    return await session.get(Campaign, campaign_id, populate_existing=True)


async def page_campaigns(
    session: AsyncSession, workspace_id: int, *, after: int, limit: int, state: str | None
) -> list[Campaign]:
    query = sa.select(Campaign).where(Campaign.workspace_id == workspace_id, Campaign.id > after)
    if state is not None:
        query = query.where(Campaign.state == state)
    return list(await session.scalars(query.order_by(Campaign.id).limit(limit)))


async def move(
    session: AsyncSession, campaign: Campaign, target: str, *, now: datetime, **values: Any
) -> None:
    """Guarded move from the state the caller read; ConflictError when another request moved it first."""
    result = await session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign.id, Campaign.state == campaign.state)
        .values(state=target, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise ConflictError(
            f"campaign {campaign.id} was changed by another request meanwhile; fetch it again"
        )
    await session.refresh(campaign)


async def move_if(
    session: AsyncSession, campaign_id: int, source: str, target: str, *, now: datetime
) -> bool:
    """The planner's and dispatcher's form: no error, just whether this call made the move."""
    result = await session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.state == source)
        .values(state=target, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


async def set_fields(session: AsyncSession, campaign_id: int, **values: Any) -> None:
    await session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def ensure_batches(
    session: AsyncSession, campaign: Campaign, specs: Sequence[Mapping[str, Any]], *, now: datetime
) -> dict[int, int]:
    """Create the batches (seq, kind, state, release_at) unless they exist; returns seq → batch id."""
    if specs:
        rows = [
            {"workspace_id": campaign.workspace_id, "campaign_id": campaign.id, "code": new_batch_code(),
             "size": 0, "created_at": now, **spec}
            for spec in specs
        ]  # fmt: skip
        insert = insert_ignoring_duplicates(session, Batch, ["campaign_id", "seq"])
        await session.execute(insert, rows)
    found = await session.execute(
        sa.select(Batch.seq, Batch.id).where(Batch.campaign_id == campaign.id).order_by(Batch.seq)
    )
    return {int(seq): int(bid) for seq, bid in found}


async def batches_of(session: AsyncSession, campaign_id: int) -> list[Batch]:
    rows = await session.scalars(
        sa.select(Batch)
        .where(Batch.campaign_id == campaign_id)
        .order_by(Batch.seq)
        .execution_options(populate_existing=True)  # sizes and states move by bulk UPDATEs
    )
    return list(rows)


async def add_batch(
    session: AsyncSession, campaign: Campaign, *, kind: str, state: str, now: datetime
) -> Batch:
    seq = await session.scalar(
        sa.select(sa.func.coalesce(sa.func.max(Batch.seq), 0)).where(Batch.campaign_id == campaign.id)
    )
    row = Batch(
        workspace_id=campaign.workspace_id, campaign_id=campaign.id, seq=int(seq or 0) + 1,
        code=new_batch_code(), kind=kind, state=state, size=0, release_at=now, created_at=now,
    )  # fmt: skip
    session.add(row)
    await session.flush()
    return row


async def count_batch_sizes(session: AsyncSession, campaign_id: int) -> None:
    """One pass over the campaign's rows (by its unique index): ``messages.batch_id`` has no index."""
    counted = await session.execute(
        sa.select(Message.batch_id, sa.func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.batch_id)
    )
    sizes = {batch_id: int(n) for batch_id, n in counted}
    batch_ids = (await session.scalars(sa.select(Batch.id).where(Batch.campaign_id == campaign_id))).all()
    for batch_id in batch_ids:
        await session.execute(
            sa.update(Batch)
            .where(Batch.id == batch_id)
            .values(size=sizes.get(batch_id, 0))
            .execution_options(synchronize_session=False)
        )


async def release_held(session: AsyncSession, campaign_id: int, *, now: datetime) -> int:
    result = await session.execute(
        sa.update(Batch)
        .where(Batch.campaign_id == campaign_id, Batch.state == "held")
        .values(state="released", release_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


async def release_due_batches(session: AsyncSession, *, now: datetime) -> int:
    """Every workspace: held batches whose release time has come (the pilot's automatic release)."""
    result = await session.execute(
        sa.update(Batch)
        .where(Batch.state == "held", Batch.release_at.is_not(None), Batch.release_at <= now)
        .values(state="released")
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


async def schedule_release(session: AsyncSession, campaign_id: int, at: datetime) -> None:
    await session.execute(
        sa.update(Batch)
        .where(Batch.campaign_id == campaign_id, Batch.state == "held")
        .values(release_at=at)
        .execution_options(synchronize_session=False)
    )


async def cancel_rows(session: AsyncSession, campaign_id: int, *, now: datetime) -> int:
    result = await session.execute(
        sa.update(Message)
        .where(Message.campaign_id == campaign_id, Message.state.in_(CANCELLABLE_ROWS))
        .values(state="cancelled", finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


async def state_counts(session: AsyncSession, campaign_id: int, *, now: datetime) -> dict[str, int]:
    """Ledger rows per state, plus ``deferred``: planned rows whose first send instant is still ahead.

    In two parts, each read through the partial index that holds it: ix_messages_campaign_state leaves
    out the leased rows, which ix_messages_state_lease holds."""
    per_state = [
        sa.select(Message.state, sa.func.count())
        .where(Message.campaign_id == campaign_id, rows)
        .group_by(Message.state)
        for rows in (IS_NOT_LEASED, IS_LEASED)
    ]
    counts = {str(state): int(n) for state, n in await session.execute(sa.union_all(*per_state))}
    deferred = await session.scalar(
        sa.select(sa.func.count())
        .select_from(Message)
        .where(Message.campaign_id == campaign_id, Message.state == "planned", Message.not_before > now)
    )
    counts["deferred"] = int(deferred or 0)
    return counts


async def first_pilot_send(session: AsyncSession, campaign_id: int) -> datetime | None:
    found: datetime | None = await session.scalar(
        sa.select(sa.func.min(Message.not_before))
        .join(Batch, Batch.id == Message.batch_id)
        .where(Message.campaign_id == campaign_id, Message.state == "planned", Batch.kind == "pilot")
    )
    return found  # MIN() keeps the column type, so SQLite hands back an aware UTC datetime too


async def max_contact_id(session: AsyncSession, workspace_id: int, list_id: int) -> int:
    found = await session.scalar(
        sa.select(sa.func.max(Contact.id)).where(
            Contact.workspace_id == workspace_id, Contact.list_id == list_id
        )
    )
    return int(found or 0)


async def scheduled_before(session: AsyncSession, started_before: datetime, limit: int = 100) -> list[int]:
    """Every workspace: campaigns still planning that started before ``started_before`` (sweeper)."""
    rows = await session.scalars(
        sa.select(Campaign.id)
        .where(Campaign.state == "scheduled", Campaign.started_at < started_before)
        .order_by(Campaign.id)
        .limit(limit)
    )
    return [int(i) for i in rows]


async def running_campaigns(session: AsyncSession, *, limit: int = 100) -> list[Campaign]:
    rows = await session.scalars(
        sa.select(Campaign).where(Campaign.state == "running").order_by(Campaign.id).limit(limit)
    )
    return list(rows)


async def complete_if_done(session: AsyncSession, campaign_id: int, *, now: datetime) -> bool:
    """A running campaign with nothing left in flight is completed; never while anything is pending."""
    # one test per index that holds such rows: planned ones (ix_messages_due), leased ones
    # (ix_messages_state_lease); no single index holds both. Without the indexes the test read past every
    # row sent so far: 18 ms a tick in bench/dispatch.py
    await by_index_on_postgresql(session)
    of_campaign = Message.campaign_id == campaign_id
    pending = sa.or_(
        sa.exists().where(of_campaign, Message.state == "planned"),
        sa.exists().where(of_campaign, IS_LEASED),
    )
    held = sa.exists().where(Batch.campaign_id == campaign_id, Batch.state == "held")
    result = await session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.state == "running", ~pending, ~held)
        .values(state="completed", finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def add_spent(session: AsyncSession, campaign_id: int, amount: Decimal, *, now: datetime) -> None:
    if amount:
        await session.execute(
            sa.update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(spent=Campaign.spent + amount, updated_at=now)
            .execution_options(synchronize_session=False)
        )
