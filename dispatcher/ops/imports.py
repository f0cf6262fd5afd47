"""Receiving an upload: stream it into the database, check its head at once, then queue the import job.

The bytes go to the database (not local disk) so any worker on any machine can process them. A file whose
head is already wrong (undecodable, no header, no phone/e-mail column) is refused with a 4xx before the
202, and nothing of it stays behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatcher.core.csvinput import CsvStream
from dispatcher.errors import CsvFormatError, InputError, NotFoundError, PayloadTooLargeError
from dispatcher.logs import get_logger
from dispatcher.pipeline.imports import import_job_id
from dispatcher.storage import imports as store
from dispatcher.storage import lists as list_store
from dispatcher.storage.contacts import ContactImport

log = get_logger(__name__)
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ImportOptions:
    default_region: str | None = None
    dry_run: bool = False
    consent_source: str | None = None
    channels: tuple[str, ...] = ()
    check_deliverability: bool = False
    filename: str | None = None


async def receive_upload(
    sessions: async_sessionmaker[AsyncSession],
    queue: ArqRedis,
    *,
    workspace_id: int,
    list_id: int,
    options: ImportOptions,
    body: AsyncIterator[bytes],
    max_bytes: int,
    queue_name: str,
) -> ContactImport:
    """Store the upload chunk by chunk; the job is queued once the first chunk passed the probe, so that a
    big file is cleaned while the rest of it still arrives (the job reads chunks as they are stored and
    commits nothing before the last one). A one-chunk file is queued once it is complete."""
    job = await _create(sessions, workspace_id, list_id, options)

    async def start() -> None:
        await _enqueue(queue, job.id, queue_name)

    try:
        total, started = await _store_body(sessions, job.id, body, max_bytes, start)
    except BaseException:
        async with sessions.begin() as session:  # nothing of a refused upload stays behind
            await store.delete_import(session, job.id)  # a job already started sees it gone and gives up
        raise
    async with sessions.begin() as session:
        await store.upload_received(session, job.id, bytes_total=total, now=datetime.now(UTC))
        found = await store.get_import(session, workspace_id, job.id)
    assert found is not None
    if not started:
        await _enqueue(queue, job.id, queue_name)
    return found


async def _enqueue(queue: ArqRedis, import_id: int, queue_name: str) -> None:
    try:
        await queue.enqueue_job(
            "run_import", import_id, 0, _job_id=import_job_id(import_id, 0), _queue_name=queue_name
        )
    except Exception as exc:  # the sweeper queues it once Redis is back; the upload is safe in the database
        log.warning("import.enqueue_failed", import_id=import_id, error=type(exc).__name__)


async def _create(
    sessions: async_sessionmaker[AsyncSession], workspace_id: int, list_id: int, options: ImportOptions
) -> ContactImport:
    async with sessions.begin() as session:
        target = await list_store.get_list(session, workspace_id, list_id)
        if target is None:
            raise NotFoundError(f"list {list_id} not found")
        region = options.default_region or target.default_region
        return await store.add_import(
            session,
            workspace_id=workspace_id,
            list_id=list_id,
            state="receiving",
            dry_run=options.dry_run,
            default_region=region.upper() if region else None,
            consent_source=options.consent_source,
            filename=options.filename,
            options={
                "channels": list(options.channels),
                "check_deliverability": options.check_deliverability,
            },
            created_at=datetime.now(UTC),
        )


async def _store_body(
    sessions: async_sessionmaker[AsyncSession],
    import_id: int,
    body: AsyncIterator[bytes],
    max_bytes: int,
    start: Callable[[], Awaitable[None]],
) -> tuple[int, bool]:
    """Bytes stored, and whether ``start`` was called (after the first of several chunks)."""
    probe = CsvStream()  # parses only the first chunk, to refuse a hopeless file before answering 202
    buffer = bytearray()
    total = seq = 0
    async for piece in body:
        total += len(piece)
        if total > max_bytes:
            raise PayloadTooLargeError(f"upload is over the {max_bytes}-byte limit")
        buffer += piece
        if len(buffer) >= CHUNK_BYTES:
            seq = await _flush(sessions, import_id, seq, bytes(buffer), probe if seq == 0 else None)
            buffer.clear()
            if seq == 1:
                await start()
    if buffer or seq == 0:
        await _flush(sessions, import_id, seq, bytes(buffer), probe if seq == 0 else None, last=True)
    if total == 0:
        raise CsvFormatError("empty file")
    return total, seq > 0


async def _flush(
    sessions: async_sessionmaker[AsyncSession],
    import_id: int,
    seq: int,
    data: bytes,
    probe: CsvStream | None,
    *,
    last: bool = False,
) -> int:
    if probe is not None:
        probe.feed(data)
        if last:
            probe.close()
        elif probe.header is None:
            raise CsvFormatError("no header row in the first megabyte of the file")
    async with sessions.begin() as session:
        await store.add_chunk(session, import_id, seq, data)
    return seq + 1


def parse_channels(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    channels = tuple(sorted({c.strip().lower() for c in raw.split(",") if c.strip()}))
    unknown = [c for c in channels if c not in {"sms", "email"}]
    if unknown:
        raise InputError(f"unknown channel(s): {', '.join(unknown)}; use sms and/or email")
    return channels
