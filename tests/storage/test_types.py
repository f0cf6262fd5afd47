from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, StatementError

from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.keys import get_or_create_workspace
from dispatcher.storage.models import ContactList, Suppression


async def test_datetimes_come_back_aware_utc(db_url: str) -> None:
    engine = create_engine(db_url)
    moment = datetime(2026, 3, 8, 6, 30, tzinfo=timezone(timedelta(hours=-5)))
    async with session_factory(engine).begin() as session:
        ws = await get_or_create_workspace(session, "w", now=moment)
        session.add(ContactList(workspace_id=ws.id, name="x", created_at=moment, updated_at=moment))
    async with session_factory(engine)() as session:
        row = await session.scalar(sa.select(ContactList))
        assert row is not None
        assert row.created_at == moment
        assert row.created_at.tzinfo is not None
        assert row.created_at.utcoffset() == timedelta(0)
    await engine.dispose()


async def test_naive_datetimes_are_refused(db_url: str) -> None:
    engine = create_engine(db_url)
    with pytest.raises(StatementError, match="naive"):
        async with session_factory(engine).begin() as session:
            ws = await get_or_create_workspace(session, "w", now=datetime.now(UTC))
            session.add(ContactList(workspace_id=ws.id, name="x", created_at=datetime(2026, 1, 1)))
    await engine.dispose()


async def test_suppression_is_unique_per_channel_and_address(db_url: str) -> None:
    engine = create_engine(db_url)
    now = datetime.now(UTC)
    async with session_factory(engine).begin() as session:
        ws = await get_or_create_workspace(session, "w", now=now)
        ws_id = ws.id
    with pytest.raises(IntegrityError):
        async with session_factory(engine).begin() as session:
            for _ in range(2):
                session.add(
                    Suppression(workspace_id=ws_id, channel="sms", address="+14155552671", reason="stop")
                )
                await session.flush()
    async with session_factory(engine).begin() as session:
        session.add(Suppression(workspace_id=ws_id, channel="email", address="+14155552671", reason="manual"))
    await engine.dispose()
