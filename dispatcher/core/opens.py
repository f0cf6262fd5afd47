"""Open pixels and message tokens, and telling a person's open from a machine's.

A message token is ``{base62 workspace}.{base62 message}.{16-character MAC}``: it names one ledger row,
and only we can make one (HMAC-SHA256 under a key derived for this purpose alone, so neither a click nor an
unsubscribe token passes as one). The open pixel is ``{base}/o/{token}.gif``; the same token is the
"tracking code" a shop passes back with ``POST /v1/conversions``.

Mail scanners and privacy proxies fetch images too. An open is a machine's when the user agent is a known
scanner or fetch library, or when it comes within :data:`PREFETCH_SECONDS` of sending: no person opens a
message that fast, while link checkers at the receiving server do. Machine opens are kept, flagged, and
reported apart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final

__all__ = [
    "PIXEL_GIF",
    "PREFETCH_SECONDS",
    "MessageRef",
    "is_machine",
    "message_token",
    "open_pixel_url",
    "read_message_token",
]

#: The smallest transparent 1×1 GIF (43 bytes).
PIXEL_GIF: Final = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
PREFETCH_SECONDS: Final = 10.0
_MAC_CHARS: Final = 16
_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID: Final = re.compile(r"[1-9A-Za-z][0-9A-Za-z]{0,10}")
_MACHINE_AGENTS: Final = re.compile(
    r"bot\b|crawler|spider|preview|scanner|barracuda|mimecast|proofpoint|symantec|messagelabs|"
    r"forcepoint|trend ?micro|ironport|safelinks|zscaler|sophos|fortinet|appriver|"
    r"python-requests|python-urllib|aiohttp|curl/|wget/|go-http-client|java/|okhttp|headlesschrome|"
    r"microsoft office protocol discovery|ms-office|outlook-ios-linkpreview",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class MessageRef:
    workspace_id: int
    message_id: int


def _base62(number: int) -> str:
    digits = []
    while True:
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
        if number == 0:
            return "".join(reversed(digits))


def _from_base62(text: str) -> int | None:
    if not _ID.fullmatch(text):  # canonical only: no leading zeros, so one id has one spelling
        return None
    number = 0
    for char in text:
        number = number * 62 + _ALPHABET.index(char)
    return number


@lru_cache(maxsize=16)
def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"dispatcher/message", hashlib.sha256).digest()


def _mac(secret: str, payload: str) -> str:
    digest = hmac.new(_key(secret), payload.encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest[:_MAC_CHARS], "big") % 62**_MAC_CHARS
    return _base62(number).rjust(_MAC_CHARS, "0")


def message_token(secret: str, workspace_id: int, message_id: int) -> str:
    if workspace_id <= 0 or message_id <= 0:
        raise ValueError("workspace and message ids are positive")
    payload = f"{_base62(workspace_id)}.{_base62(message_id)}"
    return f"{payload}.{_mac(secret, payload)}"


def read_message_token(secret: str, token: str) -> MessageRef | None:
    """What a token names, or None for anything we did not sign (constant-time comparison)."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 64:
        return None
    workspace_id, message_id = _from_base62(parts[0]), _from_base62(parts[1])
    if not workspace_id or not message_id:
        return None
    expected = _mac(secret, f"{parts[0]}.{parts[1]}")
    if not hmac.compare_digest(expected.encode(), parts[2].encode()):
        return None
    return MessageRef(workspace_id, message_id)


def open_pixel_url(base_url: str, secret: str, workspace_id: int, message_id: int) -> str:
    return f"{base_url.rstrip('/')}/o/{message_token(secret, workspace_id, message_id)}.gif"


def is_machine(
    user_agent: str | None,
    *,
    sent_at: datetime | None,
    now: datetime,
    prefetch_seconds: float = PREFETCH_SECONDS,
) -> bool:
    """A scanner, a fetch library, no user agent at all, or a fetch right after sending."""
    if not user_agent or not user_agent.strip() or _MACHINE_AGENTS.search(user_agent):
        return True
    return sent_at is not None and (now - sent_at).total_seconds() < prefetch_seconds
