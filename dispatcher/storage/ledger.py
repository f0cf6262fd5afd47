"""The send ledger's state changes: every one a guarded, batched UPDATE.

A row moves ``planned → queued`` (claimed, leased to one send job) ``→ sending`` (written before the provider
is called, with the attempt's idempotency key) ``→ sent`` (after the provider answered), or back to
``planned`` for a retry, or to a final state. Each UPDATE names the state (and lease owner) it expects, so a
late, duplicated or superseded job changes nothing. The sweeper hands back leases that expired
(``storage.leases``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.base import any_of, by_index_on_postgresql, on_postgresql
from dispatcher.storage.campaigns import Batch, Message, still_in
from dispatcher.storage.contacts import Contact
from dispatcher.storage.ledger_rows import Due, Final, Retry, Sent

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
    WHERE m.id = ANY(CAST(:ids AS BIGINT[])) AND m.id = v.id
        AND coalesce(m.state, '') = 'sending' AND m.lease_owner = :owner
    """
)


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
    if on_postgresql(session):
        # ARRAY(subquery) runs once and the UPDATE finds its rows by primary key; a plain IN was hashed
        # against a scan of every planned row
        chosen = Message.id == sa.any_(sa.func.array(due.with_for_update(skip_locked=True).scalar_subquery()))
    result = await session.execute(
        sa.update(Message)
        .where(chosen, still_in("planned"))
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
            any_of(session, Message.id, ids, sa.BigInteger),
            still_in("queued"),
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
            any_of(session, Message.id, ids, sa.BigInteger),
            still_in("queued"),
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
    if on_postgresql(session):
        # The chunk's rows are found by primary key (id = ANY) and matched to their values by hashing
        # them. Statistics taken before the campaign ran make "sending and leased to this owner" look
        # like one row, and the planner then read the whole primary key for it and compared each row
        # found with every value of the chunk: 1,000,000 comparisons a chunk, 0.3-2 s (bench/dispatch.py
        # --channel email, on a 20,000-row ledger). With sequential scans allowed, it read the table.
        await by_index_on_postgresql(session, hash_joins=True)
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
            _T.c.id == sa.bindparam("mid"), still_in(from_state, column=_T.c.state), _T.c.lease_owner == owner
        )
        .values(lease_owner=None, lease_until=None, updated_at=now, **values),
        rows,
    )
