"""Cutting an upload's decoded text into blocks of whole records, so that the cleaning children parse them.

The parent process only decodes and cuts (:class:`RecordCutter` looks only at lines with a quote); each
child parses its block with a :class:`~dispatcher.core.csvinput.CsvStream` put in the state the whole-file
parse has at the block's start (:func:`parse_block`), so the rows are exactly those of a single parse.
"""

from __future__ import annotations

from typing import NamedTuple

from dispatcher.core.csvdecode import Dialect, StreamDecoder, sniff_dialect
from dispatcher.core.csvinput import MAX_RECORD_CHARS, CsvStream, ParsedRow, _ends_in_quotes

HEADER_BLOCK_CHARS = 8 * 1024
BLOCK_CHARS = 512 * 1024  # ~6,000 rows: few round trips, and still a few blocks in flight per child


class TextBlock(NamedTuple):
    """Whole records of a file after its header: what a child parses by itself."""

    header: tuple[str, ...]
    dialect: Dialect
    line: int  # physical line number of the block's first line
    text: str
    final: bool  # the end of the file: the last line may lack its line end, a quote may be left open


Block = TextBlock | list[ParsedRow]  # rows the parent parsed itself (the blocks up to the header)


def parse_block(block: TextBlock) -> list[ParsedRow]:
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

    @property
    def encoding(self) -> str | None:
        return self._decoder.encoding

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
