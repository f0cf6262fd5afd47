"""Guessing what an uploaded CSV is: its encoding (from the first 64 KiB) and its dialect.

Marketers export from Excel, Google Sheets, CRMs and ancient tools, so a file may carry a BOM, be UTF-16,
Latin-1 or cp1252, and use ``;`` (European Excel) or tabs. Guesses are made once, on a fixed prefix, so
that the same file cut into chunks anywhere is read the same way; text is released only after the guess,
which is what makes a Latin-1 fallback possible without ever emitting wrongly decoded text.
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass

from dispatcher.core.cleaning import canonical_column
from dispatcher.errors import CsvFormatError

__all__ = ["SNIFF_BYTES", "Dialect", "StreamDecoder", "sniff_dialect"]

SNIFF_BYTES = 64 * 1024
SAMPLE_CHARS = 16_000  # fewer than any 64 KiB window decodes to, so the sample never depends on chunking
_MAX_CONTROL_RATIO = 0.01
_CONTROLS = "".join(map(chr, [*range(0, 9), 11, 12, *range(14, 32), *range(127, 160)]))
_DROP_CONTROLS = str.maketrans("", "", _CONTROLS)
_DELIMITERS = (",", ";", "\t", "|")


class StreamDecoder:
    """Bytes in, text out. Holds text back until the first 64 KiB (or the whole file) decided the codec."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._decoder: codecs.IncrementalDecoder | None = None
        self.encoding: str | None = None
        self.bytes_seen = 0
        self._decoded_bytes = 0
        self._newlines = 0

    def feed(self, chunk: bytes) -> str:
        self.bytes_seen += len(chunk)
        if self._decoder is not None:
            return self._decode(chunk, final=False)
        self._head += chunk
        return self._start(final=False) if len(self._head) >= SNIFF_BYTES else ""

    def close(self) -> str:
        if self._decoder is None:
            return self._start(final=True)
        return self._decode(b"", final=True)

    def _start(self, *, final: bool) -> str:
        head, self._head = bytes(self._head), bytearray()
        encoding, skip = _detect_encoding(head[:SNIFF_BYTES], final=final)
        self.encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._decoded_bytes = skip
        text = self._decode(head[skip:], final=final)  # a NUL or bad byte is reported with its line first
        window = _decode_window(head[skip:SNIFF_BYTES], encoding)
        controls = len(window) - len(window.translate(_DROP_CONTROLS))
        if window and controls > _MAX_CONTROL_RATIO * len(window):
            raise CsvFormatError(
                f"this is not a text CSV file: {controls} control characters in its first "
                f"{len(window)} characters (as {encoding})"
            )
        return text

    def _decode(self, data: bytes, *, final: bool) -> str:
        assert self._decoder is not None
        buffered = len(self._decoder.getstate()[0])
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            offset = self._decoded_bytes - buffered + exc.start
            line = self._newlines + 1 + _count_newlines(exc.object[: exc.start], self.encoding)
            raise CsvFormatError(
                f"cannot decode the file as {self.encoding} at byte {offset} (line {line}); the first "
                f"{SNIFF_BYTES // 1024} KiB decoded fine: save the whole file as UTF-8",
                details=[{"byte": offset, "line": line}],
            ) from None
        self._decoded_bytes += len(data)
        nul = text.find("\x00")
        if nul >= 0:
            line = self._newlines + 1 + text.count("\n", 0, nul)
            raise CsvFormatError(
                f"NUL byte in the file (line {line}): not a text CSV", details=[{"line": line}]
            )
        self._newlines += text.count("\n")
        return text


def _count_newlines(prefix: bytes, encoding: str | None) -> int:
    return prefix.decode(encoding or "latin-1", "replace").count("\n")


def _detect_encoding(window: bytes, *, final: bool) -> tuple[str, int]:
    """The codec for the whole file and how many BOM bytes to skip."""
    if window.startswith(codecs.BOM_UTF8):
        return "utf-8", len(codecs.BOM_UTF8)
    if window.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", 0  # the codec reads and drops the BOM itself
    for encoding in ("utf-8", "cp1252"):
        try:
            codecs.getincrementaldecoder(encoding)("strict").decode(window, final)
        except UnicodeDecodeError:
            continue
        return encoding, 0
    return "latin-1", 0  # decodes anything; binary data is caught by the control-character check


def _decode_window(window: bytes, encoding: str) -> str:
    return codecs.getincrementaldecoder(encoding)("replace").decode(window, False)


@dataclass(frozen=True, slots=True)
class Dialect:
    delimiter: str = ","
    newline: str = "\n"  # what lines are split on; "\r" only for old Mac files with no "\n" at all
    crlf: bool = False


def sniff_dialect(text: str, *, complete: bool) -> Dialect:
    """Pick the delimiter that splits the header into known columns and the first rows consistently.

    ``complete`` says ``text`` is the whole file, so its last line is not cut off.
    """
    sample = text[:SAMPLE_CHARS]
    complete = complete and len(text) <= SAMPLE_CHARS
    newline = "\r" if "\n" not in sample and "\r" in sample else "\n"
    lines = sample.split(newline)
    if not complete:
        lines.pop()
    lines = [line.rstrip("\r") for line in lines[:200] if line.strip()]
    best = max(_DELIMITERS, key=lambda delimiter: _delimiter_score(lines, delimiter, complete=complete))
    return Dialect(delimiter=best, newline=newline, crlf=newline == "\n" and "\r\n" in sample)


def _delimiter_score(lines: list[str], delimiter: str, *, complete: bool) -> tuple[bool, float, bool, int]:
    try:
        records = list(csv.reader(lines, delimiter=delimiter))
    except csv.Error:
        return (False, 0.0, False, -_DELIMITERS.index(delimiter))
    if not complete and len(records) > 1:
        records.pop()  # may be a quoted record cut by the sample's end
    if not records:
        return (False, 0.0, False, -_DELIMITERS.index(delimiter))
    header = records[0]
    known = any(canonical_column(name) in ("phone", "email") for name in header)
    consistent = sum(len(record) == len(header) for record in records) / len(records)
    return (
        known and len(header) > 1,
        consistent if len(header) > 1 else 0.0,
        known,
        -_DELIMITERS.index(delimiter),
    )
