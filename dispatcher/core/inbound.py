"""Inbound traffic, decided without I/O: reply keywords, receipt statuses, webhook URLs and signatures.

- :func:`classify_reply` sorts an inbound SMS into ``optout`` / ``optin`` / ``help`` / ``reply``. The whole
  message must be the keyword (as carriers and Twilio match them): "stop" and "Ｓｔｏｐ!" opt out, "please
  stop calling me" is a reply a person should read.
- :func:`receipt_status` maps a provider's status word (Twilio ``MessageStatus``, SMPP ``stat:``) onto one
  small vocabulary, and :func:`status_rank` orders it so a late or repeated receipt never moves a message
  backwards: queued < sending < sent < {delivered, undelivered, failed}. A final status is never replaced.
- :func:`parse_message_key` reads ``dsp-{campaign}-{message}`` out of a Message-ID or our own header, which
  is how a bounce finds the message it is about.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping
from typing import Final, Literal

__all__ = [
    "EMAIL_SIGNATURE_HEADER",
    "FINAL_STATUSES",
    "LEDGER_STATE_OF",
    "ReceiptStatus",
    "ReplyKind",
    "classify_reply",
    "email_events_url",
    "email_signature",
    "inbound_url",
    "is_final",
    "parse_message_key",
    "receipt_status",
    "status_callback_url",
    "status_rank",
    "verify_email_signature",
]

ReplyKind = Literal["optout", "optin", "help", "reply"]
ReceiptStatus = Literal["queued", "sending", "sent", "delivered", "undelivered", "failed"]

OPTOUT_WORDS: Final = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "CANCEL", "OPTOUT", "REVOKE"}
)
# "YES" is left out on purpose: it answers questions in marketing texts far more often than it re-subscribes
OPTIN_WORDS: Final = frozenset({"START", "UNSTOP"})
HELP_WORDS: Final = frozenset({"HELP", "INFO"})
_KEYWORD_MAX: Final = 40  # longer texts are never a bare keyword; spares normalising a long reply
_NOT_LETTERS: Final = re.compile(r"[\W_]+")

_STATUS_WORDS: Final[Mapping[str, ReceiptStatus]] = {
    # Twilio MessageStatus / SmsStatus
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",  # WhatsApp/RCS read receipts imply delivery
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
    # SMPP delivery receipt ``stat:`` words (SMPP 3.4 appendix B)
    "enroute": "sent",
    "acceptd": "sent",
    "delivrd": "delivered",
    "expired": "undelivered",
    "undeliv": "undelivered",
    "deleted": "failed",
    "rejectd": "failed",
}
_RANK: Final[Mapping[str, int]] = {
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
}
FINAL_STATUSES: Final = frozenset({"delivered", "undelivered", "failed"})
#: The ledger (messages.state) knows delivered and failed; an undelivered receipt is a failed message.
LEDGER_STATE_OF: Final[Mapping[str, str]] = {
    "delivered": "delivered",
    "undelivered": "failed",
    "failed": "failed",
}
_MESSAGE_KEY: Final = re.compile(r"\bdsp-(\d{1,18})-(\d{1,18})\b")
EMAIL_SIGNATURE_HEADER: Final = "X-Dispatcher-Signature"


def _keyword(text: str) -> str:
    """Full-width letters folded (NFKC), case folded, everything but letters and digits dropped."""
    folded = unicodedata.normalize("NFKC", text).upper()
    return _NOT_LETTERS.sub("", folded)


def classify_reply(text: str) -> ReplyKind:
    if len(text) > _KEYWORD_MAX:
        return "reply"
    word = _keyword(text)
    if word in OPTOUT_WORDS:
        return "optout"
    if word in OPTIN_WORDS:
        return "optin"
    if word in HELP_WORDS:
        return "help"
    return "reply"


def receipt_status(word: str | None) -> ReceiptStatus | None:
    """Our status for a provider's status word; None for words that say nothing about delivery."""
    if not word:
        return None
    return _STATUS_WORDS.get(word.strip().lower())


def status_rank(status: str) -> int:
    """0 for anything before the provider had the message (planned, queued in our own ledger...)."""
    return _RANK.get(status, 0)


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES


def parse_message_key(text: str | None) -> tuple[int, int] | None:
    """(campaign id, message id) from ``<dsp-12-345@example.com>`` or a bare ``dsp-12-345``."""
    if not text:
        return None
    found = _MESSAGE_KEY.search(text)
    if found is None:
        return None
    campaign_id, message_id = int(found.group(1)), int(found.group(2))
    return (campaign_id, message_id) if campaign_id > 0 and message_id > 0 else None


# ------------------------------------------------------------------------------------------ webhooks


def status_callback_url(base_url: str, provider_id: int) -> str:
    """Where a Twilio-style provider posts delivery receipts of messages sent through ``provider_id``."""
    return f"{base_url.rstrip('/')}/hooks/twilio/{provider_id}/status"


def inbound_url(base_url: str, provider_id: int) -> str:
    """The number's incoming-message webhook to configure at the provider."""
    return f"{base_url.rstrip('/')}/hooks/twilio/{provider_id}/inbound"


def email_events_url(base_url: str, provider_id: int) -> str:
    return f"{base_url.rstrip('/')}/hooks/email/{provider_id}/events"


def email_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body>``: what e-mail event webhooks carry in their header."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_email_signature(secret: str, body: bytes, signature: str | None) -> bool:
    if not secret or not signature:
        return False
    return hmac.compare_digest(email_signature(secret, body).encode(), signature.strip().encode())
