"""SQLite's import staging: a temporary table of the job's own connection, published in one transaction."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from dispatcher.storage import import_stage
from dispatcher.storage import imports as store
from dispatcher.storage.engine import create_engine, session_factory
from dispatcher.storage.models import (
    ConsentRecord,
    Contact,
    ContactImport,
    ContactList,
    Suppression,
    Workspace,
)

NOW = datetime.now(UTC)


@pytest.fixture
def db_path(tmp_path: Path, sqlite_template: Path) -> Path:
    path = tmp_path / "stage.db"
    shutil.copy(sqlite_template, path)
    return path


@pytest.fixture
async def engine(db_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
    yield engine
    await engine.dispose()


async def _new_import(engine: AsyncEngine, *, consent: str | None = None, list_id: int = 0) -> ContactImport:
    async with session_factory(engine).begin() as session:
        workspace = await session.scalar(sa.select(Workspace).limit(1))
        if workspace is None:
            workspace = Workspace(slug="acme", name="Acme")
            session.add(workspace)
            await session.flush()
        if not list_id:
            made = ContactList(workspace_id=workspace.id, name="L")
            session.add(made)
            await session.flush()
            list_id = made.id
        return await store.add_import(
            session, workspace_id=workspace.id, list_id=list_id, state="running", consent_source=consent
        )


def _row(job: ContactImport, line: int, phone: str | None, email: str | None) -> tuple[Any, ...]:
    key = phone or email or ""
    accepted: tuple[Any, ...] = (
        line,
        key,
        phone,
        "mobile",
        "US",
        ["America/New_York"],
        True,
        email,
        "Ann",
        None,
        None,
        {},
    )
    return import_stage.encode_staged(job.id, accepted)


async def _publish(engine: AsyncEngine, job: ContactImport, rows: list[tuple[Any, ...]]) -> Any:
    """Stage ``rows`` and publish them as the import job does; committed."""
    async with engine.connect() as conn:
        await import_stage.open_stage(conn)
        await import_stage.stage(conn, rows)
        await conn.commit()
        await import_stage.begin_publish(conn)
        async with AsyncSession(bind=conn) as session:
            counts = await import_stage.publish_stage(
                session, job, now=NOW, consent_source=job.consent_source
            )
        await conn.commit()
        await conn.invalidate()
    return counts


async def _count(engine: AsyncEngine, model: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0)


async def test_counts_are_exact_against_the_list_suppressions_and_consent(engine: AsyncEngine) -> None:
    first = await _new_import(engine, consent="form")
    counts = await _publish(engine, first, [_row(first, 2, "+14155550001", "a@example.com")])
    assert (counts.accepted, counts.duplicate_on_list, counts.suppressed) == (1, 0, 0)
    other_list = await _new_import(engine)  # contacts on another list get ids too
    await _publish(engine, other_list, [_row(other_list, 2, "+14155550009", None)])
    async with session_factory(engine).begin() as session:
        session.add(
            Suppression(workspace_id=first.workspace_id, channel="sms", address="+14155550002", reason="stop")
        )
        session.add(
            Suppression(workspace_id=first.workspace_id, channel="all", address="c@example.com", reason="x")
        )
    second = await _new_import(engine, consent="form", list_id=first.list_id)
    rows = [
        _row(second, 2, "+14155550001", None),  # already on the list
        _row(second, 3, "+14155550002", None),  # suppressed (its only address)
        _row(second, 4, None, "c@example.com"),  # suppressed on "all"
        _row(second, 5, "+14155550002", "d@example.com"),  # e-mail still usable: kept
        _row(second, 6, "+14155550003", "e@example.com"),
    ]
    counts = await _publish(engine, second, rows)
    assert (counts.accepted, counts.duplicate_on_list, counts.suppressed) == (2, 1, 2)
    assert await _count(engine, Contact, Contact.list_id == first.list_id) == 3
    # one record per address of each newly added contact, none for the other list's or older contacts
    assert await _count(engine, ConsentRecord, ConsentRecord.import_id == second.id) == 4
    assert await _count(engine, ConsentRecord) == 6
    async with engine.connect() as conn:
        listed = await conn.scalar(
            sa.select(ContactList.contact_count).where(ContactList.id == first.list_id)
        )
        lines = await conn.scalars(
            sa.select(Contact.phone).where(Contact.import_id == second.id).order_by(Contact.id)
        )
        assert listed == 3
        assert list(lines) == ["+14155550002", "+14155550003"]  # ids in file order


async def test_nothing_is_visible_before_the_commit_and_a_rollback_leaves_nothing(
    engine: AsyncEngine, db_path: Path
) -> None:
    job = await _new_import(engine, consent="form")
    async with engine.connect() as conn:
        await import_stage.open_stage(conn)
        await import_stage.stage(conn, [_row(job, n, f"+1415555{n:04d}", None) for n in range(2, 500)])
        await conn.commit()
        # staging takes no lock on the database file: another writer goes straight through
        other = sqlite3.connect(db_path, timeout=0.2)
        other.execute("UPDATE contact_lists SET name = 'renamed'")
        other.commit()
        await import_stage.begin_publish(conn)
        async with AsyncSession(bind=conn) as session:
            counts = await import_stage.publish_stage(session, job, now=NOW, consent_source="form")
        assert counts.accepted == 498
        assert other.execute("SELECT count(*) FROM contacts").fetchone() == (0,)
        with pytest.raises(sqlite3.OperationalError):  # the publish holds the write lock
            other.execute("UPDATE contact_lists SET name = 'again'")
        other.close()
        await conn.invalidate()  # what the job does after a failure: closing rolls everything back
    assert await _count(engine, Contact) == 0
    assert await _count(engine, ConsentRecord) == 0


async def test_a_reused_connection_starts_with_an_empty_stage(engine: AsyncEngine) -> None:
    job = await _new_import(engine)
    async with engine.connect() as conn:
        await import_stage.open_stage(conn)
        await import_stage.stage(conn, [_row(job, 2, "+14155550001", None)])
        await conn.commit()
        await import_stage.open_stage(conn)  # a job that died without closing its connection left rows behind
        await import_stage.begin_publish(conn)
        async with AsyncSession(bind=conn) as session:
            counts = await import_stage.publish_stage(session, job, now=NOW, consent_source=None)
        assert (counts.accepted, counts.duplicate_on_list) == (0, 0)
        await conn.rollback()
