"""Import queries: the upload and its chunks, rejects, progress, attempts and cleanup.

SQLite's staging table and one-transaction publish are in :mod:`dispatcher.storage.import_stage`;
PostgreSQL's load straight into ``contacts`` in :mod:`dispatcher.storage.import_load`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.storage.bulk import bulk_write, copy_line
from dispatcher.storage.contacts import ContactImport, ImportReject
from dispatcher.storage.staging import ImportChunk, StagedContact


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


_REJECT_COLUMNS = ("import_id", "row_number", "reason", "values")


def encode_reject(import_id: int, line: int, reason: str, values: dict[str, str], *, copy: bool) -> Any:
    row = (import_id, line, reason, json.dumps(values, ensure_ascii=False))
    return copy_line(row) if copy else row


async def add_rejects(session: AsyncSession, rows: Sequence[Any]) -> None:
    """Bulk-write rejects encoded by :func:`encode_reject`."""
    await bulk_write(await session.connection(), "import_rejects", _REJECT_COLUMNS, rows)


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


async def delete_import(session: AsyncSession, import_id: int) -> None:
    await drop_chunks(session, import_id)
    await session.execute(sa.delete(ContactImport).where(ContactImport.id == import_id))
