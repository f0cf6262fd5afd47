"""Import queries: the upload, staged rows, rejects, progress and the one-transaction publish.

On SQLite the cleaned rows are staged in a temporary table of the import job's own connection
(:func:`open_stage`): nobody else can see it, writing it takes no lock on the shared database file (other
writers go on while the file is cleaned), it needs no WAL, no checkpoint and no DELETE afterwards, and a
crash loses it with the connection. :func:`publish_stage` then moves it into the list in one transaction.
Publish counts are taken from the statements' row counts inside that transaction, so the buckets are exact
even when two imports into the same list race (``ON CONFLICT DO NOTHING`` on the list's key).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dispatcher.storage.base import UTCDateTime
from dispatcher.storage.contacts import ContactImport, ContactList, ImportReject
from dispatcher.storage.staging import ImportChunk, StagedContact

STAGE_COLUMNS = (
    "import_id",
    "row_number",
    "dedupe_key",
    "phone",
    "phone_type",
    "phone_region",
    "time_zones",
    "sms_capable",
    "email",
    "first_name",
    "last_name",
    "timezone",
    "attributes",
)
_ZONES, _ATTRIBUTES = STAGE_COLUMNS.index("time_zones"), STAGE_COLUMNS.index("attributes")
_CONTACT_COLUMNS = ", ".join(STAGE_COLUMNS[2:])


@dataclass(frozen=True, slots=True)
class PublishCounts:
    accepted: int
    duplicate_on_list: int
    suppressed: int


async def add_import(session: AsyncSession, **fields: Any) -> ContactImport:
    row = ContactImport(**fields)
    session.add(row)
    await session.flush()
    return row


async def get_import(session: AsyncSession, workspace_id: int, import_id: int) -> ContactImport | None:
    return await session.scalar(
        sa.select(ContactImport).where(
            ContactImport.workspace_id == workspace_id, ContactImport.id == import_id
        )
    )


async def add_chunk(session: AsyncSession, import_id: int, seq: int, data: bytes) -> None:
    await session.execute(sa.insert(ImportChunk).values(import_id=import_id, seq=seq, data=data))


async def chunk_seqs(session: AsyncSession, import_id: int) -> list[int]:
    rows = await session.scalars(
        sa.select(ImportChunk.seq).where(ImportChunk.import_id == import_id).order_by(ImportChunk.seq)
    )
    return list(rows)


async def get_chunk(session: AsyncSession, import_id: int, seq: int) -> bytes | None:
    """One chunk in memory at a time: the file may be gigabytes. None when it is not stored (yet)."""
    data = await session.scalar(
        sa.select(ImportChunk.data).where(ImportChunk.import_id == import_id, ImportChunk.seq == seq)
    )
    return None if data is None else bytes(data)


@dataclass(frozen=True, slots=True)
class UploadState:
    exists: bool  # a refused upload deletes its import
    complete: bool  # every chunk is stored: ``bytes_total`` is set once, after the last one


async def upload_state(session: AsyncSession, import_id: int) -> UploadState:
    found = (
        await session.execute(sa.select(ContactImport.bytes_total).where(ContactImport.id == import_id))
    ).first()
    return UploadState(exists=found is not None, complete=found is not None and found[0] is not None)


async def upload_received(session: AsyncSession, import_id: int, *, bytes_total: int, now: datetime) -> None:
    """The last chunk is stored. An import whose job already started on the first chunks stays running."""
    await session.execute(
        sa.update(ContactImport)
        .where(ContactImport.id == import_id)
        .values(
            bytes_total=bytes_total,
            state=sa.case((ContactImport.state == "receiving", "queued"), else_=ContactImport.state),
            heartbeat_at=now,
        )
    )


async def drop_chunks(session: AsyncSession, import_id: int) -> None:
    await session.execute(sa.delete(ImportChunk).where(ImportChunk.import_id == import_id))


async def claim(
    session: AsyncSession, import_id: int, attempt: int, *, now: datetime
) -> ContactImport | None:
    """Move a queued (or crashed, still running) import to running for this attempt.

    None when it is finished or a newer attempt was queued by the sweeper: that job gives way.
    """
    result = await session.execute(
        sa.update(ContactImport)
        .where(
            ContactImport.id == import_id,
            # receiving: started on the first chunks of an upload still arriving (see pipeline.imports)
            ContactImport.state.in_(("receiving", "queued", "running")),
            ContactImport.attempts == attempt,
        )
        .values(state="running", started_at=now, heartbeat_at=now, rows_done=0, bytes_done=0, error=None)
    )
    if not getattr(result, "rowcount", 0):
        return None
    return await session.get(ContactImport, import_id, populate_existing=True)


async def reset_staging(session: AsyncSession, import_id: int) -> None:
    """A re-run starts over: whatever an earlier attempt staged or rejected is thrown away."""
    await reset_staging_rows(session, import_id)
    await session.execute(sa.delete(ImportReject).where(ImportReject.import_id == import_id))


async def reset_staging_rows(session: AsyncSession, import_id: int) -> None:
    await session.execute(sa.delete(StagedContact).where(StagedContact.import_id == import_id))


async def fail_abandoned_uploads(session: AsyncSession, *, older_than: datetime, now: datetime) -> int:
    """An API process that died mid-upload leaves a ``receiving`` import behind: fail it, free its bytes."""
    ids = list(
        await session.scalars(
            sa.select(ContactImport.id).where(
                ContactImport.state == "receiving", ContactImport.created_at < older_than
            )
        )
    )
    for import_id in ids:
        await drop_chunks(session, import_id)
        await save_progress(
            session,
            import_id,
            state="failed",
            error="upload interrupted before it completed",
            finished_at=now,
        )
    return len(ids)


# Rows are encoded in the cleaning processes (see pipeline.cleaner.stage_block) and written here in bulk:
# COPY text lines on PostgreSQL, tuples for executemany elsewhere. Only the parent holds the connection.
# A COPY line is built whole with NUL between fields and a lone surrogate for NULL, then escaped with a few
# str.replace calls: decoded uploads hold neither character (NUL bytes are refused, strict codecs never
# yield surrogates), and whole-line C calls cost far less than per-field work (or a translate table, which
# looks up every character in a dict).
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_NULL = "\ud800"
_REJECT_COLUMNS = ("import_id", "row_number", "reason", "values")
_ZONES_JSON: dict[tuple[str, ...], str] = {}  # few distinct zone lists: one per region or area code


def encode_staged(import_id: int, accepted: tuple[Any, ...]) -> tuple[Any, ...]:
    """One staged row for SQLite's staging table (``accepted`` is a cleaner tuple: STAGE_COLUMNS without
    ``import_id``). PostgreSQL loads ``contacts`` directly (see storage.import_load)."""
    values = [import_id, *accepted]
    values[_ZONES] = zones_json(tuple(values[_ZONES]))
    values[_ATTRIBUTES] = json.dumps(values[_ATTRIBUTES], ensure_ascii=False)
    return tuple(values)


def zones_json(zones: tuple[str, ...]) -> str:
    found = _ZONES_JSON.get(zones)
    if found is None:
        if len(_ZONES_JSON) > 4096:
            _ZONES_JSON.clear()
        found = _ZONES_JSON[zones] = json.dumps(list(zones), ensure_ascii=False)
    return found


def encode_reject(import_id: int, line: int, reason: str, values: dict[str, str], *, copy: bool) -> Any:
    row = (import_id, line, reason, json.dumps(values, ensure_ascii=False))
    return copy_line(row) if copy else row


def copy_line(values: Sequence[Any]) -> str:
    fields = [
        _COPY_NULL if v is None else ("t" if v else "f") if isinstance(v, bool) else str(v) for v in values
    ]
    line = "\x00".join(fields)
    if _COPY_SPECIAL.search(line) is not None:
        line = line.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return line.replace("\x00", "\t").replace(_COPY_NULL, "\\N") + "\n"


async def add_rejects(session: AsyncSession, rows: Sequence[Any]) -> None:
    """Bulk-write rejects encoded by :func:`encode_reject`."""
    await _bulk(await session.connection(), "import_rejects", _REJECT_COLUMNS, rows)


async def _bulk(conn: AsyncConnection, table: str, columns: Sequence[str], rows: Sequence[Any]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        with io.BytesIO("".join(rows).encode()) as data:  # closed: see import_load._copy
            await driver.copy_to_table(table, source=data, columns=list(columns), format="text")
        return
    names = ", ".join(f'"{name}"' for name in columns)
    marks = ", ".join("?" for _ in columns)
    # through the connection (not its driver), which begins the transaction the caller commits
    await conn.exec_driver_sql(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(rows))  # noqa: S608


async def iter_rejects(
    session: AsyncSession, import_id: int, *, batch: int = 5000
) -> AsyncIterator[ImportReject]:
    after = 0
    while True:
        rows = list(
            await session.scalars(
                sa.select(ImportReject)
                .where(ImportReject.import_id == import_id, ImportReject.row_number > after)
                .order_by(ImportReject.row_number)
                .limit(batch)
            )
        )
        for row in rows:
            yield row
        if len(rows) < batch:
            return
        after = rows[-1].row_number


async def stale_imports(session: AsyncSession, *, older_than: datetime) -> list[ContactImport]:
    """Queued or running imports whose job shows no sign of life: lost with Redis, or its worker died."""
    last_seen = sa.func.coalesce(ContactImport.heartbeat_at, ContactImport.created_at)
    rows = await session.scalars(
        sa.select(ContactImport).where(ContactImport.state.in_(("queued", "running")), last_seen < older_than)
    )
    return list(rows)


async def next_attempt(session: AsyncSession, import_id: int, *, now: datetime) -> int:
    await session.execute(
        sa.update(ContactImport)
        # a job that finished since the sweeper looked keeps its outcome
        .where(ContactImport.id == import_id, ContactImport.state.in_(("queued", "running")))
        .values(attempts=ContactImport.attempts + 1, state="queued", heartbeat_at=now)
    )
    return int(
        await session.scalar(sa.select(ContactImport.attempts).where(ContactImport.id == import_id)) or 0
    )


async def finish(session: AsyncSession, import_id: int, attempt: int, **values: Any) -> bool:
    """Record an attempt's outcome, unless a newer attempt (queued by the sweeper while this one ran)
    or a finished one owns the import: False then, and the caller rolls its work back."""
    result = await session.execute(
        sa.update(ContactImport)
        .where(
            ContactImport.id == import_id,
            ContactImport.state == "running",
            ContactImport.attempts == attempt,
        )
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


async def save_progress(session: AsyncSession, import_id: int, **counters: Any) -> None:
    await session.execute(sa.update(ContactImport).where(ContactImport.id == import_id).values(**counters))


# SQLite only (see the module docstring). The table has the columns of ``import_rows`` without their types:
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
    await _bulk(conn, _STAGE, STAGE_COLUMNS, rows)


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


async def delete_import(session: AsyncSession, import_id: int) -> None:
    await drop_chunks(session, import_id)
    await session.execute(sa.delete(ContactImport).where(ContactImport.id == import_id))
