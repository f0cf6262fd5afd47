"""Cleaning spread over every core, results in file order. Used by the import job and ``lists clean``.

Two ways in. ``clean`` takes batches of parsed rows and returns compact tuples. ``stage`` (the import job)
does more in the children, because on two cores every CPU-second the parent spends is taken from cleaning:
the parent only decodes the upload and cuts the text at record ends (:class:`RecordCutter`, which visits
only lines with a quote); each child parses its block, cleans it and returns the rows already encoded for
the database with their dedupe digests, so the parent is left with in-file dedupe (one table probe per row,
which must run in file order) and one bulk write per block. Each child keeps a :class:`CleaningCache`, so
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
from typing import Any, NamedTuple, TypeVar

from dispatcher.core.cleaning import CleanContact, CleaningCache, Rejection, classify_row
from dispatcher.core.cleaning_tally import key_digest
from dispatcher.core.csvdecode import Dialect, StreamDecoder, sniff_dialect
from dispatcher.core.csvinput import MAX_RECORD_CHARS, CsvStream, ParsedRow, _ends_in_quotes
from dispatcher.storage.imports import encode_reject, encode_staged

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
HEADER_BLOCK_CHARS = 8 * 1024
BLOCK_CHARS = 512 * 1024  # ~6,000 rows: few round trips, and still a few blocks in flight per child


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


class TextBlock(NamedTuple):
    """Whole records of a file after its header: what a child parses by itself."""

    header: tuple[str, ...]
    dialect: Dialect
    line: int  # physical line number of the block's first line
    text: str
    final: bool  # the end of the file: the last line may lack its line end, a quote may be left open


Block = TextBlock | list[ParsedRow]  # rows the parent parsed itself (the blocks up to the header)


@dataclass(frozen=True, slots=True)
class StageTarget:
    import_id: int
    copy: bool  # PostgreSQL COPY text lines; else tuples for executemany


@dataclass(slots=True)
class StagedBlock:
    rows: int
    staged: list[Any]  # accepted rows encoded for the database, in file order
    digests: array[int]  # their dedupe keys' digests (see :func:`key_digest`), same order
    rejects: list[Any]  # encoded for the database
    reasons: dict[str, int] = field(default_factory=dict)


def stage_block(block: Block, options: CleanOptions, target: StageTarget) -> StagedBlock:
    """Runs in a child: parse (when given text), clean, and encode for the staging tables."""
    rows = block if isinstance(block, list) else _parse_block(block)
    cleaned = clean_batch(rows, options)
    staged = [encode_staged(target.import_id, row, copy=target.copy) for row in cleaned.accepted]
    digests = array("Q", [key_digest(row[1]) for row in cleaned.accepted])
    rejects = [encode_reject(target.import_id, *row, copy=target.copy) for row in cleaned.rejected]
    reasons: dict[str, int] = {}
    for _, reason, _ in cleaned.rejected:
        reasons[reason] = reasons.get(reason, 0) + 1
    return StagedBlock(len(rows), staged, digests, rejects, reasons)


def _parse_block(block: TextBlock) -> list[ParsedRow]:
    """A fresh CsvStream put in the state the whole-file parse has at the block's start: same rows."""
    stream = CsvStream()
    stream.dialect, stream.header = block.dialect, block.header
    stream._line = block.line
    rows = stream._consume(block.text)
    if block.final:
        rows += stream.close()
    return rows


class RecordCutter:
    """Cuts an upload's decoded text into blocks of whole records, exactly where :class:`CsvStream` ends
    records, without parsing them: only lines holding a quote can open a multi-line record, so only those
    (and the lines of an open record) are looked at. Blocks before the header is known are parsed here.
    """

    def __init__(self, block_chars: int = BLOCK_CHARS) -> None:
        self.block_chars = block_chars
        self.dialect: Dialect | None = None
        self._decoder = StreamDecoder()
        self._probe = CsvStream()  # parses the blocks up to the header, then only holds it
        self._probe._decoder = self._decoder  # so its end-of-file errors count the bytes really read
        self._buf = ""  # text not handed out yet; starts at a record boundary
        self._scan = 0  # lines before this index are routed
        self._open = -1  # index of the first line of an open quoted record, or -1
        self._open_len = 0
        self._no_open_to = 0  # lines before this index were replayed after an unterminated quote
        self._line = 1  # physical line number of _buf[0]
        self._skipping = False  # dropping the rest of an over-long line

    @property
    def header(self) -> tuple[str, ...] | None:
        return self._probe.header

    def feed(self, chunk: bytes) -> list[Block]:
        return self._take(self._decoder.feed(chunk), final=False)

    def close(self) -> list[Block]:
        return self._take(self._decoder.close(), final=True)

    def _take(self, text: str, *, final: bool) -> list[Block]:
        if self.dialect is None:
            if not text and not final:
                return []
            self.dialect = self._probe.dialect = sniff_dialect(text, complete=final)
        self._append(text, self.dialect.newline)
        blocks: list[Block] = []
        while len(self._buf) >= self._size() and (cut := self._next_cut(self.dialect)) is not None:
            blocks.append(self._emit(cut, final=False))
        if final and (self._buf or self.header is None):
            blocks.append(self._emit(len(self._buf), final=True))
        return blocks

    def _append(self, text: str, newline: str) -> None:
        if self._skipping:
            end = text.find(newline)
            if end < 0:
                return
            text, self._skipping = text[end:], False
        self._buf += text
        tail = self._buf.rfind(newline) + 1
        if len(self._buf) - tail > MAX_RECORD_CHARS:
            # An over-long line: keep a quote-free stand-in the parser reports the same way, not the line.
            self._buf = self._buf[:tail] + "x" * (MAX_RECORD_CHARS + 1)
            self._skipping = True

    def _size(self) -> int:
        # Blocks are parsed here until the header is known: keep those small, this process has little CPU.
        return self.block_chars if self.header is not None else min(self.block_chars, HEADER_BLOCK_CHARS)

    def _next_cut(self, dialect: Dialect) -> int | None:
        buf, newline = self._buf, dialect.newline
        limit = buf.rfind(newline, self._scan, max(self._size(), self._scan + 1)) + 1
        if limit <= self._scan:
            limit = buf.find(newline, self._scan) + 1
        while limit > self._scan:
            self._route(limit, dialect)
            if self._open < 0:
                return limit
            limit = buf.find(newline, self._scan) + 1  # an open record: read on, a line at a time
        return None

    def _route(self, limit: int, dialect: Dialect) -> None:
        """Follow CsvStream._take_line's state changes for the lines in [_scan, limit)."""
        buf, newline, delimiter, pos = self._buf, dialect.newline, dialect.delimiter, self._scan
        while pos < limit:
            if self._open < 0:
                quote = buf.find('"', pos, limit)
                if quote < 0:
                    break
                start = buf.rfind(newline, pos, quote) + 1 or pos
                pos = buf.find(newline, quote, limit) + 1
                line = buf[start : pos - 1]
                opens = len(line) <= MAX_RECORD_CHARS and start >= self._no_open_to
                if opens and _ends_in_quotes(line, delimiter, in_quotes=False):
                    self._open, self._open_len = start, len(line)
                continue
            end = buf.find(newline, pos, limit)
            line, pos = buf[pos:end], end + 1
            if len(line) > MAX_RECORD_CHARS:
                self._open = -1  # reported as an unterminated quote, then this line as over-long
                continue
            self._open_len += len(line)
            if not _ends_in_quotes(line, delimiter, in_quotes=True):
                self._open = -1
            elif self._open_len > MAX_RECORD_CHARS:
                self._open, self._no_open_to = -1, pos  # the lines after its first are read again, plainly
        self._scan = limit

    def _emit(self, cut: int, *, final: bool) -> Block:
        assert self.dialect is not None
        text, self._buf = self._buf[:cut], self._buf[cut:]
        self._scan = max(0, self._scan - cut)
        self._no_open_to = max(0, self._no_open_to - cut)
        line, self._line = self._line, self._line + text.count(self.dialect.newline)
        if self.header is None:
            rows = self._probe._consume(text)
            return rows + self._probe.close() if final else rows
        return TextBlock(self.header, self.dialect, line, text, final)


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

    def clean(
        self, batches: AsyncIterator[list[ParsedRow]], options: CleanOptions
    ) -> AsyncIterator[tuple[list[ParsedRow], CleanedBatch]]:
        return self._map(clean_batch, batches, options)

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
