"""SMTP replies classified once, at the channel edge: reply codes to sent/transient/permanent.

4xx is "try later": ``throttled`` for the codes relays use to push back (421 too many connections, 450/451
greylisting and rate limits, 452 too many recipients), ``server_error`` for the rest. 5xx is final: a
destination mailbox that does not exist (550/551/553, or an enhanced ``5.1.x``/``5.2.1`` status) is a
``hard_bounce`` and suppresses the address; policy and content refusals (``5.7.x``, 552, 554) are
``rejected`` and do not, since the next message may pass. 530 and the other authentication codes are our
own settings (``provider_config``, transient: fixing them lets the message go). A refusal of the envelope
sender is never the recipient's fault. A connection lost once DATA has begun is ambiguous: the relay may
have queued the message.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from dispatcher.channels.base import SendOutcome

__all__ = ["Phase", "classify_reply", "no_reply_outcome", "queue_id"]

Phase = Literal["connect", "mail", "rcpt", "data"]
THROTTLE_CODES: Final = frozenset({421, 450, 451, 452})
#: 530 "authentication / STARTTLS required", 534/535/538 auth mechanism trouble: our settings, not the mail.
_OUR_SIDE: Final = frozenset({530, 534, 535, 538})
_ENHANCED: Final = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_QUEUED_AS: Final = re.compile(r"queued as ([!-~]{1,100})", re.IGNORECASE)
_DETAIL_LIMIT: Final = 500


def _enhanced_says_gone(message: str) -> bool | None:
    """What an enhanced status code says about the mailbox; None when it has none or does not say."""
    found = _ENHANCED.search(message)
    if found is None:
        return None
    subject, detail = found.group(2), found.group(3)
    if subject == "1":
        return detail not in ("7", "8")  # 5.1.7/5.1.8 are about our own sender address
    if subject == "2":
        return detail == "1"  # mailbox disabled; 5.2.2 full and 5.2.3 too big are not the address's fault
    return False if subject in ("3", "6", "7") else None


def _mailbox_gone(code: int, message: str, phase: Phase) -> bool:
    said = _enhanced_says_gone(message)
    if phase == "rcpt":
        return said if said is not None else code in (550, 551, 553)
    # after DATA a bare 550 is usually a content or policy refusal: only an explicit 5.1.x says "no such user"
    return phase == "data" and said is True


def classify_reply(
    message_id: int, code: int, message: str, phase: Phase, *, throttle_retry_after: float
) -> SendOutcome:
    """The outcome of a refusal (any reply but 250/251) to MAIL, RCPT or DATA, or to the greeting."""
    detail = message[:_DETAIL_LIMIT]
    if 400 <= code < 500:
        throttled = code in THROTTLE_CODES
        return SendOutcome(
            message_id,
            "transient",
            error_code=str(code),
            error_detail=detail,
            reason="throttled" if throttled else "server_error",
            retry_after=throttle_retry_after if throttled else None,
        )
    if code in _OUR_SIDE:
        return SendOutcome(
            message_id, "transient", error_code=str(code), error_detail=detail, reason="provider_config"
        )
    if 500 <= code < 600 and phase != "connect":
        reason = "hard_bounce" if _mailbox_gone(code, message, phase) else "rejected"
        return SendOutcome(message_id, "permanent", error_code=str(code), error_detail=detail, reason=reason)
    # a 5xx greeting turns us away, not the recipient; anything else is not SMTP as we know it
    reason = "connection" if phase == "connect" else "bad_response"
    return SendOutcome(message_id, "transient", error_code=str(code), error_detail=detail, reason=reason)


def no_reply_outcome(message_id: int, phase: Phase, error: BaseException, *, timed_out: bool) -> SendOutcome:
    """A connection lost or a reply that never came: safe to resend unless DATA had begun."""
    return SendOutcome(
        message_id,
        "transient",
        error_detail=f"{type(error).__name__}: {error}"[:_DETAIL_LIMIT],
        reason="timeout" if timed_out else "connection",
        possible_duplicate=phase == "data",
    )


def queue_id(reply: str) -> str | None:
    """The relay's queue id from ``250 2.0.0 Ok: queued as 4F3A2B`` (bounces and logs name it)."""
    found = _QUEUED_AS.search(reply)
    return found.group(1) if found else None
