"""The ledger's partial indexes hold only some row versions (migrations 0011, 0016); each reader must still
find its rows through them, on both databases, and count every row whichever index holds it.

The plan of every statement a reader runs is taken with EXPLAIN on the same connection, with the same
parameters. SQLite uses a partial index only when the query names its predicate in the same words, so on
SQLite each reader must use the partial index named. Every reader on both databases must be served by
an index, never by a scan of the whole ledger: PostgreSQL, told to avoid sequential scans, still plans one
when no index can serve the query. Which index PostgreSQL picks among those that can is left to its
statistics, which a table of ten rows cannot give.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dispatcher.storage import audience, campaigns_q, cap_history, events, ledger
from dispatcher.storage.campaigns import Campaign, Message
from dispatcher.storage.engine import create_engine
from dispatcher.storage.ledger_rows import Sent
from tests import inbound_seed as seed

NOW = datetime.now(UTC)
LATER = NOW + timedelta(hours=2)
# state of each seeded row, with the send instant of waiting ones
STATES: list[tuple[str, datetime | None]] = [
    ("planned", LATER),
    ("planned", LATER),
    ("planned", None),
    ("queued", LATER),
    ("queued", NOW),
    ("sending", None),
    ("sent", None),
    ("sent", None),
    ("failed", None),
    ("capped", None),
]


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


@contextmanager
def plans(engine: AsyncEngine) -> Iterator[list[str]]:
    """The plan of every statement run while inside, one text per statement."""
    sqlite = engine.dialect.name == "sqlite"
    found: list[str] = []

    def explain(_conn: Any, cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool) -> None:
        if many or not statement.lstrip().upper().startswith(("SELECT", "UPDATE")):
            return
        cursor.execute(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, parameters)
        found.append("\n".join(str(row[-1]) for row in cursor.fetchall()))

    event.listen(engine.sync_engine, "before_cursor_execute", explain)
    try:
        yield found
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", explain)


async def _seed(session: AsyncSession) -> seed.Seeded:
    s = await seed.seed(session, count=len(STATES), state="sent")
    for message_id, (state, when) in zip(s.message_ids, STATES, strict=True):
        sent = state in {"sending", "sent", "failed"}
        await session.execute(
            sa.update(Message)
            .where(Message.id == message_id)
            .values(
                state=state,
                not_before=when,
                sent_at=seed.SENT_AT if sent else None,
                error_code="30003" if state == "failed" else None,
                provider_message_id=None if state != "sent" else f"SM{message_id:032d}",
            )
        )
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.text("SET enable_seqscan = off"))
    return s


def _uses(found: list[str], *sqlite_indexes: str) -> None:
    text = "\n".join(found)
    lines = [line.strip() for line in text.splitlines()]
    assert not any(line.startswith("SCAN messages") for line in lines), text  # SQLite's whole-table read
    assert "Seq Scan on messages" not in text, text
    if any(line.startswith("SEARCH") for line in lines):  # SQLite
        missing = [name for name in sqlite_indexes if name not in text]
        assert not missing, f"{missing} not used by:\n{text}"


async def test_counts_per_state_take_leased_rows_from_the_lease_index(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session, session.begin():
        s = await _seed(session)
        with plans(engine) as found:
            counts = await campaigns_q.state_counts(session, s.campaign_id, now=NOW)
    expected = {"planned": 3, "queued": 2, "sending": 1, "sent": 2, "failed": 1, "capped": 1, "deferred": 2}
    assert counts == expected
    _uses(found, "ix_messages_campaign_state")


async def test_waiting_send_times_add_planned_and_queued_rows(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session, session.begin():
        s = await _seed(session)
        with plans(engine) as found:
            waiting = await audience.pending_send_times(session, s.campaign_id)
    assert [(when.astimezone(UTC), n) for when, n in waiting] == [(NOW, 1), (LATER, 3)]
    _uses(found, "ix_messages_due")


@pytest.mark.parametrize("settled", [False, True])
async def test_a_campaign_completes_only_with_nothing_planned_or_leased(
    engine: AsyncEngine, settled: bool
) -> None:
    async with AsyncSession(engine) as session, session.begin():
        s = await _seed(session)
        for state in ("planned", "queued", "sending") if settled else ():
            await session.execute(
                sa.update(Message)
                .where(Message.campaign_id == s.campaign_id, Message.state == state)
                .values(state="expired")
            )
        with plans(engine) as found:
            assert await campaigns_q.complete_if_done(session, s.campaign_id, now=NOW) is settled
        state = await session.scalar(sa.select(Campaign.state).where(Campaign.id == s.campaign_id))
    assert state == ("completed" if settled else "running")
    _uses(found, "ix_messages_due")


async def test_address_readers_find_sent_rows_through_the_address_index(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session, session.begin():
        s = await _seed(session)
        by_state = dict(zip([state for state, _ in STATES], s.addresses, strict=False))
        with plans(engine) as found:
            history = await cap_history.cap_history(
                session, s.workspace_id, "sms", s.addresses, NOW - timedelta(days=1)
            )
            latest = await events.latest_message_to(session, s.workspace_id, "sms", by_state["sent"])
    counted = {s.addresses[i] for i, (state, _) in enumerate(STATES) if state in cap_history.CAP_COUNTED}
    assert set(history) == counted
    assert latest is not None
    assert len(found) == 2
    assert all("ix_messages_workspace_channel_address" in plan for plan in found), found


async def test_failed_pages_are_read_through_the_state_index(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session, session.begin():
        s = await _seed(session)
        with plans(engine) as found:
            page = await audience.failed_page(session, s.campaign_id, permanent=(), after=0, limit=10)
    assert [message_id for message_id, _ in page] == [s.message_ids[8]]
    _uses(found, "ix_messages_campaign_state")


async def test_sent_rows_are_found_by_id_and_matched_to_their_values_by_hash(engine: AsyncEngine) -> None:
    """PostgreSQL: a join that compared every row with every value of the chunk cost up to 2 s a chunk."""
    async with AsyncSession(engine) as session, session.begin():
        s = await seed.seed(session, count=60, state="sending")
        mine, theirs = s.message_ids[:50], s.message_ids[50:]
        for owner, ids in (("me", mine), ("them", theirs)):
            await session.execute(sa.update(Message).where(Message.id.in_(ids)).values(lease_owner=owner))
        rows = [Sent(i, f"SM{i}", 2, Decimal("0.01")) for i in s.message_ids]
        with plans(engine) as found:
            await ledger.mark_sent(session, rows, owner="me", provider_id=s.provider_id, now=NOW)
        found_ids = await session.execute(sa.select(Message.id, Message.provider_message_id))
        written = {message_id: sid for message_id, sid in found_ids}
        states = await session.scalars(sa.select(Message.state).where(Message.id.in_(theirs)))
    assert {i: written[i] for i in mine} == {i: f"SM{i}" for i in mine}
    assert set(states) == {"sending"}  # another job's rows stay as they were
    sql = [plan for plan in found if "Update on messages" in plan]
    if engine.dialect.name == "postgresql":
        (plan,) = sql
        assert "Nested Loop" not in plan, plan
        assert "Hash Join" in plan, plan
        assert "Index Cond: (id = ANY" in plan, plan
