"""SQLite's staging of cleaned rows and their one-transaction publish into the list.

The cleaned rows are staged in a temporary table of the import job's own connection (:func:`open_stage`):
nobody else can see it, writing it takes no lock on the shared database file (other writers go on while
the file is cleaned), it needs no WAL, no checkpoint and no DELETE afterwards, and a crash loses it with the
connection. :func:`publish_stage` then moves it into the list in one transaction. Publish counts are taken
from the statements' row counts inside that transaction, so the buckets are exact even when two imports
into the same list race (``ON CONFLICT DO NOTHING`` on the list's key).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dispatcher.storage.base import UTCDateTime
from dispatcher.storage.bulk import bulk_write, zones_json
from dispatcher.storage.contacts import CLEANED_FIELDS, ContactImport, ContactList

STAGE_COLUMNS = ("import_id", "row_number", *CLEANED_FIELDS)
_ZONES, _ATTRIBUTES = STAGE_COLUMNS.index("time_zones"), STAGE_COLUMNS.index("attributes")
_CONTACT_COLUMNS = ", ".join(CLEANED_FIELDS)


@dataclass(frozen=True, slots=True)
class PublishCounts:
    accepted: int
    duplicate_on_list: int
    suppressed: int


def encode_staged(import_id: int, accepted: tuple[Any, ...]) -> tuple[Any, ...]:
    """One staged row for SQLite's staging table (``accepted`` is a cleaner tuple: STAGE_COLUMNS without
    ``import_id``). PostgreSQL loads ``contacts`` directly (see storage.import_load)."""
    values = [import_id, *accepted]
    values[_ZONES] = zones_json(tuple(values[_ZONES]))
    values[_ATTRIBUTES] = json.dumps(values[_ATTRIBUTES], ensure_ascii=False)
    return tuple(values)


# The table has the columns of ``import_rows`` without their types:
# values keep the types they were bound with, and ``contacts`` applies its own on the way in. ``row_number``
# is the rowid, so the rows are appended in file order and read back in that order without a sort.
_STAGE = "temp.import_stage"
# The publish inserts into the random-order indexes of ``contacts`` (e-mail, and the list's key and phone
# unless the file is sorted) in one transaction: in SQLite's 2 MB default page cache most of those inserts
# miss, and dirty pages spill to the WAL mid-transaction to be written again. 32 MB took the publish of
# bench.import's 1M rows from 13 s to 6 s; more gained little. Closing the import's connection afterwards
# (see pipeline.imports) frees it again.
_PUBLISH_CACHE_KIB = 32 * 1024


async def open_stage(conn: AsyncConnection) -> None:
    """Create the connection's empty staging table (a reused pooled connection may hold an old one)."""
    columns = ", ".join(
        f'"{name}" INTEGER PRIMARY KEY' if name == "row_number" else f'"{name}"' for name in STAGE_COLUMNS
    )
    await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_STAGE}")
    await conn.exec_driver_sql(f"CREATE TABLE {_STAGE} ({columns})")
    await conn.commit()


async def stage(conn: AsyncConnection, rows: Sequence[Any]) -> None:
    """Bulk-write staged rows encoded by :func:`encode_staged` (as tuples) into the connection's table."""
    await bulk_write(conn, _STAGE, STAGE_COLUMNS, rows)


async def begin_publish(conn: AsyncConnection) -> None:
    """Open the publishing transaction on the staging connection, holding the write lock from the start.

    SQLite's default deferred BEGIN would read first and take the lock at the first write, and fails
    there (without waiting) when another connection committed in between.
    """
    await conn.exec_driver_sql(f"PRAGMA main.cache_size = -{_PUBLISH_CACHE_KIB}")
    await conn.exec_driver_sql("BEGIN IMMEDIATE")


async def publish_stage(
    session: AsyncSession, job: ContactImport, *, now: datetime, consent_source: str | None
) -> PublishCounts:
    """Move the staged rows into the list, inside the transaction :func:`begin_publish` opened on the
    session's connection. The caller commits to publish, or rolls back for a dry run."""
    params = {"i": job.id, "w": job.workspace_id, "l": job.list_id, "now": now}
    suppressed = 0
    if await session.scalar(_HAS_SUPPRESSIONS, params):
        suppressed = await _rowcount(session, _DROP_SUPPRESSED, params)
    staged = int(await session.scalar(sa.text(f"SELECT count(*) FROM {_STAGE}")) or 0)  # noqa: S608
    # ``id`` is the rowid: SQLite numbers new rows from the largest one up, and nobody else writes meanwhile
    before = int(await session.scalar(sa.text("SELECT coalesce(max(id), 0) FROM contacts")) or 0)
    accepted = await _rowcount(session, _INSERT_CONTACTS, params)
    if consent_source and accepted:
        await session.execute(_INSERT_CONSENT, {**params, "src": consent_source, "before": before})
    await session.execute(
        sa.update(ContactList)
        .where(ContactList.id == job.list_id)
        .values(contact_count=ContactList.contact_count + accepted, updated_at=now)
    )
    return PublishCounts(accepted=accepted, duplicate_on_list=staged - accepted, suppressed=suppressed)


async def _rowcount(session: AsyncSession, statement: sa.TextClause, params: dict[str, Any]) -> int:
    result = await session.execute(statement, params)
    return int(getattr(result, "rowcount", 0) or 0)


_NOW = sa.bindparam("now", type_=UTCDateTime())

_HAS_SUPPRESSIONS = sa.text("SELECT EXISTS (SELECT 1 FROM suppressions WHERE workspace_id = :w)")

# A row is suppressed when every address it has is suppressed on its channel (or on "all"); a row with one
# usable channel left is kept, and the send-time check skips the suppressed one.
_DROP_SUPPRESSED = sa.text(
    f"""
    DELETE FROM {_STAGE}
    WHERE (phone IS NULL OR EXISTS (
            SELECT 1 FROM suppressions s
            WHERE s.workspace_id = :w AND s.channel IN ('sms', 'all') AND s.address = import_stage.phone))
      AND (email IS NULL OR EXISTS (
            SELECT 1 FROM suppressions s
            WHERE s.workspace_id = :w AND s.channel IN ('email', 'all') AND s.address = import_stage.email))
    """  # noqa: S608 - a constant table name
)

# In file order, so contact ids follow the file as on PostgreSQL. (Key order would append to the list's key
# and phone indexes in order and save about 15% of the publish, at the price of ids in phone order.)
# ``WHERE true`` keeps SQLite from reading ``ON CONFLICT`` as a join constraint.
_INSERT_CONTACTS = sa.text(
    f"""
    INSERT INTO contacts (workspace_id, list_id, import_id, created_at, {_CONTACT_COLUMNS})
    SELECT :w, :l, :i, :now, {_CONTACT_COLUMNS}
    FROM {_STAGE} WHERE true
    ORDER BY row_number
    ON CONFLICT (list_id, dedupe_key) DO NOTHING
    """  # noqa: S608 - column and table names are constants of this module, values are bound
).bindparams(_NOW)

# Append-only consent: one record per address of each newly added contact, found by its id range.
_INSERT_CONSENT = sa.text(
    """
    INSERT INTO consent_records (workspace_id, created_at, address, channel, granted, source, import_id)
    SELECT workspace_id, :now, phone, 'sms', TRUE, :src, :i FROM contacts
    WHERE id > :before AND import_id = :i AND phone IS NOT NULL
    UNION ALL
    SELECT workspace_id, :now, email, 'email', TRUE, :src, :i FROM contacts
    WHERE id > :before AND import_id = :i AND email IS NOT NULL
    """
).bindparams(_NOW)
