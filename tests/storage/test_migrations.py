"""The test schema is built by the migrations; they must match the models on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from dispatcher.storage.engine import create_engine
from dispatcher.storage.migrations import downgrade, upgrade
from dispatcher.storage.models import Base


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
