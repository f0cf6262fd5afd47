"""An import's running counts: saved as its progress while it runs, and as its result when it completes."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dispatcher.pipeline.cleaner import StagedBlock
from dispatcher.pipeline.context import WorkerResources
from dispatcher.storage import imports as store
from dispatcher.storage.contacts import ContactImport
from dispatcher.storage.import_stage import PublishCounts

SaveProgress = Callable[[], Awaitable[None]]


class Superseded(Exception):
    """A newer attempt owns the import (or one already finished it): this one's work is rolled back."""


@dataclass
class Tally:
    rows: int = 0
    staged: int = 0  # accepted so far: rows staged, or (PostgreSQL) written to the list
    rejected: int = 0
    duplicate: int = 0  # in the file; duplicates of the list's contacts are counted in on_list
    on_list: int = 0
    suppressed: int = 0
    bytes_done: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    last_saved: float = 0.0

    def count_block(self, block: StagedBlock, kept: int) -> None:
        """A cleaned block's rows, rejects and reasons; ``kept`` of its accepted rows were new to the file."""
        duplicates = len(block.staged) - kept
        if duplicates:
            self.duplicate += duplicates
            self.reasons["duplicate_in_file"] += duplicates
        self.reasons.update(block.reasons)
        self.rows += block.rows
        self.rejected += len(block.rejects)


async def save_progress(
    res: WorkerResources, job: ContactImport, tally: Tally, *, header: tuple[str, ...] | None
) -> None:
    tally.last_saved = time.monotonic()
    extra: dict[str, Any] = {"columns": list(header)} if header else {}
    async with res.sessions.begin() as session:
        await store.save_progress(
            session,
            job.id,
            rows_done=tally.rows,
            accepted=tally.staged,
            rejected=tally.rejected,
            duplicate=tally.duplicate + tally.on_list,
            suppressed=tally.suppressed,
            bytes_done=tally.bytes_done,
            reasons=dict(tally.reasons),
            heartbeat_at=datetime.now(UTC),
            **extra,
        )


async def complete(
    session: AsyncSession,
    job: ContactImport,
    tally: Tally,
    counts: PublishCounts,
    *,
    header: tuple[str, ...] | None,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    final = final_counts(tally, counts)
    extra: dict[str, Any] = {"columns": list(header)} if header else {}
    values = dict(state="completed", finished_at=now, heartbeat_at=now, **final, **extra)
    if not await store.finish(session, job.id, job.attempts, **values):
        raise Superseded
    await store.drop_chunks(session, job.id)
    return final


def final_counts(tally: Tally, counts: PublishCounts) -> dict[str, Any]:
    reasons = dict(tally.reasons)
    if counts.duplicate_on_list:
        reasons["duplicate_on_list"] = counts.duplicate_on_list
    if counts.suppressed:
        reasons["suppressed"] = counts.suppressed
    return {
        "rows_done": tally.rows,
        "accepted": counts.accepted,
        "rejected": tally.rejected,
        "duplicate": tally.duplicate + counts.duplicate_on_list,
        "suppressed": counts.suppressed,
        "reasons": reasons,
    }
