"""The import job on PostgreSQL: clean and write straight into the list in one long transaction.

No staging and no publish pass: each block is COPYed into ``contacts`` while the next ones are cleaned, and
the transaction commits together with the import's completion (see :mod:`dispatcher.storage.import_load`).
A worker killed mid-way loses its connection, PostgreSQL rolls the transaction back, and the sweeper's new
attempt starts over on an untouched list. Progress is saved through other sessions meanwhile, so the API
shows it while the rows themselves stay invisible.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.core.cleaning import FileDeduper
from dispatcher.pipeline.cleaner import Block, CleanOptions, ParallelCleaner, StagedBlock, StageTarget
from dispatcher.pipeline.context import WorkerResources
from dispatcher.pipeline.import_progress import SaveProgress, Tally
from dispatcher.storage import import_load as load
from dispatcher.storage import imports as store
from dispatcher.storage.contacts import ContactImport, ContactList
from dispatcher.storage.import_stage import PublishCounts

# suppressions stamped this long before the import began are re-checked too: stamps come from the clocks
# of API and worker processes, which may drift apart a little
CLOCK_MARGIN = timedelta(minutes=1)
Finish = Callable[[AsyncSession, PublishCounts], Awaitable[None]]


async def load_file(
    res: WorkerResources,
    job: ContactImport,
    blocks: AsyncIterator[Block],
    cleaner: ParallelCleaner,
    options: CleanOptions,
    tally: Tally,
    save_progress: SaveProgress,
    finish: Finish,
    every_s: float,
) -> PublishCounts:
    """Clean ``blocks`` into the list; ``finish`` runs inside the transaction just before it commits.

    A dry run rolls back and calls ``finish`` in a transaction of its own, so it reports exactly what a real
    run would have done.
    """
    now = datetime.now(UTC)
    target = load.LoadTarget(
        workspace_id=job.workspace_id,
        list_id=job.list_id,
        import_id=job.id,
        created_at=now.isoformat(),
        consent_source=job.consent_source,
    )
    stage_target = StageTarget(import_id=job.id, copy=True, contacts=target)
    counts = load.BlockCounts()
    deduper = FileDeduper()
    async with res.engine.connect() as conn, AsyncSession(bind=conn, expire_on_commit=False) as session:
        keeper = asyncio.create_task(_keep_saving(save_progress, every_s))
        try:
            driver = await _open_transaction(conn)
            state = await load.lock_list(driver, job.workspace_id, job.list_id)
            async with res.sessions.begin() as own:  # rejects an attempt that held the lock before wrote
                await store.reset_staging(own, job.id)
            async for _, block in cleaner.stage(blocks, options, stage_target):
                await _write(res, driver, target, state, block, deduper, tally, counts)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        late = await load.drop_late_suppressed(driver, target, now - CLOCK_MARGIN)
        counts.accepted -= late
        counts.suppressed += late
        tally.staged -= late
        tally.suppressed += late
        result = PublishCounts(counts.accepted, counts.duplicate_on_list, counts.suppressed)
        if job.dry_run:
            await conn.rollback()
            async with res.sessions.begin() as own:
                await finish(own, result)
            return result
        await session.execute(
            sa.update(ContactList)
            .where(ContactList.id == job.list_id)
            .values(contact_count=ContactList.contact_count + result.accepted, updated_at=now)
        )
        await finish(session, result)
        await conn.commit()
    return result


async def _open_transaction(conn: Any) -> Any:
    """The asyncpg connection under ``conn``, inside the transaction SQLAlchemy opened on it."""
    await conn.exec_driver_sql("SELECT 1")  # SQLAlchemy opens its asyncpg transaction on first use
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if not driver.is_in_transaction():  # pragma: no cover - a changed dialect would write outside it
        raise RuntimeError("the import's COPY would run outside its transaction")
    return driver


async def _write(
    res: WorkerResources,
    driver: Any,
    target: load.LoadTarget,
    state: load.ListState,
    block: StagedBlock,
    deduper: FileDeduper,
    tally: Tally,
    counts: load.BlockCounts,
) -> None:
    seen = deduper.seen_digest
    rows = [
        (line, key, phone, email, consent)
        for line, key, phone, email, consent, digest in zip(
            block.staged, block.keys, block.phones, block.emails, block.consents, block.digests, strict=True
        )
        if not seen(digest)
    ]
    tally.count_block(block, len(rows))
    written = await load.load_block(driver, target, state, rows)
    counts.accepted += written.accepted
    counts.duplicate_on_list += written.duplicate_on_list
    counts.suppressed += written.suppressed
    tally.staged += written.accepted
    tally.on_list += written.duplicate_on_list
    tally.suppressed += written.suppressed
    if block.rejects:  # outside the long transaction: a dry run keeps its rejects downloadable too
        async with res.sessions.begin() as session:
            await store.add_rejects(session, block.rejects)


async def _keep_saving(save_progress: SaveProgress, every_s: float) -> None:
    """Progress and heartbeat on a timer, also while the transaction waits for another import's lock."""
    while True:
        await save_progress()
        await asyncio.sleep(every_s)
