"""Offline cleaning of a contact file (``dispatcher lists clean``): the import pipeline minus the database.

Marketers run it before an upload to see what an import would keep. It reads the file in chunks through
the same :class:`~dispatcher.pipeline.cleaner.RecordCutter` and cleans on every core with the same
:class:`~dispatcher.pipeline.cleaner.ParallelCleaner` as the import job, so both give the same buckets,
except that nothing is ever ``suppressed`` or a duplicate of a contact already on a list: those need the
workspace's data, which only an upload sees.

Output files are written beside their target under a temporary name and renamed at the end, so a file
that turns out malformed half-way (or a Ctrl-C) leaves no half-written cleaned file behind.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dispatcher.core.cleaning import Buckets, ColumnMap, FileDeduper, RejectReason
from dispatcher.core.csvsafe import safe_cell
from dispatcher.pipeline.cleaner import (
    Accepted,
    Block,
    CleanedBlock,
    CleanOptions,
    ParallelCleaner,
    RecordCutter,
)

__all__ = ["CHUNK_BYTES", "OUT_COLUMNS", "CleanFileOptions", "CleanFileReport", "clean_file"]

CHUNK_BYTES = 1 << 20
OUT_COLUMNS = (
    "phone",
    "phone_type",
    "phone_region",
    "time_zones",
    "sms_capable",
    "email",
    "first_name",
    "last_name",
    "timezone",
)
DUPLICATE_IN_FILE = "duplicate_in_file"  # the reason code the import job reports for the same rows


@dataclass(frozen=True, slots=True)
class CleanFileOptions:
    default_region: str | None = None
    channels: frozenset[str] | None = None
    processes: int | None = None  # None: one per core; 0: clean inline (tests, tiny files)


@dataclass(slots=True)
class CleanFileReport:
    """Where the rows went. ``rows`` is counted from the parser, independently of the buckets."""

    rows: int = 0
    buckets: Buckets = field(default_factory=Buckets)
    warnings: Counter[str] = field(default_factory=Counter)
    bytes_read: int = 0
    seconds: float = 0.0
    encoding: str | None = None
    delimiter: str | None = None

    def as_dict(self) -> dict[str, Any]:
        body = self.buckets.as_dict()
        body["rows"] = self.rows
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        body.update(
            warnings=dict(sorted(self.warnings.items())),
            encoding=self.encoding,
            delimiter=self.delimiter,
            bytes=self.bytes_read,
            seconds=round(self.seconds, 3),
            rows_per_second=round(rate, 1),
        )
        return body


class _CsvSink:
    """A CSV written under a temporary name beside ``target`` and renamed over it on :meth:`commit`."""

    def __init__(self, target: Path) -> None:
        self.target = target
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        self._temp = Path(name)
        self._file: IO[str] = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self._file)

    def commit(self) -> None:
        self._file.close()
        os.replace(self._temp, self.target)

    def discard(self) -> None:
        self._file.close()
        self._temp.unlink(missing_ok=True)


@contextmanager
def _sink(target: Path | None) -> Iterator[_CsvSink | None]:
    if target is None:
        yield None
        return
    sink = _CsvSink(target)
    try:
        yield sink
    except BaseException:
        sink.discard()
        raise
    sink.commit()


class _Outputs:
    """The cleaned and rejects files; their headers are written once the CSV header is known."""

    def __init__(self, out: _CsvSink | None, rejects: _CsvSink | None) -> None:
        self.out, self.rejects = out, rejects
        self.wanted = out is not None or rejects is not None
        self.columns: tuple[str, ...] | None = None
        self.attributes: tuple[str, ...] = ()

    def start(self, header: tuple[str, ...] | None) -> None:
        if self.columns is not None or header is None:
            return
        self.columns = tuple(name for name in header if name)
        self.attributes = tuple(name for name in ColumnMap.from_header(self.columns).attributes if name)
        if self.out is not None:
            self.out.writer.writerow([*OUT_COLUMNS, *self.attributes])
        if self.rejects is not None:
            self.rejects.writer.writerow(["row_number", "reason", *self.columns])

    def accepted(self, row: Accepted) -> None:
        if self.out is None:
            return
        _line, _key, phone, kind, region, zones, sms, email, first, last, zone, attrs = row
        fixed = [phone, kind, region, " ".join(zones), "true" if sms else "false", email, first, last, zone]
        self.out.writer.writerow([*(v or "" for v in fixed), *(attrs.get(a, "") for a in self.attributes)])

    def rejected(self, line: int, reason: str, values: dict[str, str]) -> None:
        if self.rejects is None:
            return
        if reason == RejectReason.MALFORMED_ROW:  # its fields are kept by position ("1", "2", …)
            cells = [values[key] for key in sorted(values, key=int)]
        else:
            cells = [values.get(name, "") for name in self.columns or ()]
        self.rejects.writer.writerow([line, reason, *map(safe_cell, cells)])


async def _blocks(
    path: Path, cutter: RecordCutter, report: CleanFileReport, on_progress: Callable[[int], None] | None
) -> AsyncIterator[Block]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            report.bytes_read += len(chunk)
            if on_progress is not None:
                on_progress(len(chunk))
            for block in cutter.feed(chunk):
                yield block
    for block in cutter.close():
        yield block


def _tally(report: CleanFileReport, cleaned: CleanedBlock, deduper: FileDeduper, outputs: _Outputs) -> None:
    report.rows += cleaned.rows
    buckets = report.buckets
    seen = deduper.seen_digest
    duplicates = 0
    if outputs.wanted:
        for accepted, digest in zip(cleaned.accepted, cleaned.digests, strict=True):
            if seen(digest):
                duplicates += 1
            else:
                outputs.accepted(accepted)
        for line, reason, values in cleaned.rejected:
            outputs.rejected(line, reason, values)
    else:
        duplicates = sum(map(seen, cleaned.digests))
    buckets.accepted += len(cleaned.digests) - duplicates
    buckets.duplicate += duplicates
    if duplicates:
        buckets.reasons[DUPLICATE_IN_FILE] += duplicates
    buckets.rejected += sum(cleaned.reasons.values())
    buckets.reasons.update(cleaned.reasons)
    report.warnings.update(cleaned.warnings)


async def clean_file(
    path: Path,
    options: CleanFileOptions,
    *,
    out: Path | None = None,
    rejects: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> CleanFileReport:
    """Clean ``path``; write accepted rows to ``out`` and rejected ones to ``rejects`` when given.

    Raises :class:`~dispatcher.errors.CsvFormatError` for a file that cannot be read as CSV at all (then
    neither output file is created). ``on_progress`` is called with the size of each chunk read.
    """
    started = time.perf_counter()
    report = CleanFileReport()
    cutter = RecordCutter()  # the children parse: on two cores the parent's CPU is taken from cleaning
    deduper = FileDeduper()
    cleaner = ParallelCleaner(options.processes)
    clean_options = CleanOptions(default_region=options.default_region, channels=options.channels)
    with ExitStack() as stack:
        outputs = _Outputs(stack.enter_context(_sink(out)), stack.enter_context(_sink(rejects)))
        try:
            blocks = _blocks(path, cutter, report, on_progress)
            async for _, cleaned in cleaner.clean_blocks(blocks, clean_options, keep_rows=outputs.wanted):
                outputs.start(cutter.header)
                _tally(report, cleaned, deduper, outputs)
        finally:
            cleaner.close()
        outputs.start(cutter.header)
    report.seconds = time.perf_counter() - started
    report.encoding = cutter.encoding
    report.delimiter = cutter.dialect.delimiter if cutter.dialect else None
    return report
