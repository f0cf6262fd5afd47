"""Leases on ledger rows: a job renews those of the rows it still works on, and the sweeper hands back the
rows whose lease ran out (their job vanished with Redis, or their worker died)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.base import any_of, on_postgresql
from dispatcher.storage.campaigns import Message, still_in

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
    if on_postgresql(session):
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
            any_of(session, Message.id, ids, sa.BigInteger),
            Message.lease_owner == owner,
            still_in("queued", "sending"),
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
            .where(_lapsed(session, state, now), still_in(state), Message.lease_until < now)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        count = int(getattr(result, "rowcount", 0) or 0)
        released += count
        if count < SWEEP_BATCH:
            return released
