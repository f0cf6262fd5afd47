"""Header values for outgoing e-mail: refused when unsafe, encoded when not plain ASCII.

Every value that reaches a header passes :func:`check_header_value`, which refuses control characters
(CR, LF, NUL, DEL, C1, U+2028/9) both as typed and inside RFC 2047 encoded-words the value already holds:
stdlib ``email`` copies a literal ``=?UTF-8?Q?=0A?=`` onto the wire, and a decoder downstream turns it into
a forged header line. Encoding is the writer's job here, never the caller's, so a value that looks like an
encoded-word is itself encoded and reaches the reader as the literal text it was.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

from dispatcher.errors import TemplateError

__all__ = [
    "check_header_value",
    "encode_mailbox",
    "encode_unstructured",
    "header_name_ok",
    "idna_domain",
    "split_mailbox",
]

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_BYTE: Final = re.compile(rb"[\x00-\x1f\x7f]")
_ENCODED_WORD: Final = re.compile(r"=\?([^?]*)\?([bBqQ])\?(.*?)\?=")
_HEADER_NAME: Final = re.compile(r"[!-9;-~]{1,76}")
_ATOM_PHRASE: Final = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+")
_LOCAL_PART: Final = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]{1,64}")
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN: Final = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
_FOLD_AT: Final = 78
_WORD_BYTES: Final = 45  # 60 base64 characters: an encoded-word stays within the 75 RFC 2047 allows
_LINE_LIMIT: Final = 998
_NAME_BYTES: Final = 300


def _unsafe(field: str, why: str) -> TemplateError:
    message = f"{field} {why}"
    return TemplateError(message, details=[{"field": field, "message": message}])


def check_header_value(field: str, value: str) -> None:
    """Raise TemplateError when ``value`` holds a control character, raw or inside an encoded-word."""
    if _CONTROL.search(value):
        raise _unsafe(field, "contains a control character (CR, LF, NUL...): header injection refused")
    for word in _ENCODED_WORD.finditer(value):
        if _decoded_word_unsafe(word.group(1), word.group(2), word.group(3)):
            raise _unsafe(field, "contains an encoded-word that decodes to a control character")


def _decoded_word_unsafe(charset: str, encoding: str, payload: str) -> bool:
    try:
        if encoding in "bB":
            raw = base64.b64decode(payload + "=" * (-len(payload) % 4))
        else:
            raw = binascii.a2b_qp(payload.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return False  # a reader cannot decode it either: it shows the literal text
    if _CONTROL_BYTE.search(raw):
        return True
    try:
        text = raw.decode(charset.partition("*")[0], "replace")
    except LookupError:
        text = raw.decode("latin-1")
    return _CONTROL.search(text) is not None


def header_name_ok(name: str) -> bool:
    return _HEADER_NAME.fullmatch(name) is not None


def _encoded_words(value: str) -> list[str]:
    """``value`` as base64 encoded-words, split on character boundaries (a word never cuts a UTF-8 code)."""
    words: list[str] = []
    chunk = bytearray()
    for char in value:
        raw = char.encode("utf-8")
        if len(chunk) + len(raw) > _WORD_BYTES:
            words.append(f"=?utf-8?b?{base64.b64encode(bytes(chunk)).decode('ascii')}?=")
            chunk.clear()
        chunk += raw
    if chunk or not words:
        words.append(f"=?utf-8?b?{base64.b64encode(bytes(chunk)).decode('ascii')}?=")
    return words


def _fold_plain(name: str, value: str) -> str:
    """Fold at single spaces (CRLF goes before the space, so unfolding gives the value back)."""
    line = f"{name}: "
    lines: list[str] = []
    for index, word in enumerate(value.split(" ")):
        piece = word if index == 0 else " " + word
        if index > 0 and len(line) + len(piece) > _FOLD_AT and line.strip():
            lines.append(line)
            line = piece
        else:
            line += piece
    lines.append(line)
    return "\r\n".join(lines)


def _plain_ok(value: str) -> bool:
    """True when the value may go out as typed: printable ASCII a reader unfolds back to the same text."""
    return (
        value.isascii()
        and value == value.strip(" ")
        and "  " not in value
        and "=?" not in value
        and (len(value) < _LINE_LIMIT - 80 or max(map(len, value.split(" "))) < _LINE_LIMIT - 80)
    )


def encode_unstructured(name: str, field: str, value: str) -> bytes:
    """One header line (CRLF-terminated) for a free-text value such as Subject."""
    check_header_value(field, value)
    if _plain_ok(value):
        if len(name) + 2 + len(value) <= _FOLD_AT:
            return f"{name}: {value}\r\n".encode("ascii")
        return (_fold_plain(name, value) + "\r\n").encode("ascii")
    return (f"{name}: " + "\r\n ".join(_encoded_words(value)) + "\r\n").encode("ascii")


def idna_domain(field: str, domain: str) -> str:
    """The ASCII form of a domain name, or TemplateError."""
    try:
        ascii_domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise _unsafe(field, f"has a domain that is not a valid name: {domain!r}") from None
    if _DOMAIN.fullmatch(ascii_domain) is None:
        raise _unsafe(field, f"has a domain that is not a valid name: {domain!r}")
    return ascii_domain


def split_mailbox(field: str, value: str) -> tuple[str, str]:
    """``Shop <news@shop.example>`` → (``Shop``, ``news@shop.example`` with an ASCII domain)."""
    check_header_value(field, value)
    name, address = "", value.strip()
    if address.endswith(">") and "<" in address:
        name, _, address = address[:-1].rpartition("<")
        name = name.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    local, at, domain = address.strip().rpartition("@")
    if not at or _LOCAL_PART.fullmatch(local) is None or ".." in local or local[0] == "." or local[-1] == ".":
        raise _unsafe(field, f"is not an e-mail address this sender can write: {address!r}")
    return name, f"{local}@{idna_domain(field, domain)}"


def encode_mailbox(name: str, field: str, value: str) -> bytes:
    """One address header line; a non-ASCII display name goes as encoded-words, others quoted if needed."""
    display, address = split_mailbox(field, value)
    display = " ".join(display.split())  # readers collapse runs of white space in a phrase anyway
    if not display:
        return f"{name}: {address}\r\n".encode("ascii")
    if display.isascii() and "=?" not in display and display == display.strip(" "):
        phrase = display if _ATOM_PHRASE.fullmatch(display) else _quoted(display)
        line = f"{name}: {phrase} <{address}>"
        if len(line) <= _LINE_LIMIT:
            return (line + "\r\n").encode("ascii")
    # One word, even past RFC 2047's 75 characters: readers disagree on the white space between the words
    # of a phrase (Python's parser adds a space, RFC 2047 readers drop it), never on a single long word.
    raw = display.encode("utf-8")
    if len(raw) > _NAME_BYTES:
        raise _unsafe(field, f"has a display name longer than {_NAME_BYTES} bytes")
    word = f"=?utf-8?b?{base64.b64encode(raw).decode('ascii')}?="
    return f"{name}: {word}\r\n <{address}>\r\n".encode("ascii")


def _quoted(display: str) -> str:
    return '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
