"""The import job: stream the stored upload, clean on every core, write the list in one transaction.

On PostgreSQL the cleaned blocks go straight into the list inside one transaction that commits with the
import's completion (:mod:`dispatcher.pipeline.import_load`): no publish pass after the cleaning. On
SQLite, which has one writer at a time, rows are staged in the job's own temporary table, then published
in one transaction at the end (:mod:`dispatcher.pipeline.import_publish`). Either way a crash before the
commit leaves the list untouched; the sweeper queues a new attempt, which throws away what the dead one
wrote (rejects) and starts over. ``attempt`` makes a stale job give way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.errors import CsvFormatError
from dispatcher.logs import get_logger
from dispatcher.pipeline.cleaner import Block, CleanOptions, ParallelCleaner, RecordCutter
from dispatcher.pipeline.context import WorkerResources, queue, resources
from dispatcher.pipeline.import_load import load_file
from dispatcher.pipeline.import_progress import Superseded, Tally, complete, save_progress
from dispatcher.pipeline.import_publish import publish, stage_file, staging_connection
from dispatcher.pipeline.queue import job_id
from dispatcher.storage import import_stage
from dispatcher.storage import imports as store
from dispatcher.storage.contacts import ContactImport

log = get_logger(__name__)
PROGRESS_EVERY_S = 0.5
STALE_AFTER = timedelta(minutes=2)
ABANDONED_UPLOAD_AFTER = timedelta(hours=1)
UPLOAD_STALLED_AFTER_S = ABANDONED_UPLOAD_AFTER.total_seconds()  # no new chunk for that long: give up
UPLOAD_POLL_S = 0.05  # while the upload is still arriving: a chunk is stored about every 20–50 ms


class UploadRefused(Exception):
    """The API refused the upload after its job had started on the first chunks: there is nothing to do."""


IMPORT_TIMEOUT_S = 6 * 3600


def import_job_id(import_id: int, attempt: int) -> str:
    return job_id("import", import_id, attempt)


async def run_import(ctx: dict[str, Any], import_id: int, attempt: int) -> dict[str, Any]:
    res = resources(ctx)
    async with res.sessions.begin() as session:
        job = await store.claim(session, import_id, attempt, now=datetime.now(UTC))
        if job is None:
            return {"skipped": "finished or superseded"}
        await store.reset_staging(session, import_id)
    _cleaner(res).warm_up()  # the children start while the first chunks are read (or still arrive)
    try:
        if res.engine.dialect.name == "postgresql":
            return await _load_file(res, job)
        return await _stage_and_publish(res, job)
    except CsvFormatError as exc:
        await _finish_failed(res, job, exc.message)
        return {"failed": exc.message}
    except UploadRefused:
        await _drop_leftovers(res, job.id)
        log.info("import.upload_refused", import_id=job.id)
        return {"skipped": "upload refused"}
    except Superseded:
        log.info("import.superseded", import_id=job.id, attempt=job.attempts)
        return {"skipped": "superseded"}
    except Exception:
        if await _upload_exists(res, job.id):
            raise
        # the API refused the upload while a block was written (its rejects then break the foreign key)
        await _drop_leftovers(res, job.id)
        return {"skipped": "upload refused"}


def _options(job: ContactImport) -> CleanOptions:
    channels = job.options.get("channels")
    return CleanOptions(
        default_region=job.default_region,
        channels=frozenset(channels) if channels else None,
        check_deliverability=bool(job.options.get("check_deliverability", False)),
    )


async def _blocks(
    res: WorkerResources, job: ContactImport, cutter: RecordCutter, tally: Tally
) -> AsyncIterator[Block]:
    async for chunk in _chunks(res, job, cutter, tally):
        tally.bytes_done += len(chunk)
        for block in cutter.feed(chunk):
            yield block
    for block in cutter.close():
        yield block


async def _chunks(
    res: WorkerResources, job: ContactImport, cutter: RecordCutter, tally: Tally
) -> AsyncIterator[bytes]:
    """The upload's chunks in order, also while the API still stores them: the job is queued after the
    first one. The state is read before the chunk: every chunk is committed before the upload is marked
    complete, so a chunk missing after a complete state is really the end."""
    seq, waiting_since = 0, time.monotonic()
    while True:
        async with res.sessions() as session:
            upload = await store.upload_state(session, job.id)
            chunk = await store.get_chunk(session, job.id, seq)
        if chunk is not None:
            seq, waiting_since = seq + 1, time.monotonic()
            yield chunk
        elif not upload.exists:
            raise UploadRefused  # the API refused the rest of the upload (413, broken connection)
        elif upload.complete:
            return
        elif time.monotonic() - waiting_since > UPLOAD_STALLED_AFTER_S:
            raise CsvFormatError("upload interrupted before it completed")
        else:
            if time.monotonic() - tally.last_saved > PROGRESS_EVERY_S:
                await save_progress(res, job, tally, header=cutter.header)  # the heartbeat, meanwhile
            await asyncio.sleep(UPLOAD_POLL_S)


async def _upload_exists(res: WorkerResources, import_id: int) -> bool:
    async with res.sessions() as session:
        return (await store.upload_state(session, import_id)).exists


async def _drop_leftovers(res: WorkerResources, import_id: int) -> None:
    """Rows this job staged or rejected after the API deleted the refused upload (the PostgreSQL
    transaction is already rolled back; SQLite stages in short transactions)."""
    async with res.sessions.begin() as session:
        await store.reset_staging(session, import_id)


async def _load_file(res: WorkerResources, job: ContactImport) -> dict[str, Any]:
    """PostgreSQL: straight into the list in one transaction that commits with the completion."""
    tally = Tally()
    cutter = RecordCutter()
    final: dict[str, Any] = {}

    async def save() -> None:
        await save_progress(res, job, tally, header=cutter.header)

    async def finish(session: AsyncSession, counts: import_stage.PublishCounts) -> None:
        final.update(await complete(session, job, tally, counts, header=cutter.header))

    counts = await load_file(
        res,
        job,
        _blocks(res, job, cutter, tally),
        _cleaner(res),
        _options(job),
        tally,
        save,
        finish,
        PROGRESS_EVERY_S,
    )
    log.info("import.completed", import_id=job.id, rows=tally.rows, accepted=counts.accepted)
    return final


async def _stage_and_publish(res: WorkerResources, job: ContactImport) -> dict[str, Any]:
    """SQLite: the rows wait in the job's own staging table, then go into the list in one transaction."""
    tally = Tally()
    cutter = RecordCutter()

    async def save() -> None:
        await save_progress(res, job, tally, header=cutter.header)

    async with staging_connection(res) as conn:
        blocks = _blocks(res, job, cutter, tally)
        await stage_file(res, job, conn, blocks, _cleaner(res), _options(job), tally, save, PROGRESS_EVERY_S)
        return await publish(res, job, tally, conn)


async def _finish_failed(res: WorkerResources, job: ContactImport, message: str) -> None:
    now = datetime.now(UTC)
    values = dict(state="failed", error=message, finished_at=now, heartbeat_at=now)
    async with res.sessions.begin() as session:
        if not await store.finish(session, job.id, job.attempts, **values):
            return  # a newer attempt owns the import, or one already finished it: leave its chunks
        await store.reset_staging_rows(session, job.id)
        await store.drop_chunks(session, job.id)
    log.info("import.failed", import_id=job.id, error=message)


def _cleaner(res: WorkerResources) -> ParallelCleaner:
    if res.cleaner is None:
        res.cleaner = ParallelCleaner(res.settings.clean_processes)
    return res.cleaner


async def sweep_imports(ctx: dict[str, Any]) -> dict[str, int]:
    """Re-queue imports whose job vanished (Redis restart, dead worker); fail uploads abandoned mid-way."""
    res = resources(ctx)
    now = datetime.now(UTC)
    requeued = 0
    async with res.sessions.begin() as session:
        stale = await store.stale_imports(session, older_than=now - STALE_AFTER)
        attempts = [(job.id, await store.next_attempt(session, job.id, now=now)) for job in stale]
        abandoned = await store.fail_abandoned_uploads(
            session, older_than=now - ABANDONED_UPLOAD_AFTER, now=now
        )
    for import_id, attempt in attempts:
        found = await queue(ctx).enqueue_job(
            "run_import",
            import_id,
            attempt,
            _job_id=import_job_id(import_id, attempt),
            _queue_name=res.settings.queue_name,
        )
        requeued += found is not None
    return {"requeued": requeued, "abandoned_uploads": abandoned}
