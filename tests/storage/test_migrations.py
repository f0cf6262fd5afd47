"""The test schema is built by the migrations; they must match the models on both databases."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from dispatcher.storage.engine import create_engine
from dispatcher.storage.migrations import downgrade, upgrade
from dispatcher.storage.models import Base
from tests.conftest import PG_ADMIN_URL, PG_TEST_DB

NOW = datetime(2030, 1, 14, tzinfo=UTC)


def _diff(url: str) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_engine(url)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
        await engine.dispose()
        return list(diff)

    return asyncio.run(run())


def _tables(url: str) -> set[str]:
    async def run() -> set[str]:
        engine = create_engine(url)
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        await engine.dispose()
        return names

    return asyncio.run(run())


def test_sqlite_chain_matches_models_and_goes_both_ways(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    assert _diff(url) == []
    assert {t.name for t in Base.metadata.sorted_tables} <= _tables(url)
    downgrade(url)
    assert _tables(url) <= {"alembic_version"}
    upgrade(url)
    assert _diff(url) == []


def test_postgresql_chain_matches_models(pg_url: str) -> None:
    assert _diff(pg_url) == []
    assert {t.name for t in Base.metadata.sorted_tables} <= _tables(pg_url)


def test_every_marketer_table_carries_the_workspace() -> None:
    exempt = {
        "workspaces",
        "worker_heartbeats",
        "import_rejects",
        "import_chunks",
        "import_rows",
    }  # rejects hang off a workspace-owned import
    missing = [
        t.name for t in Base.metadata.sorted_tables if t.name not in exempt and "workspace_id" not in t.c
    ]
    assert missing == []


@pytest.mark.parametrize("name", ["messages", "events", "contacts", "suppressions"])
def test_hot_tables_have_their_uniqueness_guards(name: str) -> None:
    table = Base.metadata.tables[name]
    assert any(c.__class__.__name__ == "UniqueConstraint" for c in table.constraints)


_ZONED_ROWS = [  # (contact's field zone, its number's zones) -> the zone 0009 writes on its ledger rows
    (None, ["America/New_York", "America/Chicago"], "America/New_York"),
    ("Europe/Berlin", ["America/New_York"], "Europe/Berlin"),
    ("Asia/Tokyo", [], "Asia/Tokyo"),
    (None, [], None),
]


_AT_0008 = [
    "INSERT INTO workspaces (id, slug, name, created_at) VALUES (1, 'w', 'w', :t)",
    "INSERT INTO contact_lists (id, workspace_id, name, description, contact_count, created_at, updated_at)"
    " VALUES (1, 1, 'l', '', 0, :t, :t)",
    "INSERT INTO campaigns (id, workspace_id, name, state, channel, list_id, variants, schedule, limits,"
    " spent, duplicate_policy, excluded, created_at, updated_at)"
    " VALUES (1, 1, 'c', 'running', 'sms', 1, '{}', '{}', '{}', 0, 'never', 0, :t, :t)",
]
_CONTACT = (
    "INSERT INTO contacts (id, workspace_id, list_id, dedupe_key, time_zones, timezone, sms_capable,"
    " attributes, created_at) VALUES (:n, 1, 1, :key, :zones, :field, true, '{}', :t)"
)
_MESSAGE = (
    "INSERT INTO messages (id, workspace_id, campaign_id, contact_id, variant, channel, address, state,"
    " attempts, possible_duplicate, ambiguous, created_at, updated_at)"
    " VALUES (:n, 1, 1, :n, 'A', 'sms', :key, 'sent', 1, false, false, :t, :t)"
)


def _fill_at_0008(url: str) -> None:
    async def run() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            for statement in _AT_0008:
                await conn.execute(text(statement), {"t": NOW})
            for n, (field, numbers, _) in enumerate(_ZONED_ROWS, start=1):
                values = {"n": n, "key": str(n), "zones": json.dumps(numbers), "field": field, "t": NOW}
                await conn.execute(text(_CONTACT), values)
                await conn.execute(text(_MESSAGE), values)
        await engine.dispose()

    asyncio.run(run())


def _zones(url: str) -> list[str | None]:
    async def run() -> list[str | None]:
        engine = create_engine(url)
        async with engine.connect() as conn:
            found = list((await conn.execute(text("SELECT zone FROM messages ORDER BY id"))).scalars())
        await engine.dispose()
        return found

    return asyncio.run(run())


def test_0009_gives_existing_ledger_rows_the_zone_reports_derived(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'z.db'}"
    upgrade(url, "0008")
    _fill_at_0008(url)
    upgrade(url)
    assert _zones(url) == [zone for _, _, zone in _ZONED_ROWS]


def test_0009_fills_zones_on_postgresql(pg_url: str) -> None:
    url = pg_url.replace(PG_TEST_DB, f"{PG_TEST_DB}_m9")

    async def recreate() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{PG_TEST_DB}_m9" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{PG_TEST_DB}_m9"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    upgrade(url, "0008")
    _fill_at_0008(url)
    upgrade(url)
    assert _zones(url) == [zone for _, _, zone in _ZONED_ROWS]


def _sqlite_rows(url: str, *statements: str) -> list[list[Any]]:
    async def run() -> list[list[Any]]:
        engine = create_engine(url)
        async with engine.connect() as conn:
            found = [list((await conn.execute(text(s))).all()) for s in statements]
        await engine.dispose()
        return found

    return asyncio.run(run())


def test_0015_rebuilds_sqlite_contacts_without_losing_a_row_or_a_key(tmp_path: Path) -> None:
    """The rebuild runs with SQLite's foreign keys off; rows that point at contacts survive, and the keys
    are enforced again afterwards."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    upgrade(url, "0008")
    _fill_at_0008(url)
    upgrade(url)
    contacts, messages, keys, dangling = _sqlite_rows(
        url,
        "SELECT id, workspace_id, list_id FROM contacts ORDER BY id",
        "SELECT id, contact_id FROM messages ORDER BY id",
        "PRAGMA foreign_keys",
        "PRAGMA foreign_key_check",
    )
    n = len(_ZONED_ROWS)
    assert [tuple(r) for r in contacts] == [(i, 1, 1) for i in range(1, n + 1)]
    assert [tuple(r) for r in messages] == [(i, i) for i in range(1, n + 1)]
    assert keys == [(1,)]
    assert dangling == []
    with pytest.raises(Exception, match="FOREIGN KEY"):  # messages still point at their contacts
        _sqlite_rows(url, "DELETE FROM contacts WHERE id = 1")
