"""The attack battery runs on PostgreSQL only: what it attacks lives above the database layer, and one
backend keeps the directory well under a minute (the shared fixtures run every API test on both)."""

from __future__ import annotations

import pytest

from tests.conftest import PG_URL, _truncate_pg


@pytest.fixture
def db_url(pg_url: str) -> str:
    _truncate_pg()
    return PG_URL
