"""RFC 3464 delivery status notifications (bounce messages) → one report per recipient.

A DSN is ``multipart/report; report-type=delivery-status``: a human-readable part, a
``message/delivery-status`` part (one block of per-message fields, then one block per recipient with
``Final-Recipient``, ``Action``, ``Status``, ``Diagnostic-Code``) and the original message or its headers
(``message/rfc822`` or ``text/rfc822-headers``). The original's ``Message-ID``
(``<dsp-{campaign}-{message}@…>``) or an ``X-Dispatcher-*`` header names the message the bounce is about.

Older Exim and qmail bounces are plain text; for them the ``X-Failed-Recipients`` header and the first
enhanced status code in the text are used. Anything that cannot be read gives an empty list, never an error:
bounces arrive from the whole internet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from typing import Final, Literal

from dispatcher.core.inbound import parse_message_key

__all__ = ["Bounce", "DsnReport", "bounce_class", "parse_dsn"]

Bounce = Literal["hard", "soft"]
_STATUS: Final = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE: Final = re.compile(r"\b([245])\d\d\b")
_ACTIONS: Final = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
_MAX_BYTES: Final = 2 << 20  # a bounce quoting a huge original is cut: the headers come first
_MAX_DIAGNOSTIC: Final = 500


@dataclass(frozen=True, slots=True)
class DsnReport:
    recipient: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # enhanced status code such as "5.1.1"; "" when none was given
    diagnostic: str
    original_message_id: str | None
    message_key: tuple[int, int] | None  # (campaign id, message id) of our message

    @property
    def bounce(self) -> Bounce | None:
        """hard (5.x.x: never retry, suppress) or soft (4.x.x); None for a success report."""
        if self.action not in {"failed", "delayed"}:
            return None
        return bounce_class(self.status) or ("hard" if self.action == "failed" else "soft")


def bounce_class(status: str) -> Bounce | None:
    if status.startswith("5"):
        return "hard"
    if status.startswith("4"):
        return "soft"
    return None


def parse_dsn(raw: bytes) -> list[DsnReport]:
    try:
        message = message_from_bytes(raw[:_MAX_BYTES], policy=policy.compat32)
    except (ValueError, TypeError, IndexError, LookupError):
        return []
    original = _original_headers(message)
    message_id = _clean(original.get("Message-ID")) if original is not None else None
    key = _find_key(original, raw)
    blocks = _status_blocks(message)
    if blocks:
        return [r for r in (_report(b, message_id, key) for b in blocks[1:]) if r is not None]
    return _plain_text_reports(message, message_id, key)


def _clean(value: object) -> str:
    text = "" if value is None else str(value)
    return " ".join(text.split())[:_MAX_DIAGNOSTIC]


def _parts(message: Message) -> list[Message]:
    return [part for part in message.walk() if isinstance(part, Message)]


def _status_blocks(message: Message) -> list[Message]:
    for part in _parts(message):
        if part.get_content_type() in {"message/delivery-status", "message/global-delivery-status"}:
            payload = part.get_payload()
            if isinstance(payload, list):
                return [block for block in payload if isinstance(block, Message)]
            if isinstance(payload, str):  # some MTAs send it as an unparsed body
                return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\r?\n", payload.strip())]
    return []


def _original_headers(message: Message) -> Message | None:
    for part in _parts(message):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return HeaderParser().parsestr(text.decode("utf-8", "replace"))
    return None


def _find_key(original: Message | None, raw: bytes) -> tuple[int, int] | None:
    if original is not None:
        candidates = [original.get("Message-ID")] + [
            value for name, value in original.items() if name.lower().startswith("x-dispatcher")
        ]
        for value in candidates:
            if (key := parse_message_key(str(value) if value is not None else None)) is not None:
                return key
    # Gmail-style bounces sometimes quote the original's headers inside the human-readable text
    return parse_message_key(raw[:_MAX_BYTES].decode("utf-8", "replace"))


def _address(field: object) -> str:
    """``rfc822; user@example.com`` → ``user@example.com`` (the address type is optional in practice)."""
    text = _clean(field)
    if ";" in text:
        text = text.split(";", 1)[1]
    return text.strip().strip("<>").strip().lower()


def _report(block: Message, message_id: str | None, key: tuple[int, int] | None) -> DsnReport | None:
    recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
    action = _clean(block.get("Action")).lower()
    if not recipient or action not in _ACTIONS:
        return None
    diagnostic = _clean(block.get("Diagnostic-Code"))
    if diagnostic.lower().startswith("smtp;"):
        diagnostic = diagnostic[5:].strip()
    return DsnReport(
        recipient=recipient,
        action=action,
        status=_status(_clean(block.get("Status")), diagnostic),
        diagnostic=diagnostic,
        original_message_id=message_id,
        message_key=key,
    )


def _status(given: str, diagnostic: str) -> str:
    for text in (given, diagnostic):
        if found := _STATUS.search(text):
            return found.group(0)
    if found := _SMTP_CODE.search(diagnostic):
        return f"{found.group(1)}.0.0"
    return ""


def _plain_text_reports(
    message: Message, message_id: str | None, key: tuple[int, int] | None
) -> list[DsnReport]:
    failed = _clean(message.get("X-Failed-Recipients"))
    if not failed:
        return []
    text = _first_text(message)
    status = _status("", text) or "5.0.0"
    diagnostic = _clean(next((line for line in text.splitlines() if _SMTP_CODE.search(line)), ""))
    return [
        DsnReport(
            recipient=address.strip().lower(),
            action="failed",
            status=status,
            diagnostic=diagnostic,
            original_message_id=message_id,
            message_key=key,
        )
        for address in failed.split(",")
        if address.strip()
    ]


def _first_text(message: Message) -> str:
    for part in _parts(message):
        if part.get_content_type() == "text/plain":
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                return body.decode(part.get_content_charset() or "utf-8", "replace")
    return ""
