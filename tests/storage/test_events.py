"""Events and receipts on PostgreSQL and SQLite: one row per fact; the ledger only moves forward, once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatcher.storage import events as store
from dispatcher.storage import suppressions
from dispatcher.storage.campaigns import Message
from dispatcher.storage.engine import create_engine, session_factory
from tests import inbound_seed as seed

NOW = datetime.now(UTC)


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_record_event_writes_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, count=1)
        row = await store.message_by_provider_id(session, s.provider_id, s.sid(0))
        assert row is not None
        firsts = [
            await store.record_event(
                session,
                workspace_id=s.workspace_id,
                kind="reply",
                dedupe_key="inbound:1:SMx",
                occurred_at=NOW,
                message=row,
                payload={"text": "hi"},
            )
            for _ in range(5)
        ]
        assert firsts == [True, False, False, False, False]
        [event] = await seed.events(session, s.workspace_id)
        assert (event.message_id, event.campaign_id, event.contact_id) == (
            s.message_ids[0],
            s.campaign_id,
            s.contact_ids[0],
        )
        assert event.payload == {
            "text": "hi",
            "batch_id": s.batch_id,
            "channel": "sms",
            "provider_id": s.provider_id,
        }


async def _receipt(
    session: AsyncSession, s: seed.Seeded, index: int, status: str, when: datetime = NOW
) -> bool:
    _, moved = await store.apply_receipt(
        session,
        provider_id=s.provider_id,
        provider_message_id=s.sid(index),
        status=status,
        error_code="30003" if status != "delivered" else None,
        occurred_at=when,
    )
    return moved


async def test_a_receipt_moves_a_message_once_and_a_final_status_is_never_replaced(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, count=2)
        assert await _receipt(session, s, 0, "delivered")
        assert not await _receipt(session, s, 0, "delivered")
        assert not await _receipt(session, s, 0, "undelivered", NOW + timedelta(seconds=5))
        assert not await _receipt(session, s, 0, "sent")  # not final: never moves the ledger
        assert await _receipt(session, s, 1, "undelivered")
        assert not await _receipt(session, s, 1, "delivered")
        first, second = (
            await seed.message(session, s.message_ids[0]),
            await seed.message(session, s.message_ids[1]),
        )
        assert (first.state, first.delivered_at, first.error_code) == ("delivered", NOW, None)
        assert (second.state, second.delivered_at, second.error_code) == ("failed", None, "30003")
        assert await seed.kinds(session, s.workspace_id) == {"delivered": 1, "undelivered": 1}


async def test_unknown_or_foreign_provider_ids_find_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, count=1)
        other = await seed.seed(session, count=1, slug="other")
        found, moved = await store.apply_receipt(
            session,
            provider_id=other.provider_id,  # the sid exists, under another provider
            provider_message_id=s.sid(0),
            status="delivered",
            error_code=None,
            occurred_at=NOW,
        )
        assert (found, moved) == (None, False)
        assert await seed.states(session, s.campaign_id) == {s.message_ids[0]: "sent"}


async def test_messages_not_yet_with_the_provider_do_not_move(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, count=2, state="planned")
        moved = await store.advance_message(
            session,
            Message.campaign_id == s.campaign_id,
            status="delivered",
            error_code=None,
            occurred_at=NOW,
        )
        assert moved is None
        assert set((await seed.states(session, s.campaign_id)).values()) == {"planned"}
        not_final = await store.advance_message(
            session, Message.id == s.message_ids[0], status="sent", error_code=None, occurred_at=NOW
        )
        assert not_final is None
        assert await session.scalar(sa.select(sa.func.count()).select_from(Message)) == 2


async def test_shuffled_repeated_receipts_count_once_per_message(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    rng = random.Random(7)
    async with sessions.begin() as session:
        s = await seed.seed(session, count=20)
        plan = []
        for index in range(20):
            outcome = rng.choice(["delivered", "undelivered", "failed"])
            plan += [
                (index, status) for status in ("queued", "sent", outcome) for _ in range(rng.randint(1, 50))
            ]
        rng.shuffle(plan)
        first_final: dict[int, str] = {}
        for index, status in plan:
            if await _receipt(session, s, index, status):
                first_final[index] = status
        assert len(first_final) == 20
        by_kind = await seed.kinds(session, s.workspace_id)
        assert sum(by_kind.values()) == 20
        for kind, count in by_kind.items():
            assert count == sum(1 for status in first_final.values() if status == kind)
        states = await seed.states(session, s.campaign_id)
        for index, status in first_final.items():
            assert states[s.message_ids[index]] == ("delivered" if status == "delivered" else "failed")


async def test_racing_receipts_have_one_winner(
    db_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite serialises writers; the race needs two real connections")
    async with sessions.begin() as session:
        s = await seed.seed(session, count=10)

    async def one(index: int, status: str) -> bool:
        async with sessions.begin() as session:
            return await _receipt(session, s, index, status)

    results = await asyncio.gather(*(one(i, st) for i in range(10) for st in ("delivered", "failed") * 3))
    assert sum(results) == 10
    async with sessions() as session:
        assert sum((await seed.kinds(session, s.workspace_id)).values()) == 10


async def test_latest_message_to_an_address(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        older = await seed.seed(session, count=1)
        newer = await seed.seed(session, count=1)
        (await seed.message(session, newer.message_ids[0])).sent_at = NOW
        unsent = await seed.seed(session, count=1, state="planned")
        await session.flush()
        found = await store.latest_message_to(session, older.workspace_id, "sms", seed.phone(0))
        assert found is not None
        assert found.id == newer.message_ids[0]
        assert unsent.message_ids[0] != found.id
        assert await store.latest_message_to(session, older.workspace_id, "email", seed.phone(0)) is None
        other = await seed.workspace(session, "other")
        assert await store.latest_message_to(session, other, "sms", seed.phone(0)) is None


async def test_suppress_once_and_lift_only_a_stop(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        ws = await seed.workspace(session)
        args = {"workspace_id": ws, "channel": "sms", "source": "test", "now": NOW}
        assert await suppressions.suppress_address(session, address="+14155550001", reason="stop", **args)
        assert not await suppressions.suppress_address(session, address="+14155550001", reason="stop", **args)
        assert await suppressions.suppress_address(
            session, address="+14155550002", reason="hard_bounce", **args
        )
        assert await seed.consents(session, ws) == [("+14155550001", False), ("+14155550002", False)]
        lift = {"workspace_id": ws, "channel": "sms", "reason": "stop"}
        assert not await suppressions.lift_suppression(session, address="+14155550002", **lift)
        assert await suppressions.lift_suppression(session, address="+14155550001", **lift)
        assert not await suppressions.lift_suppression(session, address="+14155550001", **lift)
        assert await seed.suppressions(session, ws) == [("sms", "+14155550002", "hard_bounce")]


async def test_lookups_stay_in_their_workspace(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        s = await seed.seed(session, count=1)
        other = await seed.workspace(session, "other")
        mid = s.message_ids[0]
        assert await store.message_by_key(session, s.workspace_id, s.campaign_id, mid) is not None
        assert await store.message_by_key(session, other, s.campaign_id, mid) is None
        assert await store.message_by_key(session, s.workspace_id, s.campaign_id + 1, mid) is None
        assert await store.message_in_workspace(session, other, mid) is None
        assert (
            await store.message_for_contact(session, s.workspace_id, s.campaign_id, s.contact_ids[0])
            is not None
        )
        assert await store.message_for_contact(session, other, s.campaign_id, s.contact_ids[0]) is None
        provider = await store.provider_by_id(session, s.provider_id)
        assert provider is not None
        assert provider.workspace_id == s.workspace_id
