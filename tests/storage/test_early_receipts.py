"""Receipts that beat the worker's write of the provider message id: held once, applied once when it lands."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatcher.storage import early_receipts as early
from dispatcher.storage import events as store
from dispatcher.storage import ledger
from dispatcher.storage.campaigns import Message
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.ledger_rows import Sent
from tests import inbound_seed as seed

NOW = datetime.now(UTC)
OWNER = "worker-1"


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


async def _in_flight(session: AsyncSession, count: int) -> seed.Seeded:
    """Rows the worker has marked ``sending`` and handed to the provider: no provider id on the ledger yet."""
    s = await seed.seed(session, count=count, state="sending")
    await session.execute(
        sa.update(Message).where(Message.campaign_id == s.campaign_id).values(lease_owner=OWNER)
    )
    return s


async def _receipt(session: AsyncSession, s: seed.Seeded, index: int, status: str, **extra: str) -> bool:
    _, moved = await store.apply_receipt(
        session,
        provider_id=s.provider_id,
        provider_message_id=s.sid(index),
        status=status,
        error_code=None if status == "delivered" else "30005",
        occurred_at=NOW,
        **extra,
    )
    return moved


async def _ids_land(session: AsyncSession, s: seed.Seeded, indexes: range) -> None:
    """The worker's ``sent`` write, exactly as the send path does it."""
    rows = [Sent(s.message_ids[i], s.sid(i), 1, Decimal("0.0075")) for i in indexes]
    await ledger.mark_sent(
        session, rows, owner=OWNER, provider_id=s.provider_id, now=NOW + timedelta(seconds=1)
    )


async def _held(session: AsyncSession) -> int:
    return int(await session.scalar(sa.select(sa.func.count()).select_from(early.EarlyReceipt)) or 0)


async def test_a_receipt_before_the_id_counts_once_after_it_lands(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    rng = random.Random(3)
    async with sessions.begin() as session:
        s = await _in_flight(session, 3)
        for _ in range(rng.randint(1, 50)):
            assert not await _receipt(session, s, 0, "delivered")
        for _ in range(rng.randint(1, 50)):
            assert not await _receipt(session, s, 1, "undelivered", suppress_reason="hard_bounce")
        assert not await _receipt(session, s, 2, "sent")  # not final: nothing to keep
        assert await _held(session) == 2
        assert await seed.kinds(session, s.workspace_id) == {}
        assert await early.apply_held(session, now=NOW) == []  # ids not there yet: they keep waiting
        await _ids_land(session, s, range(3))
        applied = await early.apply_held(session, now=NOW + timedelta(seconds=2))
        assert sorted((a.message_id, a.status, a.suppress_reason) for a in applied) == [
            (s.message_ids[0], "delivered", None),
            (s.message_ids[1], "undelivered", "hard_bounce"),
        ]
        assert await early.apply_held(session, now=NOW + timedelta(seconds=3)) == []
        for status in ("delivered", "failed"):  # late repeats through the live path change nothing
            assert not await _receipt(session, s, 0, status)
            assert not await _receipt(session, s, 1, status)
        assert await _held(session) == 0
        assert await seed.kinds(session, s.workspace_id) == {"delivered": 1, "undelivered": 1}
        states = await seed.states(session, s.campaign_id)
        assert [states[m] for m in s.message_ids] == ["delivered", "failed", "sent"]
        first, second = [await seed.message(session, s.message_ids[i]) for i in (0, 1)]
        # the receipt came first, but time to delivery never comes out negative
        assert first.delivered_at == first.sent_at == NOW + timedelta(seconds=1)
        assert (second.error_code, second.delivered_at) == ("30005", None)
        [undelivered] = await seed.events(session, s.workspace_id, "undelivered")
        assert undelivered.payload["error_code"] == "30005"


async def test_a_held_receipt_never_moves_a_message_backwards(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        s = await _in_flight(session, 1)
        assert not await _receipt(session, s, 0, "failed")
        await _ids_land(session, s, range(1))
        assert await _receipt(session, s, 0, "delivered")  # the live path got there first
        assert await early.apply_held(session, now=NOW) == []
        assert await _held(session) == 0  # matched, so forgotten
        assert await seed.states(session, s.campaign_id) == {s.message_ids[0]: "delivered"}
        assert await seed.kinds(session, s.workspace_id) == {"delivered": 1}


async def test_receipts_whose_id_never_lands_wait_a_while_then_go(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        s = await _in_flight(session, 1)
        other = await seed.seed(session, count=1, slug="other")
        assert not await _receipt(session, s, 0, "delivered")
        assert await _receipt(session, other, 0, "delivered")  # its row is sent: applied live, not held
        assert await early.apply_held(session, now=NOW) == []
        assert await _held(session) == 1
        assert await early.purge_held(session, older_than=NOW) == 0
        assert await early.purge_held(session, older_than=NOW + timedelta(days=7)) == 1
        [row] = await seed.events(session, other.workspace_id)
        assert row.kind == "delivered"


async def test_receipts_racing_the_sent_write_all_count_once(
    db_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers; the race needs real concurrent connections")
    async with sessions.begin() as session:
        s = await _in_flight(session, 30)

    async def receipt(index: int) -> None:
        async with sessions.begin() as session:
            await _receipt(session, s, index, "delivered")

    async def sent_write() -> None:
        async with sessions.begin() as session:
            await _ids_land(session, s, range(30))

    work = [receipt(i) for i in range(30) for _ in range(3)]
    work.insert(45, sent_write())  # half the receipts start before the ids commit, however it interleaves
    await asyncio.gather(*work)
    async with sessions.begin() as session:
        await early.apply_held(session, now=NOW + timedelta(seconds=5))
    async with sessions() as session:
        assert set((await seed.states(session, s.campaign_id)).values()) == {"delivered"}
        assert await seed.kinds(session, s.workspace_id) == {"delivered": 30}
        assert await _held(session) == 0
