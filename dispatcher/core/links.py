"""Tracked links and unsubscribe tokens: find URLs in rendered messages, rewrite them, sign and verify tokens.

A tracked link has two parts, ``{base}/r/{link_code}/{recipient_token}``:

- ``link_code`` (6 base62 characters) names a ``TrackedLink`` row holding one URL of one campaign. The
  redirect only ever goes to a URL stored there, so the link service cannot be used as an open redirect.
- ``recipient_token`` is ``base62(message_id)`` followed by a 6-character HMAC of (link code, message id).
  The message (the ledger row) carries campaign, batch, channel and contact, so the click is traced to all
  four without putting them in the URL. A tampered token fails verification and the redirect answers 404.

With a base such as ``https://sho.rt`` an SMS link is ``https://sho.rt/r/Ab3xK9/G7fq2Zb8wQ`` (34 characters
for message ids up to ~14.7 million, one more character per 62x beyond): short enough for an SMS. The
6-character MAC (~35 bits) protects click attribution, not money; unsubscribe tokens, which change state,
carry a 16-character MAC (~95 bits).

URLs are found with a regular expression in SMS and plain-text parts and with :mod:`html.parser` in HTML,
where only ``href`` attributes of ``<a>`` and ``<area>`` tags are rewritten (never text, comments, scripts
or other attributes). Keys for each purpose are derived from the one secret (``settings.secret_key``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from html import escape, unescape
from html.parser import HTMLParser
from typing import Final, Literal
from urllib.parse import urlsplit

__all__ = [
    "LINK_CODE_LENGTH",
    "LinkKind",
    "UnsubscribeRef",
    "base62",
    "find_links",
    "from_base62",
    "is_link_code",
    "is_trackable_url",
    "link_code_from_bytes",
    "list_unsubscribe_headers",
    "read_recipient_token",
    "read_unsubscribe_token",
    "recipient_token",
    "rewrite_links",
    "tracked_url",
    "unsubscribe_token",
    "verify_unsubscribe_token",
]

LinkKind = Literal["sms", "text", "html"]
MakeUrl = Callable[[str], str | None]

ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LINK_CODE_LENGTH: Final = 6
_CLICK_MAC_CHARS: Final = 6
_UNSUBSCRIBE_MAC_CHARS: Final = 16
_MAX_ID_CHARS: Final = 11  # base62 of 2**63: ids beyond that are not ours
_BASE62_RE: Final = re.compile(r"[0-9A-Za-z]+")
_CHANNEL_LETTERS: Final = {"sms": "s", "email": "e", "all": "a"}
_LETTER_CHANNELS: Final = {v: k for k, v in _CHANNEL_LETTERS.items()}

# Stops at whitespace, quotes, angle brackets and template braces; trailing punctuation is trimmed after.
_URL_RE: Final = re.compile(r"https?://[^\s<>\"'`{}|\\^]+", re.IGNORECASE)
_URL_TRAILING: Final = ".,;:!?)]'\""
_LINK_TAGS: Final = frozenset({"a", "area"})
# One attribute of one start tag (the tag text html.parser hands over), as the HTML tokenizer splits it.
_ATTRIBUTE_RE: Final = re.compile(
    r"""(?P<name>[^\s/>=][^\s/>=]*)(?:\s*=\s*(?P<value>"[^"]*"|'[^']*'|[^\s>"'=<`]+))?[\s/]*"""
)
_TAG_NAME_RE: Final = re.compile(r"<[^\s/>]+[\s/]*")


# ----------------------------------------------------------------------------------------------- codes


def base62(number: int) -> str:
    if number < 0:
        raise ValueError("base62 needs a non-negative integer")
    digits = []
    while True:
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
        if number == 0:
            return "".join(reversed(digits))


def from_base62(text: str) -> int | None:
    if not text or len(text) > _MAX_ID_CHARS or not _BASE62_RE.fullmatch(text):
        return None
    number = 0
    for char in text:
        number = number * 62 + ALPHABET.index(char)
    return number


def _fixed_base62(number: int, width: int) -> str:
    return base62(number % 62**width).rjust(width, "0")


def link_code_from_bytes(raw: bytes) -> str:
    """A link code from random bytes (the caller draws them: the core has no randomness of its own)."""
    if len(raw) < 8:
        raise ValueError("a link code needs at least 8 random bytes")
    return _fixed_base62(int.from_bytes(raw, "big"), LINK_CODE_LENGTH)


def is_link_code(text: str) -> bool:
    return len(text) == LINK_CODE_LENGTH and _BASE62_RE.fullmatch(text) is not None


@lru_cache(maxsize=16)
def _purpose_key(secret: str, purpose: str) -> bytes:
    """One key per purpose derived from the one secret: a click token can never pass as an unsubscribe one."""
    return hmac.new(secret.encode(), f"dispatcher/{purpose}".encode(), hashlib.sha256).digest()


def _mac(secret: str, purpose: str, message: str, width: int) -> str:
    digest = hmac.new(_purpose_key(secret, purpose), message.encode(), hashlib.sha256).digest()
    # ``width`` bytes hold more bits than ``width`` base62 digits (5.95 bits each): no digit is constant
    return _fixed_base62(int.from_bytes(digest[:width], "big"), width)


def recipient_token(secret: str, link_code: str, message_id: int) -> str:
    """``base62(message_id) + MAC``: names the recipient of one tracked link; unforgeable without the key."""
    if message_id <= 0:
        raise ValueError("message ids are positive")
    encoded = base62(message_id)
    return encoded + _mac(secret, "click", f"{link_code}:{message_id}", _CLICK_MAC_CHARS)


def read_recipient_token(secret: str, link_code: str, token: str) -> int | None:
    """The message id a token was issued for, or None when it was not issued by us for this link."""
    encoded, mac = token[:-_CLICK_MAC_CHARS], token[-_CLICK_MAC_CHARS:]
    message_id = from_base62(encoded)
    if message_id is None or message_id == 0 or len(token) <= _CLICK_MAC_CHARS:
        return None
    expected = _mac(secret, "click", f"{link_code}:{message_id}", _CLICK_MAC_CHARS)
    # encoded must be canonical (no leading zeros), or one id would have many valid spellings
    if not hmac.compare_digest(expected.encode(), mac.encode()) or base62(message_id) != encoded:
        return None
    return message_id


def tracked_url(base: str, link_code: str, token: str | None = None) -> str:
    root = f"{base.rstrip('/')}/r/{link_code}"
    return f"{root}/{token}" if token else root


# ----------------------------------------------------------------------------------------- unsubscribe


@dataclass(frozen=True, slots=True)
class UnsubscribeRef:
    """What a valid unsubscribe token names: the workspace, the channel and the message it came with."""

    workspace_id: int
    channel: str
    subject_id: int


def _unsubscribe_payload(workspace_id: int, channel: str, subject_id: int) -> str:
    letter = _CHANNEL_LETTERS.get(channel)
    if letter is None:
        raise ValueError(f"unknown channel {channel!r}")
    if workspace_id <= 0 or subject_id <= 0:
        raise ValueError("workspace and subject ids are positive")
    return f"{letter}{base62(workspace_id)}.{base62(subject_id)}"


def unsubscribe_token(secret: str, workspace_id: int, channel: str, subject_id: int) -> str:
    """``{channel letter}{workspace}.{message}.{MAC}`` in URL-safe characters (HMAC-SHA256, truncated)."""
    payload = _unsubscribe_payload(workspace_id, channel, subject_id)
    return f"{payload}.{_mac(secret, 'unsubscribe', payload, _UNSUBSCRIBE_MAC_CHARS)}"


def read_unsubscribe_token(secret: str, token: str) -> UnsubscribeRef | None:
    """The reference a token was signed for, or None for anything we did not sign (constant-time check)."""
    parts = token.split(".")
    if len(parts) != 3 or len(parts[0]) < 2:
        return None
    channel = _LETTER_CHANNELS.get(parts[0][0])
    workspace_id, subject_id = from_base62(parts[0][1:]), from_base62(parts[1])
    if channel is None or not workspace_id or not subject_id:
        return None
    payload = _unsubscribe_payload(workspace_id, channel, subject_id)
    expected = _mac(secret, "unsubscribe", payload, _UNSUBSCRIBE_MAC_CHARS)
    if not hmac.compare_digest(f"{payload}.{expected}".encode(), token.encode()):
        return None
    return UnsubscribeRef(workspace_id, channel, subject_id)


def verify_unsubscribe_token(
    secret: str, token: str, workspace_id: int, channel: str, subject_id: int
) -> bool:
    expected = unsubscribe_token(secret, workspace_id, channel, subject_id)
    return hmac.compare_digest(expected.encode(), token.encode())


def list_unsubscribe_headers(url: str, mailto: str | None = None) -> dict[str, str]:
    """RFC 2369 ``List-Unsubscribe`` plus RFC 8058 one-click: mail clients POST to ``url`` without asking."""
    if not url.startswith("https://") and not url.startswith("http://"):
        raise ValueError("the one-click unsubscribe URL must be http(s)")
    for value in (url, mailto or ""):
        if any(c in value for c in "<>,\r\n") or any(ord(c) < 32 for c in value):
            raise ValueError("unsubscribe targets must not contain header syntax or control characters")
    targets = [f"<{url}>"] if mailto is None else [f"<mailto:{mailto}>", f"<{url}>"]
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


# ------------------------------------------------------------------------------------------ rewriting


@lru_cache(maxsize=4096)  # the same few campaign URLs come by once per recipient
def is_trackable_url(url: str) -> bool:
    """Only absolute http(s) URLs with a host are stored and redirected to (never javascript:, data:, …)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    no_controls = not any(ord(c) < 33 or c == "\x7f" for c in url)
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname) and no_controls


def _text_spans(text: str) -> list[tuple[int, int, str]]:
    if "://" not in text:
        return []
    spans = []
    for match in _URL_RE.finditer(text):
        url = match.group(0).rstrip(_URL_TRAILING)
        if is_trackable_url(url):
            spans.append((match.start(), match.start() + len(url), url))
    return spans


class _HrefFinder(HTMLParser):
    """Collects the source span of every ``href`` value of an ``<a>``/``<area>`` start tag."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.spans: list[tuple[int, int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _LINK_TAGS:
            self._collect()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def _collect(self) -> None:
        raw = self.get_starttag_text()
        line, column = self.getpos()
        start = self.line_starts[line - 1] + column
        if raw is None or self.source[start : start + len(raw)] != raw:
            return
        head = _TAG_NAME_RE.match(raw)
        position = head.end() if head else len(raw)
        while (found := _ATTRIBUTE_RE.match(raw, position)) is not None and found.end() > position:
            position = found.end()
            value = found.group("value")
            if found.group("name").lower() != "href" or value is None:
                continue
            quoted = value[0] in "\"'"
            begin = found.start("value") + (1 if quoted else 0)
            end = found.end("value") - (1 if quoted else 0)
            url = unescape(raw[begin:end]).strip()
            if is_trackable_url(url):
                self.spans.append((start + begin, start + end, url))
            return  # the first href wins, as in browsers


def _html_spans(text: str) -> list[tuple[int, int, str]]:
    if "://" not in text:
        return []
    finder = _HrefFinder(text)
    finder.feed(text)
    finder.close()
    return finder.spans


def _spans(text: str, kind: LinkKind) -> list[tuple[int, int, str]]:
    return _html_spans(text) if kind == "html" else _text_spans(text)


def find_links(text: str, kind: LinkKind) -> list[str]:
    """Distinct trackable URLs in order of first appearance (hrefs only, for HTML)."""
    return list(dict.fromkeys(url for _, _, url in _spans(text, kind)))


def rewrite_links(text: str, *, make_url: MakeUrl, kind: LinkKind) -> str:
    """Replace each trackable URL by ``make_url(url)``; a None answer keeps that URL as it is.

    ``make_url`` decides per URL (it typically returns :func:`tracked_url` of the campaign's code for that
    URL and the recipient's token, and None for the unsubscribe link or URLs already tracked). Replacements
    in HTML are attribute-escaped.
    """
    spans = _spans(text, kind)
    if not spans:
        return text
    pieces: list[str] = []
    position = 0
    for start, end, url in spans:
        replacement = make_url(url)
        if replacement is None:
            continue
        pieces += [text[position:start], escape(replacement) if kind == "html" else replacement]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)
