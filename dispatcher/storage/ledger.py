"""The send ledger's state changes: every one a guarded, batched UPDATE.

A row moves ``planned → queued`` (claimed, leased to one send job) ``→ sending`` (written before the provider
is called, with the attempt's idempotency key) ``→ sent`` (after the provider answered), or back to
``planned`` for a retry, or to a final state. Each UPDATE names the state (and lease owner) it expects, so a
late, duplicated or superseded job changes nothing. The sweeper hands back leases that expired.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.capping import contact_key, send_key
from dispatcher.storage.base import insert_ignoring_duplicates
from dispatcher.storage.campaigns import IS_LEASED, IS_PAST_QUEUE, Batch, Campaign, Message
from dispatcher.storage.contacts import Contact, Suppression

# Core table for executemany UPDATEs (the ORM would turn a parameter list into a bulk-by-primary-key update)
_T = cast(sa.Table, Message.__table__)
# PostgreSQL writes a whole chunk's results in one statement: one array per column, unnested and joined on id
_MARK_SENT_PG = sa.text(
    """
    UPDATE messages AS m SET state = 'sent', provider_id = :provider_id, provider_message_id = v.pmid,
        segments = v.segs, cost = v.cost, possible_duplicate = m.possible_duplicate OR v.dup, sent_at = :now,
        lease_owner = NULL, lease_until = NULL, error_code = NULL, error_detail = NULL, updated_at = :now
    FROM unnest(CAST(:ids AS BIGINT[]), CAST(:pmids AS VARCHAR[]), CAST(:segs AS INTEGER[]),
                CAST(:costs AS NUMERIC[]), CAST(:dups AS BOOLEAN[])) AS v(id, pmid, segs, cost, dup)
    WHERE m.id = v.id AND coalesce(m.state, '') = 'sending' AND m.lease_owner = :owner
    """
)


def _still(*states: str, column: Any = Message.state) -> Any:
    """``state IN <states>`` for rows already found by id, in a form no index on ``state`` can serve.

    Statistics taken before a campaign ran say no row is ``queued`` or ``sending``; the planner then reads
    a chunk's 1,000 rows through the state index, visiting every leased row of every running chunk
    (20,000 per statement in bench/dispatch.py: twice the time of the update itself) instead of looking
    the ids up in the primary key."""
    found = sa.func.coalesce(column, "")
    return found == states[0] if len(states) == 1 else found.in_(states)


def _is_pg(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _among(session: AsyncSession, column: Any, values: Sequence[Any], item: Any) -> Any:
    """``column IN values``: one array parameter on PostgreSQL (no per-value placeholders to compile and
    send), an expanding IN elsewhere."""
    if _is_pg(session):
        return column == sa.any_(sa.literal(list(values), postgresql.ARRAY(item)))
    return column.in_(values)


@dataclass(frozen=True, slots=True)
class Due:
    """A ledger row loaded for sending, with what rendering needs of its contact."""

    id: int
    contact_id: int
    variant: str
    address: str
    attempts: int
    idempotency_key: str | None
    contact: dict[str, Any]
    time_zones: list[str]
    timezone: str | None
    provider_id: int | None = None  # the provider of the last attempt
    ambiguous: bool = False  # that attempt may have reached it


@dataclass(frozen=True, slots=True)
class Sent:
    id: int
    provider_message_id: str | None
    segments: int | None
    cost: Decimal | None
    possible_duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    id: int
    not_before: datetime
    error_code: str | None
    error_detail: str | None
    possible_duplicate: bool = False
    ambiguous: bool = False  # this attempt may have reached the provider: pin the retry to it
    counted: bool = True  # False: the attempt says nothing about the message (throttled, unreachable)


@dataclass(frozen=True, slots=True)
class Final:
    id: int
    state: str  # failed | capped | suppressed | expired
    error_code: str | None = None
    error_detail: str | None = None


def idempotency_key(campaign_id: int, message_id: int) -> str:
    """The same for every attempt of a message, so a provider that deduplicates drops a resend."""
    return f"dsp-{campaign_id}-{message_id}"


async def claim_due(
    session: AsyncSession, *, campaign_id: int, now: datetime, limit: int, owner: str, lease_until: datetime
) -> list[int]:
    """Lease up to ``limit`` due rows of released batches to ``owner``, earliest ``not_before`` first;
    concurrent claimers skip each other.

    Dated rows and undated ones (due at once) are claimed by two statements rather than one ``OR``: each is
    then a range of ``ix_messages_due`` read in order and stopped at the limit, where the ``OR`` sorted
    every planned row of the campaign on every claim."""
    ids = await _claim(session, campaign_id, Message.not_before <= now, limit, owner, now, lease_until)
    if len(ids) < limit:
        undated = Message.not_before.is_(None)
        ids += await _claim(session, campaign_id, undated, limit - len(ids), owner, now, lease_until)
    return sorted(ids)


async def _claim(
    session: AsyncSession,
    campaign_id: int,
    due_now: Any,
    limit: int,
    owner: str,
    now: datetime,
    lease_until: datetime,
) -> list[int]:
    released = sa.select(Batch.id).where(Batch.campaign_id == campaign_id, Batch.state == "released")
    due = (
        sa.select(Message.id)
        .where(
            Message.campaign_id == campaign_id,
            Message.state == "planned",
            due_now,
            Message.batch_id.in_(released),
        )
        .order_by(Message.not_before, Message.id)
        .limit(limit)
    )
    chosen: Any = Message.id.in_(due.scalar_subquery())
    if _is_pg(session):
        # ARRAY(subquery) runs once and the UPDATE finds its rows by primary key; a plain IN was hashed
        # against a scan of every planned row
        chosen = Message.id == sa.any_(sa.func.array(due.with_for_update(skip_locked=True).scalar_subquery()))
    result = await session.execute(
        sa.update(Message)
        .where(chosen, _still("planned"))
        .values(state="queued", lease_owner=owner, lease_until=lease_until, queued_at=now, updated_at=now)
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    )
    return [int(row[0]) for row in result]


async def load_leased(session: AsyncSession, ids: Sequence[int], owner: str) -> list[Due]:
    rows = await session.execute(
        sa.select(
            Message.id,
            Message.contact_id,
            Message.variant,
            Message.address,
            Message.attempts,
            Message.idempotency_key,
            Contact.first_name,
            Contact.last_name,
            Contact.email,
            Contact.phone,
            Contact.timezone,
            Contact.attributes,
            Contact.time_zones,
            Message.provider_id,
            Message.ambiguous,
        )
        .join(Contact, Contact.id == Message.contact_id)
        .where(
            _among(session, Message.id, ids, sa.BigInteger),
            _still("queued"),
            Message.lease_owner == owner,
        )
        .order_by(Message.id)
    )
    return [_due(row) for row in rows]


def _due(row: Any) -> Due:
    # unpacked by position: one tuple walk instead of fifteen attribute lookups per row of a chunk
    (mid, contact_id, variant, address, attempts, key, first, last, email, phone, zone, attrs, zones,
     provider_id, ambiguous) = row  # fmt: skip
    contact = {
        "first_name": first,
        "last_name": last,
        "email": email,
        "phone": phone,
        "timezone": zone,
        "attributes": attrs or {},
    }
    return Due(
        id=mid,
        contact_id=contact_id,
        variant=variant,
        address=address,
        attempts=attempts,
        idempotency_key=key,
        contact=contact,
        time_zones=list(zones or []),
        timezone=zone,
        provider_id=provider_id,
        ambiguous=bool(ambiguous),
    )


async def mark_sending(
    session: AsyncSession,
    *,
    campaign_id: int,
    ids: Sequence[int],
    owner: str,
    now: datetime,
    lease_until: datetime,
    provider_id: int | None = None,
    possible_duplicate: bool = False,
) -> list[int]:
    """The write before the provider call. Only rows still leased to ``owner`` move; those are sent.

    ``provider_id`` is recorded now, not after the answer: should this attempt end in doubt, the retry
    knows which provider may already have the message."""
    key = sa.literal(f"dsp-{campaign_id}-") + sa.cast(Message.id, sa.String)
    result = await session.execute(
        sa.update(Message)
        .where(
            _among(session, Message.id, ids, sa.BigInteger),
            _still("queued"),
            Message.lease_owner == owner,
        )
        .values(
            state="sending",
            attempts=Message.attempts + 1,
            idempotency_key=sa.func.coalesce(Message.idempotency_key, key),
            lease_until=lease_until,
            updated_at=now,
            ambiguous=False,
            possible_duplicate=Message.possible_duplicate | sa.literal(possible_duplicate),
            **({"provider_id": provider_id} if provider_id is not None else {}),
        )
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(int(row[0]) for row in result)


async def mark_sent(
    session: AsyncSession, rows: Sequence[Sent], *, owner: str, provider_id: int, now: datetime
) -> None:
    if not rows:
        return
    if _is_pg(session):
        # The rows are found by id through the primary key, whatever the statistics say: taken before the
        # campaign ran, they make "leased to this owner" look like one row, and the planner then scanned
        # the whole table once per chunk and compared each match with every id of the chunk (2 s a chunk)
        await session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        await session.execute(
            _MARK_SENT_PG,
            {
                "ids": [r.id for r in rows],
                "pmids": [r.provider_message_id for r in rows],
                "segs": [r.segments for r in rows],
                "costs": [r.cost for r in rows],
                "dups": [r.possible_duplicate for r in rows],
                "provider_id": provider_id,
                "owner": owner,
                "now": now,
            },
        )
        return
    await _update_leased(
        session,
        rows=[
            {
                "mid": r.id,
                "pmid": r.provider_message_id,
                "segs": r.segments,
                "cost": r.cost,
                "dup": r.possible_duplicate,
            }
            for r in rows
        ],
        owner=owner,
        from_state="sending",
        now=now,
        state="sent",
        provider_id=provider_id,
        provider_message_id=sa.bindparam("pmid"),
        segments=sa.bindparam("segs"),
        cost=sa.bindparam("cost"),
        possible_duplicate=_T.c.possible_duplicate | sa.bindparam("dup", type_=sa.Boolean),
        sent_at=now,
        error_code=None,
        error_detail=None,
    )


async def retry_later(
    session: AsyncSession, rows: Sequence[Retry], *, owner: str, from_state: str, now: datetime
) -> None:
    """Back to planned for another attempt (transient failure, throttling, window closed, paused)."""
    await _update_leased(
        session,
        rows=[
            {
                "mid": r.id,
                "nb": r.not_before,
                "code": r.error_code,
                "detail": r.error_detail,
                "dup": r.possible_duplicate,
                "amb": r.ambiguous,
                "refund": 0 if r.counted else 1,
            }
            for r in rows
        ],
        owner=owner,
        from_state=from_state,
        now=now,
        state="planned",
        ambiguous=_T.c.ambiguous | sa.bindparam("amb", type_=sa.Boolean),
        attempts=_T.c.attempts - sa.bindparam("refund", type_=sa.Integer),
        not_before=sa.bindparam("nb"),
        error_code=sa.bindparam("code"),
        error_detail=sa.bindparam("detail"),
        possible_duplicate=_T.c.possible_duplicate | sa.bindparam("dup", type_=sa.Boolean),
    )


async def finish(
    session: AsyncSession, rows: Sequence[Final], *, owner: str, from_state: str, now: datetime
) -> None:
    await _update_leased(
        session,
        rows=[{"mid": r.id, "st": r.state, "code": r.error_code, "detail": r.error_detail} for r in rows],
        owner=owner,
        from_state=from_state,
        now=now,
        state=sa.bindparam("st"),
        error_code=sa.bindparam("code"),
        error_detail=sa.bindparam("detail"),
        finished_at=now,
    )


async def _update_leased(
    session: AsyncSession,
    *,
    rows: list[dict[str, Any]],
    owner: str,
    from_state: str,
    now: datetime,
    **values: Any,
) -> None:
    """One executemany UPDATE of rows (``mid`` = id) still in ``from_state`` and leased to ``owner``; the
    lease is released with it. A row that moved on (sweeper, newer job) does not match and stays as it is."""
    if not rows:
        return
    await session.execute(
        sa.update(_T)
        .where(
            _T.c.id == sa.bindparam("mid"), _still(from_state, column=_T.c.state), _T.c.lease_owner == owner
        )
        .values(lease_owner=None, lease_until=None, updated_at=now, **values),
        rows,
    )


SWEEP_BATCH = 5_000  # rows per statement; a sweep repeats it until less is left


def _lapsed(session: AsyncSession, state: str, now: datetime) -> Any:
    """Up to :data:`SWEEP_BATCH` rows of ``state`` whose lease ran out, skipping any a worker holds locked
    right now: the sweeper never waits on (or deadlocks with) a job still writing its own rows; it takes
    them next round."""
    lapsed = (
        sa.select(Message.id)
        .where(Message.state == state, Message.lease_until < now)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    if _is_pg(session):
        # ARRAY(subquery) runs once and the UPDATE finds its rows by primary key. As IN (subquery), with
        # statistics from before the campaign ran (no row "sending"), the planner made it a nested loop
        # re-running the locking subquery for every lapsed row: after 5 SIGKILLs 37,000 rows never came
        # back (bench/faults.py)
        return Message.id == sa.any_(sa.func.array(lapsed))
    return Message.id.in_(lapsed)


async def extend_leases(session: AsyncSession, ids: Sequence[int], *, owner: str, until: datetime) -> int:
    """A job still working on its rows keeps them: without this a chunk slower than its lease is handed
    back by the sweeper and sent again while the first attempt is still in flight."""
    result = await session.execute(
        sa.update(Message)
        .where(
            Message.id.in_(ids),
            Message.lease_owner == owner,
            _still("queued", "sending"),
        )
        .values(lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def release_expired_leases(
    session: AsyncSession, *, now: datetime, resend_unacknowledged: bool
) -> tuple[int, int]:
    """The sweeper. ``queued`` rows whose job vanished were never sent: back to planned. ``sending`` rows
    whose worker died may have reached the provider: back to planned keeping their idempotency key (a
    deduplicating provider drops the resend), flagged as a possible duplicate when it cannot."""
    back = {"state": "planned", "lease_owner": None, "lease_until": None, "updated_at": now}
    queued = await _release(session, "queued", now, back)
    values: dict[str, Any] = {
        "state": "planned",
        "lease_owner": None,
        "lease_until": None,
        "updated_at": now,
        "ambiguous": True,  # routing pins it to its provider, or applies the duplicate policy
    }
    if not resend_unacknowledged:
        values["possible_duplicate"] = True
    return queued, await _release(session, "sending", now, values)


async def _release(session: AsyncSession, state: str, now: datetime, values: dict[str, Any]) -> int:
    released = 0
    while True:
        result = await session.execute(
            sa.update(Message)
            .where(_lapsed(session, state, now), _still(state), Message.lease_until < now)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        count = int(getattr(result, "rowcount", 0) or 0)
        released += count
        if count < SWEEP_BATCH:
            return released


async def running_campaigns(session: AsyncSession, *, limit: int = 100) -> list[Campaign]:
    rows = await session.scalars(
        sa.select(Campaign).where(Campaign.state == "running").order_by(Campaign.id).limit(limit)
    )
    return list(rows)


async def complete_if_done(session: AsyncSession, campaign_id: int, *, now: datetime) -> bool:
    """A running campaign with nothing left in flight is completed; never while anything is pending."""
    # one test per index that holds such rows: planned ones (ix_messages_due), leased ones
    # (ix_messages_state_lease); no single index holds both
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
            _among(session, Suppression.address, sorted(set(addresses)), sa.String),
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


async def add_spent(session: AsyncSession, campaign_id: int, amount: Decimal, *, now: datetime) -> None:
    if amount:
        await session.execute(
            sa.update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(spent=Campaign.spent + amount, updated_at=now)
            .execution_options(synchronize_session=False)
        )


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
        _among(session, Message.address, sorted(set(addresses)), sa.String),
        IS_PAST_QUEUE,  # ix_messages_workspace_channel_address holds only these; CAP_COUNTED are among them
    )
    if _is_pg(session):
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
