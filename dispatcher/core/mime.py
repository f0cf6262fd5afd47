"""E-mail serialised once per campaign, filled per recipient.

Building a stdlib ``EmailMessage`` per recipient manages about 850 messages/s here, the largest CPU cost on
the send path; a skeleton whose static headers are encoded once and whose per-recipient pieces are written
with C codecs (``binascii``) fills far faster (``bench/smtp_ceiling.py`` prints the rate). The output is a
complete RFC 5322 message with CRLF line endings::

    From, Reply-To                   encoded once (non-ASCII display names as RFC 2047 encoded-words)
    To, Subject                      per recipient, refused when they carry control characters
    Date                             when the caller passes ``date`` (core has no clock)
    Message-ID                       ``<message_key@domain>`` (hashed when the key is no dot-atom): a resend
                                     of one ledger row keeps it, and a bounce names the row by it
    MIME-Version, extra headers      encoded once
    List-Unsubscribe(-Post)          RFC 2369 / RFC 8058 one-click, when an unsubscribe URL is given
    text/plain [+ text/html]         UTF-8, quoted-printable; multipart/alternative when there is HTML

Bodies are quoted-printable, so lines of any length survive SMTP's 998-octet limit, and lines starting with
``From `` or ``.`` are escaped (``=46``, ``=2E``) so no mbox writer or dot-stuffing relay alters them. The
boundary starts with ``=_``, a sequence quoted-printable output never holds, so no body can contain it.
Line breaks of the bodies (CRLF, CR or LF) all go out as CRLF.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import format_datetime
from typing import Final

from dispatcher.core.mime_headers import (
    check_header_value,
    encode_mailbox,
    encode_unstructured,
    header_name_ok,
    idna_domain,
)
from dispatcher.errors import InputError, TemplateError

__all__ = ["MimeSkeleton", "message_id_for"]

#: Headers the skeleton writes itself; extra headers may not name them.
MANAGED_HEADERS: Final = frozenset(
    {
        "from",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "content-type",
        "content-transfer-encoding",
        "dkim-signature",
    }
)
_ESCAPE_LINE_START: Final = re.compile(rb"^(?:From |\.)", re.MULTILINE)
_UNSUBSCRIBE_URL: Final = re.compile(r"https?://[!-~]+")
_UNSUBSCRIBE_MAILTO: Final = re.compile(r"mailto:[!-~]+")
_URL_LIMIT: Final = 900
_DOT_ATOM: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_ID_KEY_LIMIT: Final = 200
_PLAIN_PART: Final = (
    b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
)
_HTML_PART: Final = (
    b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
)
_ONE_CLICK: Final = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


def message_id_for(message_key: str, domain: str) -> str:
    """The Message-ID (with angle brackets) of the message filled with ``message_key``."""
    return f"<{_id_left(message_key, _digest(message_key))}@{idna_domain('domain', domain)}>"


def _id_left(message_key: str, digest: str) -> str:
    """The key itself when it is a dot-atom (``dsp-12-345``: bounces name the message by it), else a hash."""
    plain = len(message_key) <= _ID_KEY_LIMIT and _DOT_ATOM.fullmatch(message_key) is not None
    return message_key if plain else digest


def _digest(message_key: str) -> str:
    if not message_key:
        raise InputError("message_key must not be empty")
    return hashlib.blake2b(message_key.encode("utf-8"), digest_size=16).hexdigest()


def _escape_start(match: re.Match[bytes]) -> bytes:
    return b"=46rom " if match.group(0) == b"From " else b"=2E"


def encode_body(text: str) -> bytes:
    """Quoted-printable UTF-8 with CRLF line breaks; the result never ends in a line break of its own."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if b"\nFrom " in encoded or b"\n." in encoded or encoded.startswith((b"From ", b".")):
        encoded = _ESCAPE_LINE_START.sub(_escape_start, encoded)
    return encoded.replace(b"\n", b"\r\n")


class MimeSkeleton:
    """The static part of a campaign's e-mails, encoded once; :meth:`fill` writes one recipient's message.

    Raises InputError (TemplateError for header values) when a value is unsafe or not writable.
    ``has_html`` says what the campaign expects; each message's layout follows the ``html`` it is given.
    """

    __slots__ = ("_date", "_domain", "_head", "_static", "has_html", "list_unsubscribe")

    def __init__(
        self,
        *,
        from_header: str,
        domain: str,
        reply_to: str | None = None,
        has_html: bool = True,
        list_unsubscribe: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._domain = idna_domain("domain", domain).encode("ascii")
        head = encode_mailbox("From", "from_header", from_header)
        if reply_to:
            head += encode_mailbox("Reply-To", "reply_to", reply_to)
        self._head = head
        self._static = b"MIME-Version: 1.0\r\n" + _extra_headers(headers or {})
        self.has_html = has_html
        self.list_unsubscribe = list_unsubscribe
        # formatting a date costs as much as the rest of a message; a campaign sends many per second
        self._date: tuple[datetime, bytes] | None = None

    def fill(
        self,
        *,
        to: str,
        subject: str,
        text: str,
        html: str | None = None,
        message_key: str,
        unsubscribe_url: str | None = None,
        unsubscribe_mailto: str | None = None,
        date: datetime | None = None,
    ) -> bytes:
        hashed = _digest(message_key)
        digest = hashed.encode("ascii")
        left = _id_left(message_key, hashed).encode("ascii")
        parts = [
            self._head,
            encode_mailbox("To", "to", to),
            encode_unstructured("Subject", "subject", subject),
        ]
        if date is not None:
            parts.append(self._date_line(date))
        parts += (b"Message-ID: <", left, b"@", self._domain, b">\r\n", self._static)
        if self.list_unsubscribe:
            parts.append(_unsubscribe_lines(unsubscribe_url, unsubscribe_mailto))
        if html is None:
            # a soft line break ends the body: the reader gets the text back without an added newline
            parts += (_PLAIN_PART, encode_body(text), b"=\r\n")
            return b"".join(parts)
        boundary = b"=_" + digest[:24]
        parts += (
            b'Content-Type: multipart/alternative; boundary="',
            boundary,
            b'"\r\n\r\n--',
            boundary,
            b"\r\n",
            _PLAIN_PART,
            encode_body(text),
            b"\r\n--",
            boundary,
            b"\r\n",
            _HTML_PART,
            encode_body(html),
            b"\r\n--",
            boundary,
            b"--\r\n",
        )
        return b"".join(parts)

    def _date_line(self, date: datetime) -> bytes:
        if date.tzinfo is None or date.utcoffset() is None:
            raise InputError("date must be timezone-aware")
        second = date.replace(microsecond=0)
        cached = self._date
        if cached is not None and cached[0] == second and cached[0].utcoffset() == second.utcoffset():
            return cached[1]
        line = b"Date: " + format_datetime(second).encode("ascii") + b"\r\n"
        self._date = (second, line)
        return line


def _extra_headers(headers: Mapping[str, str]) -> bytes:
    lines = b""
    for name, value in headers.items():
        if not header_name_ok(name):
            raise InputError(f"not a header name: {name!r}")
        if name.lower() in MANAGED_HEADERS:
            raise InputError(f"header {name} is written by the sender itself and cannot be set")
        lines += encode_unstructured(name, f"headers.{name}", value)
    return lines


def _unsubscribe_lines(url: str | None, mailto: str | None) -> bytes:
    """``List-Unsubscribe`` with its targets, plus RFC 8058's one-click marker when there is a URL."""
    targets: list[str] = []
    for field, value, pattern in (
        ("unsubscribe_url", url, _UNSUBSCRIBE_URL),
        ("unsubscribe_mailto", mailto, _UNSUBSCRIBE_MAILTO),
    ):
        if value is None:
            continue
        check_header_value(field, value)
        if pattern.fullmatch(value) is None or any(c in value for c in '<>"') or len(value) > _URL_LIMIT:
            message = f"{field} is not a usable unsubscribe target: {value[:100]!r}"
            raise TemplateError(message, details=[{"field": field, "message": message}])
        targets.append(f"<{value}>")
    if not targets:
        return b""
    line = ("List-Unsubscribe: " + ",\r\n ".join(targets) + "\r\n").encode("ascii")
    return line + _ONE_CLICK if url is not None else line
