"""Streaming CSV reading for list imports: bytes chunks in, parsed rows out, never the whole file in memory.

:class:`CsvStream` is push-shaped (``feed(chunk)`` / ``close()``) so an async handler can hand it each
chunk it reads from the socket, or a worker thread can drain a queue into it; :func:`iter_rows` wraps it
for a plain iterable of chunks. Feeding a file whole or one byte at a time yields the same rows.

Records are cut at line ends by a small scanner that mirrors the csv module's quoting rules, so a quoted
field may hold delimiters and newlines. Lines without a quote (most of them) are split with ``str.split``;
only records with quotes go through :mod:`csv`. A malformed record (wrong field count, a field over 64 KiB,
an unterminated quote) becomes a row with ``values=None`` and a ``problem``, and reading goes on; only a
file that cannot be read at all (undecodable, binary, no usable header) raises :class:`CsvFormatError`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from dispatcher.core.cleaning import Rejection, RejectReason, canonical_column
from dispatcher.core.csvdecode import Dialect, StreamDecoder, sniff_dialect
from dispatcher.errors import CsvFormatError

__all__ = ["MAX_FIELD_CHARS", "MAX_RECORD_CHARS", "CsvStream", "ParsedRow", "iter_rows"]

MAX_FIELD_CHARS = 64 * 1024
MAX_RECORD_CHARS = (
    128 * 1024 - 1
)  # below csv.field_size_limit()'s default, so csv itself never raises on size
_QUOTE = '"'


class ParsedRow(NamedTuple):
    """One data record. ``line`` is its first physical line (the header is line 1 of a plain file)."""

    line: int
    values: dict[str, str] | None  # header name → stripped value; None when the record is malformed
    raw: list[str]  # the fields as read, unstripped, for the rejects download
    problem: str | None = None  # why the record is malformed (reason code ``malformed_row``)

    def rejection(self) -> Rejection | None:
        """The bucket entry of a malformed record, so it is counted like any other rejected row."""
        if self.values is not None:
            return None
        return Rejection(RejectReason.MALFORMED_ROW, f"line {self.line}: {self.problem}")


class CsvStream:
    """Push parser for one uploaded file; see the module docstring."""

    def __init__(self) -> None:
        self._decoder = StreamDecoder()
        self.dialect: Dialect | None = None
        self.header: tuple[str, ...] | None = None
        self._partial: list[str] = []  # text after the last line end, in pieces
        self._partial_len = 0
        self._skipping = False  # inside an over-long line, dropping text up to its end
        self._pending: list[str] = []  # lines of a record whose quoted field is still open
        self._pending_len = 0
        self._pending_line = 0
        self._replayed_to = 0  # lines up to here are re-read after an unterminated quote
        self._line = 1  # number of the next physical line to complete
        self._closed = False

    @property
    def encoding(self) -> str | None:
        return self._decoder.encoding

    def feed(self, chunk: bytes) -> list[ParsedRow]:
        if self._closed:
            raise ValueError("feed() after close()")
        return self._consume(self._decoder.feed(chunk))

    def close(self) -> list[ParsedRow]:
        """Flush the last line; raises :class:`CsvFormatError` for an empty file or one with no header."""
        if self._closed:
            return []
        self._closed = True
        rows = self._consume(self._decoder.close())
        if self._partial_len and not self._skipping:
            self._take_line("".join(self._partial), rows)
        self._partial, self._partial_len = [], 0
        if self._pending:
            self._unterminated(rows)
        if self.header is None:
            raise CsvFormatError("empty file" if self._decoder.bytes_seen == 0 else "no header row")
        return rows

    def _consume(self, text: str) -> list[ParsedRow]:
        rows: list[ParsedRow] = []
        if not text and not self._closed:
            return rows
        if self.dialect is None:
            self.dialect = sniff_dialect(text, complete=self._closed)
        newline = self.dialect.newline
        if newline not in text:
            self._extend_partial(text, rows)
            return rows
        lines = text.split(newline)
        tail = lines.pop()
        for index, line in enumerate(lines):
            if index == 0 and self._partial_len:
                line = "".join(self._partial) + line
                self._partial, self._partial_len = [], 0
            if self._skipping:
                self._skipping = False
                self._line += 1
                continue
            self._take_line(line, rows)
        self._extend_partial(tail, rows)
        return rows

    def _extend_partial(self, text: str, rows: list[ParsedRow]) -> None:
        if self._skipping or not text:
            return
        self._partial.append(text)
        self._partial_len += len(text)
        if self._partial_len > MAX_RECORD_CHARS:
            self._partial, self._partial_len = [], 0
            self._overlong(rows)
            self._skipping = True  # the line's number is counted when its end arrives

    def _take_line(self, line: str, rows: list[ParsedRow]) -> None:
        """Route one physical line: a record by itself, the start or the rest of a multi-line record."""
        if len(line) > MAX_RECORD_CHARS:
            self._overlong(rows)
        elif self._pending:
            self._pending.append(line)
            self._pending_len += len(line)
            if not _ends_in_quotes(line, self.delimiter, in_quotes=True):
                lines, self._pending, self._pending_len = self._pending, [], 0
                self._record(self._pending_line, _parse_quoted(lines, self.delimiter, self.newline), rows)
            elif self._pending_len > MAX_RECORD_CHARS:
                self._unterminated(rows)
                return
        elif _QUOTE not in line:
            if line.strip() or self.delimiter in line:  # "\t\t" is a row of empty values, not a blank line
                self._record(self._line, line.removesuffix("\r").split(self.delimiter), rows)
        elif self._line > self._replayed_to and _ends_in_quotes(line, self.delimiter, in_quotes=False):
            self._pending, self._pending_len, self._pending_line = [line], len(line), self._line
        else:
            self._record(self._line, _parse_quoted([line], self.delimiter, self.newline), rows)
        self._line += 1

    def _overlong(self, rows: list[ParsedRow]) -> None:
        if self._pending:
            self._malformed(self._pending_line, [], "unterminated quoted field", rows)
            self._pending, self._pending_len = [], 0
        self._malformed(self._line, [], f"line longer than {MAX_RECORD_CHARS} characters", rows)

    def _unterminated(self, rows: list[ParsedRow]) -> None:
        """A quote opened on the pending record's first line never closed: that line alone is malformed.

        The lines after it are read again as ordinary records, but none of them may open a multi-line
        record: a crafted file could otherwise make every line rescan the next 128 KiB.
        """
        lines, self._pending, self._pending_len = self._pending, [], 0
        first = lines[0].removesuffix("\r")[:MAX_FIELD_CHARS]
        self._malformed(self._pending_line, [first], "unterminated quoted field", rows)
        self._line = self._pending_line + 1
        self._replayed_to = self._pending_line + len(lines) - 1
        for line in lines[1:]:
            self._take_line(line, rows)

    def _record(self, line: int, fields: list[str] | str, rows: list[ParsedRow]) -> None:
        if isinstance(fields, str):
            self._malformed(line, [], fields, rows)
        elif self.header is None:
            self.header = _check_header(fields, line)
        elif len(fields) != len(self.header):
            self._malformed(line, fields, f"expected {len(self.header)} fields, found {len(fields)}", rows)
        elif sum(map(len, fields)) > MAX_FIELD_CHARS and max(map(len, fields)) > MAX_FIELD_CHARS:
            raw = [field[:MAX_FIELD_CHARS] for field in fields]
            self._malformed(line, raw, f"a field is longer than {MAX_FIELD_CHARS} characters", rows)
        else:
            values = {name: value.strip() for name, value in zip(self.header, fields, strict=True) if name}
            rows.append(ParsedRow(line, values, fields))

    def _malformed(self, line: int, raw: list[str], problem: str, rows: list[ParsedRow]) -> None:
        if self.header is None:
            raise CsvFormatError(f"unreadable header row (line {line}): {problem}", details=[{"line": line}])
        rows.append(ParsedRow(line, None, raw, problem))

    @property
    def delimiter(self) -> str:
        return self.dialect.delimiter if self.dialect else ","

    @property
    def newline(self) -> str:
        return self.dialect.newline if self.dialect else "\n"


def iter_rows(chunks: Iterable[bytes]) -> Iterator[ParsedRow]:
    """Convenience wrapper: every data row of a file given as an iterable of byte chunks."""
    stream = CsvStream()
    for chunk in chunks:
        yield from stream.feed(chunk)
    yield from stream.close()


def _ends_in_quotes(line: str, delimiter: str, *, in_quotes: bool) -> bool:
    """Whether a quoted field is still open at the end of ``line``, by the csv module's rules.

    A quote opens a field only as its first character; inside, ``""`` is a literal quote and any other
    quote closes it; after the close, text up to the next delimiter is kept as is.
    """
    position, end = 0, len(line)
    while True:
        if in_quotes:
            close = line.find(_QUOTE, position)
            while close >= 0 and close + 1 < end and line[close + 1] == _QUOTE:
                close = line.find(_QUOTE, close + 2)
            if close < 0:
                return True
            in_quotes, position = False, close + 1
        elif position < end and line[position] == _QUOTE:
            in_quotes, position = True, position + 1
            continue
        next_field = line.find(delimiter, position)
        if next_field < 0:
            return False
        position = next_field + 1


def _parse_quoted(lines: list[str], delimiter: str, newline: str) -> list[str] | str:
    """Fields of a record with quotes (one or more lines), or a problem description."""
    try:
        records = list(csv.reader([newline.join(lines)], delimiter=delimiter, strict=False))
    except csv.Error as exc:
        return f"unreadable quoted field: {exc}"
    if len(records) != 1:  # pragma: no cover - the scanner and csv agree on record ends
        return "unreadable quoted field"
    return records[0]


def _check_header(fields: list[str], line: int) -> tuple[str, ...]:
    names = tuple(field.strip().lstrip("\ufeff").strip() for field in fields)
    folded = [name.casefold() for name in names if name]
    duplicates = sorted({name for name in folded if folded.count(name) > 1})
    if duplicates:
        raise CsvFormatError(
            f"duplicate column names in the header (line {line}): {', '.join(duplicates)}",
            details=[{"line": line, "columns": duplicates}],
        )
    if not any(canonical_column(name) in ("phone", "email") for name in names):
        found = ", ".join(repr(name) for name in names if name) or "none"
        raise CsvFormatError(
            f"the header (line {line}) has no phone or email column; columns found: {found}",
            details=[{"line": line, "columns": [name for name in names if name]}],
        )
    return names
