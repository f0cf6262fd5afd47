"""PostgreSQL's one-transaction import takes back, before its commit, rows suppressed while it ran."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from dispatcher.storage import import_load as load
from tests.conftest import PG_URL, _truncate_pg

START = datetime(2030, 1, 14, 12, tzinfo=UTC)
OLD, LATE = START - timedelta(hours=1), START + timedelta(minutes=5)
TARGET = load.LoadTarget(
    workspace_id=1, list_id=1, import_id=9, created_at=START.isoformat(), consent_source="f"
)

# (phone, e-mail) of the import's rows; suppressions (channel, address, stamped); which rows are taken back
ROWS = {
    1: ("+1201", "a@x.io"),  # both addresses suppressed late: out
    2: ("+1202", "b@x.io"),  # only the phone late, the e-mail still usable: kept
    3: (None, "c@x.io"),  # its only address late: out
    4: ("+1204", "d@x.io"),  # phone late, e-mail suppressed before the import: out
    5: ("+1205", None),  # suppressed before the import only: the blocks' own check, not this one
    6: ("+1206", "a@x.io"),  # shares row 1's e-mail, its phone usable: kept, and so is a@x.io's consent
    7: ("+1207", "g@x.io"),  # both on channel "all": out
}
SUPPRESSIONS = [
    ("sms", "+1201", LATE),
    ("email", "a@x.io", LATE),
    ("sms", "+1202", LATE),
    ("email", "c@x.io", LATE),
    ("sms", "+1204", LATE),
    ("email", "d@x.io", OLD),
    ("sms", "+1205", OLD),
    ("all", "+1207", LATE),
    ("all", "g@x.io", LATE),
]
GONE = {1, 3, 4, 7}


@pytest.fixture
def pg(pg_url: str) -> str:
    _truncate_pg()
    return PG_URL.replace("+asyncpg", "")


async def _run(dsn: str, suppressions: list[tuple[str, str, datetime]]) -> tuple[int, set[int], set[str]]:
    """Inside one transaction, rolled back at the end like a failed import: rows, then the check."""
    conn = await asyncpg.connect(dsn)
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(
            "INSERT INTO workspaces (id, slug, name, created_at) VALUES (1, 'w', 'w', $1)", START
        )
        await conn.execute(
            "INSERT INTO contact_lists (id, workspace_id, name, description, contact_count, created_at,"
            " updated_at) VALUES (1, 1, 'l', '', 0, $1, $1)",
            START,
        )
        for n, (phone, email) in ROWS.items():
            await conn.execute(
                "INSERT INTO contacts (id, workspace_id, list_id, import_id, dedupe_key, phone, email,"
                " time_zones, sms_capable, attributes, created_at)"
                " VALUES ($1, 1, 1, 9, $2, $3, $4, '[]', true, '{}', $5)",
                n,
                phone or email,
                phone,
                email,
                START,
            )
            for address, channel in ((phone, "sms"), (email, "email")):
                if address is not None:
                    await conn.execute(
                        "INSERT INTO consent_records (workspace_id, created_at, address, channel, granted,"
                        " source, import_id) VALUES (1, $1, $2, $3, true, 'f', 9)",
                        START,
                        address,
                        channel,
                    )
        for channel, address, at in suppressions:
            await conn.execute(
                "INSERT INTO suppressions (workspace_id, channel, address, reason, source, created_at)"
                " VALUES (1, $1, $2, 'stop', '', $3)",
                channel,
                address,
                at,
            )
        taken = await load.drop_late_suppressed(conn, TARGET, START)
        kept = {r[0] for r in await conn.fetch("SELECT id FROM contacts")}
        consents = {r[0] for r in await conn.fetch("SELECT address FROM consent_records")}
        return taken, kept, consents
    finally:
        await transaction.rollback()
        await conn.close()


def test_rows_suppressed_mid_import_are_taken_back_with_their_consent(pg: str) -> None:
    taken, kept, consents = asyncio.run(_run(pg, SUPPRESSIONS))
    assert taken == len(GONE)
    assert kept == set(ROWS) - GONE
    held = {address for n in kept for address in ROWS[n] if address is not None}
    assert consents == held
    assert "a@x.io" in consents  # row 6 still holds it


def test_nothing_late_means_nothing_taken(pg: str) -> None:
    taken, kept, _ = asyncio.run(_run(pg, [(channel, address, OLD) for channel, address, _ in SUPPRESSIONS]))
    assert taken == 0
    assert kept == set(ROWS)
