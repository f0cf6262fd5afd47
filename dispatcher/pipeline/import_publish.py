"""The import job on SQLite: stage the cleaned rows, then publish them into the list in one transaction.

SQLite has one writer at a time, so a long write transaction would block every other writer (and the
progress the API shows): the rows are staged in a temporary table of the job's own connection, which takes
no lock on the database file (see :mod:`dispatcher.storage.import_stage`), then published in one
transaction that also marks the import completed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from dispatcher.core.cleaning import FileDeduper
from dispatcher.logs import get_logger
from dispatcher.pipeline.cleaner import Block, CleanOptions, ParallelCleaner, StagedBlock, StageTarget
from dispatcher.pipeline.context import WorkerResources
from dispatcher.pipeline.import_progress import SaveProgress, Tally, complete
from dispatcher.storage import import_stage
from dispatcher.storage import imports as store
from dispatcher.storage.contacts import ContactImport

log = get_logger(__name__)


@contextlib.asynccontextmanager
async def staging_connection(res: WorkerResources) -> AsyncIterator[AsyncConnection]:
    """SQLite: one connection for the whole import, its temporary table holding the staged rows.

    Closed afterwards, whatever happened: that deletes the table's file at once (no page-by-page DROP),
    frees the page cache the publish grew, and rolls back anything left uncommitted.
    """
    async with res.engine.connect() as conn:
        try:
            await import_stage.open_stage(conn)
            yield conn
        finally:
            await conn.invalidate()


async def stage_file(
    res: WorkerResources,
    job: ContactImport,
    conn: AsyncConnection,
    blocks: AsyncIterator[Block],
    cleaner: ParallelCleaner,
    options: CleanOptions,
    tally: Tally,
    save: SaveProgress,
    every_s: float,
) -> None:
    """Clean ``blocks`` into the connection's staging table, saving progress every ``every_s``."""
    deduper = FileDeduper()
    target = StageTarget(import_id=job.id, copy=False)
    async for _, staged in cleaner.stage(blocks, options, target):
        await _write_block(res, conn, staged, deduper, tally)
        if time.monotonic() - tally.last_saved > every_s:
            await save()
    await save()


async def _write_block(
    res: WorkerResources, conn: AsyncConnection, block: StagedBlock, deduper: FileDeduper, tally: Tally
) -> None:
    seen = deduper.seen_digest
    kept = [row for row, digest in zip(block.staged, block.digests, strict=True) if not seen(digest)]
    tally.count_block(block, len(kept))
    tally.staged += len(kept)
    await import_stage.stage(conn, kept)
    await conn.commit()
    if block.rejects:
        async with res.sessions.begin() as session:
            await store.add_rejects(session, block.rejects)


async def publish(
    res: WorkerResources, job: ContactImport, tally: Tally, conn: AsyncConnection
) -> dict[str, Any]:
    """Publish and mark completed in one transaction: a crash between the two would otherwise re-run an
    import whose contacts are already on the list, and report them all as duplicates."""
    now = datetime.now(UTC)
    await import_stage.begin_publish(conn)
    async with AsyncSession(bind=conn, expire_on_commit=False) as session:
        counts = await import_stage.publish_stage(session, job, now=now, consent_source=job.consent_source)
        if not job.dry_run:
            # Superseded: the connection is closed without a commit, which rolls the publish back
            final = await complete(session, job, tally, counts, header=None)
            await conn.commit()
    if job.dry_run:
        await conn.rollback()  # a dry run reports exactly what a real run would do, then writes nothing
        async with res.sessions.begin() as own:
            final = await complete(own, job, tally, counts, header=None)
    log.info("import.completed", import_id=job.id, rows=tally.rows, accepted=counts.accepted)
    return final
