"""Cleaning spread over every core, results in file order. Used by the import job and ``lists clean``.

Two ways in. ``clean`` takes batches of parsed rows and returns compact tuples. ``stage`` (the import job)
does more in the children, because on two cores every CPU-second the parent spends is taken from cleaning:
the parent only decodes the upload and cuts the text at record ends (:class:`RecordCutter`, in
:mod:`.cleaner_blocks`); each child parses its block, cleans it and returns the rows already encoded for
the database with their dedupe digests, so the parent is left with in-file dedupe (one table probe per row,
which must run in file order) and one bulk write per block. ``clean_blocks`` (``lists clean``) is the
same without the database: the children return digests and counts, and the rows only for output files.
Each child keeps a :class:`CleaningCache`, so
values that repeat across a file (a shared office line, a re-upload) are cleaned once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from array import array
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dispatcher.core.cleaning import CleanContact, CleaningCache, Rejection, classify_row
from dispatcher.core.cleaning_tally import key_digest
from dispatcher.core.csvinput import ParsedRow
from dispatcher.pipeline.cleaner_blocks import BLOCK_CHARS, Block, RecordCutter, TextBlock, parse_block
from dispatcher.storage.import_load import LoadTarget, encode_consents, encode_contact
from dispatcher.storage.import_stage import encode_staged
from dispatcher.storage.imports import encode_reject

__all__ = [
    "BLOCK_CHARS",
    "Block",
    "CleanOptions",
    "CleanedBatch",
    "CleanedBlock",
    "ParallelCleaner",
    "RecordCutter",
    "StageTarget",
    "StagedBlock",
    "TextBlock",
    "clean_batch",
    "clean_block",
    "stage_block",
]

T = TypeVar("T")
R = TypeVar("R")

# (line, dedupe_key, phone, phone_type, phone_region, time_zones, sms_capable, email, first, last, tz, attrs)
Accepted = tuple[
    int,
    str,
    str | None,
    str | None,
    str | None,
    list[str],
    bool,
    str | None,
    str | None,
    str | None,
    str | None,
    dict[str, str],
]
# (line, reason, original values)
Rejected = tuple[int, str, dict[str, str]]
BATCH_ROWS = 2000


@dataclass(frozen=True, slots=True)
class CleanOptions:
    default_region: str | None
    channels: frozenset[str] | None = None
    check_deliverability: bool = False


@dataclass(frozen=True, slots=True)
class CleanedBatch:
    accepted: list[Accepted]
    rejected: list[Rejected]
    warnings: dict[str, int]


_CACHE: CleaningCache | None = None


def clean_batch(rows: Sequence[ParsedRow], options: CleanOptions) -> CleanedBatch:
    """Runs in a child process (or inline when there is one core)."""
    global _CACHE
    if _CACHE is None:
        _CACHE = CleaningCache()
    accepted: list[Accepted] = []
    rejected: list[Rejected] = []
    warnings: dict[str, int] = {}
    for row in rows:
        if row.values is None:
            problem = row.rejection()
            rejected.append((row.line, problem.reason.value if problem else "malformed_row", _raw(row)))
            continue
        outcome = classify_row(
            row.values,
            default_region=options.default_region,
            channels=options.channels,
            check_deliverability=options.check_deliverability,
            cache=_CACHE,
        )
        if isinstance(outcome, Rejection):
            rejected.append((row.line, outcome.reason.value, row.values))
        else:
            accepted.append(_compact(row.line, outcome))
            for warning in outcome.warnings:
                warnings[warning.reason] = warnings.get(warning.reason, 0) + 1
    return CleanedBatch(accepted, rejected, warnings)


def _raw(row: ParsedRow) -> dict[str, str]:
    return {str(i + 1): value for i, value in enumerate(row.raw)}


def _compact(line: int, c: CleanContact) -> Accepted:
    phone = c.phone
    return (
        line,
        c.dedupe_key,
        phone.e164 if phone else None,
        phone.number_type if phone else None,
        phone.region if phone else None,
        list(phone.time_zones) if phone else [],
        c.sms_capable,
        c.email.normalized if c.email else None,
        c.first_name,
        c.last_name,
        c.timezone,
        dict(c.attributes),
    )


@dataclass(frozen=True, slots=True)
class StageTarget:
    import_id: int
    copy: bool  # PostgreSQL COPY text lines; else tuples for executemany
    contacts: LoadTarget | None = None  # encode for ``contacts`` itself (see storage.import_load)


@dataclass(slots=True)
class StagedBlock:
    rows: int
    staged: list[Any]  # accepted rows encoded for the database, in file order
    digests: array[int]  # their dedupe keys' digests (see :func:`key_digest`), same order
    rejects: list[Any]  # encoded for the database
    reasons: dict[str, int] = field(default_factory=dict)
    # With a ``contacts`` target, per staged row: what the parent checks before it writes the row.
    keys: list[str] = field(default_factory=list)
    phones: list[str | None] = field(default_factory=list)
    emails: list[str | None] = field(default_factory=list)
    consents: list[str] = field(default_factory=list)  # COPY lines of its consent records, or ""


@dataclass(slots=True)
class CleanedBlock:
    """A block cleaned in a child for ``lists clean``: the parent only dedupes digests and counts."""

    rows: int
    digests: array[int]  # of the accepted rows' dedupe keys, in file order
    reasons: dict[str, int]  # of the rejected rows
    warnings: dict[str, int]
    accepted: list[Accepted]  # the rows themselves only when asked for (an output file)
    rejected: list[Rejected]


def clean_block(block: Block, options: CleanOptions, keep_rows: bool) -> CleanedBlock:
    """Runs in a child: parse (when given text) and clean."""
    rows = block if isinstance(block, list) else parse_block(block)
    cleaned = clean_batch(rows, options)
    reasons: dict[str, int] = {}
    for _, reason, _ in cleaned.rejected:
        reasons[reason] = reasons.get(reason, 0) + 1
    return CleanedBlock(
        len(rows),
        array("Q", [key_digest(row[1]) for row in cleaned.accepted]),
        reasons,
        cleaned.warnings,
        cleaned.accepted if keep_rows else [],
        cleaned.rejected if keep_rows else [],
    )


def stage_block(block: Block, options: CleanOptions, target: StageTarget) -> StagedBlock:
    """Runs in a child: parse (when given text), clean, and encode for the staging tables."""
    rows = block if isinstance(block, list) else parse_block(block)
    cleaned = clean_batch(rows, options)
    accepted = cleaned.accepted
    digests = array("Q", [key_digest(row[1]) for row in accepted])
    rejects = [encode_reject(target.import_id, *row, copy=target.copy) for row in cleaned.rejected]
    reasons: dict[str, int] = {}
    for _, reason, _ in cleaned.rejected:
        reasons[reason] = reasons.get(reason, 0) + 1
    load = target.contacts
    if load is None:
        staged = [encode_staged(target.import_id, row) for row in accepted]
        return StagedBlock(len(rows), staged, digests, rejects, reasons)
    return StagedBlock(
        len(rows),
        [encode_contact(load, row) for row in accepted],
        digests,
        rejects,
        reasons,
        keys=[row[1] for row in accepted],
        phones=[row[2] for row in accepted],
        emails=[row[7] for row in accepted],
        consents=[encode_consents(load, row[2], row[7]) for row in accepted],
    )


def _warm_child() -> None:
    classify_row({"phone": "+1 415 555 2671", "email": "ann@example.com"}, default_region="US")


class ParallelCleaner:
    """A process pool sized to the machine; keeps a few batches in flight and yields results in order."""

    def __init__(self, processes: int | None = None) -> None:
        # 0 cleans inline in this process (tests, one-core machines); None uses every core.
        self.processes = max(1, os.cpu_count() or 1) if processes is None else max(0, processes)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the parent runs an event loop and database connections.
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def warm_up(self) -> None:
        """Start every child now (interpreter, imports, phone metadata: a second or two of CPU each), so the
        first blocks do not wait for them; a no-op once the pool runs."""
        if self.processes == 0 or self._pool is not None:
            return
        pool = self._executor()
        for _ in range(self.processes):
            pool.submit(_warm_child)  # each submit starts one more child while none is idle

    def clean(
        self, batches: AsyncIterator[list[ParsedRow]], options: CleanOptions
    ) -> AsyncIterator[tuple[list[ParsedRow], CleanedBatch]]:
        return self._map(clean_batch, batches, options)

    def clean_blocks(
        self, blocks: AsyncIterator[Block], options: CleanOptions, *, keep_rows: bool
    ) -> AsyncIterator[tuple[Block, CleanedBlock]]:
        """Parse and clean whole blocks of records in the children: the parent only cuts the text."""
        return self._map(clean_block, blocks, options, keep_rows)

    def stage(
        self, blocks: AsyncIterator[Block], options: CleanOptions, target: StageTarget
    ) -> AsyncIterator[tuple[Block, StagedBlock]]:
        """Parse, clean and encode whole blocks of records in the children (see :mod:`.cleaner_blocks`)."""
        return self._map(stage_block, blocks, options, target)

    async def _map(
        self, work: Callable[..., R], items: AsyncIterator[T], *args: Any
    ) -> AsyncIterator[tuple[T, R]]:
        if self.processes == 0:
            async for item in items:
                yield item, work(item, *args)
            return
        loop = asyncio.get_running_loop()
        pool = self._executor()
        in_flight: deque[tuple[T, asyncio.Future[R]]] = deque()
        async for item in items:
            in_flight.append((item, loop.run_in_executor(pool, work, item, *args)))
            if len(in_flight) > self.processes * 2:
                done, future = in_flight.popleft()
                yield done, await future
        for done, future in in_flight:
            yield done, await future

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def batched(rows: Iterable[ParsedRow], size: int = BATCH_ROWS) -> Iterable[list[ParsedRow]]:
    batch: list[ParsedRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def as_dict(values: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(values).items()}
